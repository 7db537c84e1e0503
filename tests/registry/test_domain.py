"""Every registration rule, without I/O."""

from datetime import date
from typing import Any

import pytest

from services.registry.domain import age_on, assess, first_name, normalise_phone, parse_nik
from tools.registrations import make_nik

TODAY = date(2024, 5, 1)


def valid(**overrides: Any) -> dict[str, Any]:
    birth = date(1990, 7, 15)
    values = {
        "nik": make_nik("Jakarta Selatan", birth, "L", 1234),
        "kk": "3171010101010001",
        "birth_date": birth,
        "gender": "L",
        "phone": "0812-3456-7890",
        "email": None,
        "city": "Jakarta Selatan",
        "sector": "kuliner",
        "nib": None,
        "consent": True,
    }
    values.update(overrides)
    return values


def codes(values: dict[str, Any], today: date = TODAY) -> list[str]:
    return [r.code for r in assess(values, today)]


def test_a_valid_submission_has_no_reasons() -> None:
    assert codes(valid()) == []
    assert codes(valid(email="budi@contoh.id", nib="1234567890123")) == []


def test_women_have_forty_added_to_the_day() -> None:
    birth = date(1990, 7, 15)
    nik = make_nik("Jakarta Timur", birth, "P", 1)
    assert nik[6:8] == "55" and parse_nik(nik).gender == "P"  # type: ignore[union-attr]
    assert codes(valid(nik=nik, city="Jakarta Timur", gender="P")) == []
    assert codes(valid(nik=nik, city="Jakarta Timur", gender="L")) == ["nik-birthdate-mismatch"]
    man = make_nik("Jakarta Timur", birth, "L", 1)
    assert codes(valid(nik=man, city="Jakarta Timur", gender="P")) == ["nik-birthdate-mismatch"]


def test_29_february() -> None:
    leap = date(2000, 2, 29)
    nik = make_nik("Jakarta Pusat", leap, "P", 7)
    assert nik[6:12] == "690200"
    assert codes(valid(nik=nik, city="Jakarta Pusat", gender="P", birth_date=leap)) == []
    assert codes(valid(nik=nik, city="Jakarta Pusat", gender="P", birth_date=date(2000, 3, 1))) == [
        "nik-birthdate-mismatch"
    ]
    # turning 17 on 29 February: in a common year, on 1 March
    assert age_on(date(2008, 2, 29), date(2025, 2, 28)) == 16
    assert age_on(date(2008, 2, 29), date(2025, 3, 1)) == 17
    assert age_on(date(2008, 2, 29), date(2024, 2, 29)) == 16


def test_two_digit_years_agree_across_centuries_and_age_tells_them_apart() -> None:
    old, young = date(1925, 3, 3), date(2025, 3, 3)
    nik = make_nik("Jakarta Barat", old, "L", 9)
    assert nik[10:12] == "25"
    assert codes(valid(nik=nik, city="Jakarta Barat", birth_date=old)) == []
    assert codes(valid(nik=nik, city="Jakarta Barat", birth_date=young), date(2026, 1, 1)) == [
        "underage"
    ]
    assert codes(valid(nik=nik, city="Jakarta Barat", birth_date=date(1926, 3, 3))) == [
        "nik-birthdate-mismatch"
    ]


@pytest.mark.parametrize(
    ("nik", "expected"),
    [
        ("317101150790123", ["invalid-nik"]),  # 15 digits
        ("31710115079012345", ["invalid-nik"]),  # 17 digits
        ("3171O11507901234", ["invalid-nik"]),  # a letter O
        ("3271011507900001", ["nik-not-dki"]),  # a West Java KTP
        ("3171011507900000", ["invalid-nik"]),  # serial 0000
        ("3171013207900001", ["invalid-nik", "nik-birthdate-mismatch"]),  # day 32
        ("3171017207900001", ["invalid-nik", "nik-birthdate-mismatch"]),  # woman's day 32
        ("3171011513900001", ["invalid-nik", "nik-birthdate-mismatch"]),  # month 13
        ("3174011507900001", ["nik-city-mismatch"]),  # Jakarta Barat's code, Selatan given
    ],
)
def test_nik_rules(nik: str, expected: list[str]) -> None:
    assert codes(valid(nik=nik)) == expected


