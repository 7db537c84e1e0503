import json
from typing import ClassVar

import pytest
from pydantic import Field

from shared.contracts import (
    CATALOGUE,
    SCHEMA_DIR,
    Event,
    RegistrationSubmitted,
    incompatibilities,
    validate_fields,
)


def test_every_contract_has_a_snapshot_and_every_snapshot_a_contract() -> None:
    assert {p.stem for p in SCHEMA_DIR.glob("*.json")} == {e.ce_type() for e in CATALOGUE}


@pytest.mark.parametrize("event", CATALOGUE, ids=lambda e: e.ce_type())
def test_contract_is_compatible_with_its_snapshot(event: type[Event]) -> None:
    snapshot = json.loads((SCHEMA_DIR / f"{event.ce_type()}.json").read_text())
    assert incompatibilities(snapshot, event.model_json_schema()) == []


@pytest.mark.parametrize("event", CATALOGUE, ids=lambda e: e.ce_type())
def test_every_field_is_described(event: type[Event]) -> None:
    undocumented = [n for n, f in event.model_fields.items() if not f.description]
    assert undocumented == []


def test_the_checker_catches_each_kind_of_break() -> None:
    class V1(Event):
        name: ClassVar[str] = "x"
        a: str = Field(description="a")
        b: int = Field(description="b")

    class Removed(Event):
        name: ClassVar[str] = "x"
        a: str = Field(description="a")

    class Retyped(Event):
        name: ClassVar[str] = "x"
        a: str = Field(description="a")
        b: str = Field(description="b")

    class NewRequired(V1):
        c: str = Field(description="c")

    class NewOptional(V1):
        c: str | None = Field(default=None, description="c, now documented differently")

    old = V1.model_json_schema()
    assert incompatibilities(old, Removed.model_json_schema()) == ["b: removed"]
    assert incompatibilities(old, Retyped.model_json_schema()) == ["b: type changed"]
    assert incompatibilities(old, NewRequired.model_json_schema()) == ["c: newly required"]
    assert incompatibilities(old, NewOptional.model_json_schema()) == []


def test_validate_fields_keeps_good_fields_and_names_each_bad_one() -> None:
    raw = {
        "submission_id": "s1",
        "nik": {"$gt": ""},
        "birth_date": "2001-02-29",
        "consent": "true",
        "gender": "L",
        "extra": 1,
    }
    values, errors = validate_fields(RegistrationSubmitted, raw)
    assert values["submission_id"] == "s1" and values["gender"] == "L"
    assert values["email"] is None  # optional and absent
    assert "extra" not in values
    assert set(errors) == {
        "nik",
        "birth_date",
        "consent",
        "kk",
        "full_name",
        "phone",
        "city",
        "kecamatan",
        "kelurahan",
        "sector",
        "has_business",
        "channel",
    }
    assert errors["kk"] == "field required"
