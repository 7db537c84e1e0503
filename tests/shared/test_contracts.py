import json
from typing import Any, ClassVar

import pytest
from pydantic import Field, ValidationError

from shared.contracts import (
    CATALOGUE,
    SCHEMA_DIR,
    CertificationRevoked,
    Event,
    ParticipantEvent,
    incompatibilities,
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


@pytest.mark.parametrize("event", CATALOGUE, ids=lambda e: e.ce_type())
def test_an_event_is_about_a_participant_when_it_requires_one(event: type[Event]) -> None:
    field = event.model_fields.get("participant_id")
    assert issubclass(event, ParticipantEvent) == (field is not None and field.is_required())


def test_an_event_about_a_participant_must_name_one() -> None:
    with pytest.raises(TypeError, match="participant_id"):

        class Anonymous(ParticipantEvent):
            name: ClassVar[str] = "x"
            product_id: str = Field(description="p")

    with pytest.raises(TypeError, match="participant_id"):

        class Unnamed(ParticipantEvent):
            name: ClassVar[str] = "x"
            participant_id: str | None = Field(default=None, description="p")


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


def _unbounded(schema: Any, defs: dict[str, Any], where: str) -> list[str]:
    """Every value a schema admits has a bound: strings a length, a pattern, an enum or a
    format; integers and numbers a minimum and maximum; arrays a maximum size."""
    if "$ref" in schema:
        return _unbounded(defs[schema["$ref"].split("/")[-1]], defs, where)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return [p for i, s in enumerate(schema[key]) for p in _unbounded(s, defs, where)]
    kind = schema.get("type")
    if kind == "string" and not ({"maxLength", "enum", "const", "format"} & set(schema)):
        return [f"{where}: string without maxLength"]
    if kind in ("integer", "number") and not {"minimum", "maximum"} <= set(schema):
        return [f"{where}: {kind} without minimum and maximum"]
    if kind == "array":
        problems = [] if "maxItems" in schema else [f"{where}: array without maxItems"]
        return problems + _unbounded(schema.get("items", {}), defs, f"{where}[]")
    if kind == "object":
        return [
            p
            for name, sub in schema.get("properties", {}).items()
            for p in _unbounded(sub, defs, f"{where}.{name}")
        ]
    return []


@pytest.mark.parametrize("event", CATALOGUE, ids=lambda e: e.ce_type())
def test_every_value_of_every_contract_is_bounded(event: type[Event]) -> None:
    schema = event.model_json_schema()
    assert _unbounded(schema, schema.get("$defs", {}), event.name) == []
    assert event.max_bytes <= 1024 * 1024  # below the broker's record limit, with headers


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:00:00-12:00",
        "1999-12-31T23:59:59+00:00",
        "2100-01-01T00:00:00+00:00",
    ],
)
def test_times_out_of_bounds_are_refused(value: str) -> None:
    raw = {"certificate_id": "c", "reason": "r", "revoked_at": value}
    with pytest.raises(ValidationError):
        CertificationRevoked.model_validate_json(json.dumps(raw), strict=True)