@pytest.mark.parametrize(
    ("city", "code"),
    [
        ("Kepulauan Seribu", "3101"),
        ("Jakarta Selatan", "3171"),
        ("Jakarta Timur", "3172"),
        ("Jakarta Pusat", "3173"),
        ("Jakarta Barat", "3174"),
        ("Jakarta Utara", "3175"),
    ],
)
def test_each_city_has_its_code(city: str, code: str) -> None:
    nik = code + "011507901234"
    assert codes(valid(nik=nik, city=city)) == []


@pytest.mark.parametrize(
    ("birth", "expected"),
    [(date(2007, 5, 1), []), (date(2007, 5, 2), ["underage"]), (date(2010, 1, 1), ["underage"])],
)
def test_age_at_least_17_on_the_day_of_submission(birth: date, expected: list[str]) -> None:
    nik = make_nik("Jakarta Selatan", birth, "L", 1234)
    assert codes(valid(nik=nik, birth_date=birth)) == expected


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("081234567890", "+6281234567890"),
        ("6281234567890", "+6281234567890"),
        ("+6281234567890", "+6281234567890"),
        ("+62 812-3456-7890", "+6281234567890"),
        ("0812 3456 78", "+62812345678"),  # 8 digits after +628
        ("0812345678901", "+62812345678901"),  # 11 digits after +628
        ("081234567", None),  # 7 digits after 08: too short
        ("08123456789012", None),  # 12 digits after 08: too long
        ("0215551234", None),  # a landline
        ("+6581234567", None),  # Singapore
        ("08l234567890", None),
        ("", None),
    ],
)
def test_phone_is_normalised_to_e164(raw: str, e164: str | None) -> None:
    assert normalise_phone(raw) == e164
    assert codes(valid(phone=raw)) == ([] if e164 else ["invalid-phone"])


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("kk", "317101010101000", "invalid-kk"),
        ("kk", "3271010101010001", "invalid-kk"),
        ("email", "budi@", "invalid-email"),
        ("email", "budi contoh.id", "invalid-email"),
        ("city", "Bekasi", "unknown-city"),
        ("sector", "pertambangan", "unknown-sector"),
        ("nib", "123456789012", "invalid-nib"),
        ("nib", "12345678901234", "invalid-nib"),
        ("consent", False, "missing-consent"),
        ("gender", "X", "invalid-payload"),
    ],
)
def test_other_rules(field: str, value: Any, code: str) -> None:
    assert codes(valid(**{field: value})) == [code]


def test_every_problem_is_named_and_rules_missing_a_field_are_skipped() -> None:
    values = valid(kk="1", phone="1", city="Bogor", consent=False)
    del values["birth_date"]  # refused by the schema: the rules that need it do not run
    assert codes(values) == ["invalid-kk", "invalid-phone", "unknown-city", "missing-consent"]


def test_first_name() -> None:
    assert first_name("  Siti   Nurhaliza ") == "Siti"
    assert first_name("") == ""


def test_an_erasure_request_is_pending_then_overdue_past_its_deadline_until_all_confirm() -> None:
    from datetime import UTC, datetime, timedelta

    from services.registry.erasure import EXPECTED, status_of

    asked = datetime(2026, 12, 1, 8, tzinfo=UTC)
    deadline = timedelta(hours=72)
    doc = {"requested_at": asked, "confirmed": {"registry": asked}, "requests": [asked]}
    fresh = status_of(doc, asked + timedelta(hours=71), deadline)
    assert fresh["status"] == "pending" and fresh["confirmed"] == ["registry"]
    assert set(fresh["waiting_for"]) == set(EXPECTED) - {"registry"}
    assert status_of(doc, asked + timedelta(hours=73), deadline)["status"] == "overdue"
    done = {**doc, "confirmed": dict.fromkeys(EXPECTED, asked)}
    assert status_of(done, asked + timedelta(days=30), deadline)["status"] == "complete"
    assert set(EXPECTED) == {"registry", "coaching", "marketplace", "notifications"}
