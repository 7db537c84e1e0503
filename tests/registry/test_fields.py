"""The registry's schema check of a registration, field by field (moved from the contracts:
only the registry uses it)."""

from services.registry.fields import validate_fields
from shared.contracts import RegistrationSubmitted


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


def test_digits_are_normalised_and_controls_refused() -> None:
    fullwidth = "".join(chr(0xFF10 + int(d)) for d in "3171")
    values, errors = validate_fields(
        RegistrationSubmitted, {"nik": fullwidth, "kk": "31\u0663\u0661", "full_name": "a\x00"}
    )
    assert values["nik"] == "3171"
    assert values["kk"] == "31\u0663\u0661"  # not a compatibility form: the registry refuses it
    assert "full_name" in errors
