"""The personal-data map accounts for every personal field of the catalogue."""

from __future__ import annotations

import pytest
from pydantic import Field

from shared import personal_data
from shared.contracts import CATALOGUE, PII_CATEGORIES, Event, Id, personal_fields, pii


def test_every_field_that_looks_personal_carries_its_category() -> None:
    assert personal_data.unmarked() == []


def test_every_category_is_accounted_for_with_a_purpose_and_its_stores() -> None:
    used = {c for event in CATALOGUE for c in personal_fields(event).values()}
    assert used <= set(PII_CATEGORIES) == set(personal_data.CATEGORIES)
    for name, category in personal_data.CATEGORIES.items():
        assert category.purpose and category.stores, name


def test_the_checked_in_map_is_a_fresh_rendering() -> None:
    """After a change of the catalogue's marks: `python -m shared.personal_data`."""
    assert personal_data.DOC.read_text() == personal_data.render()
    text = personal_data.render()
    for event in CATALOGUE:
        for field in personal_fields(event):
            assert f"| `{event.name}` | `{field}` |" in text


def test_a_new_personal_field_without_its_mark_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    class PhoneChanged(Event):
        name = "phone-changed"
        participant_id: Id = Field(description="Who.")
        new_phone: str = Field(description="The new number.")

    monkeypatch.setattr(personal_data, "CATALOGUE", (*CATALOGUE, PhoneChanged))
    assert personal_data.unmarked() == ["phone-changed.new_phone"]

    class Marked(PhoneChanged):
        new_phone: str = Field(description="The new number.", json_schema_extra=pii("contact"))

    monkeypatch.setattr(personal_data, "CATALOGUE", (*CATALOGUE, Marked))
    assert personal_data.unmarked() == []


def test_an_unknown_category_is_refused() -> None:
    with pytest.raises(AssertionError):
        pii("shoe-size")
