"""Registration rules (P1). Pure: no I/O, no clock; the caller passes "today".

Each rule looks only at the fields it needs and is skipped when one of them did not pass the
schema, so a rejection names every problem that can be seen, not only the first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from email_validator import EmailNotValidError, validate_email

from shared.contracts import Reason

# The Dukcapil kabupaten/kota codes (digits 1-4 of a NIK) of DKI Jakarta.
CITY_CODES: Mapping[str, str] = {
    "Kepulauan Seribu": "3101",
    "Jakarta Selatan": "3171",
    "Jakarta Timur": "3172",
    "Jakarta Pusat": "3173",
    "Jakarta Barat": "3174",
    "Jakarta Utara": "3175",
}
SECTORS = frozenset({"kuliner", "fashion", "kriya", "jasa", "agribisnis", "lainnya"})
GENDERS = frozenset({"L", "P"})
DKI_PROVINCE = "31"
MINIMUM_AGE = 17
FEMALE_DAY_OFFSET = 40

# ASCII digits only: ``\d`` would also take Arabic-Indic or Devanagari digits, and one NIK
# would then have several spellings (and several hashes). The contracts turn fullwidth
# digits into ASCII ones (NFKC) before these rules see them.
_DIGITS16 = re.compile(r"[0-9]{16}")
_DIGITS13 = re.compile(r"[0-9]{13}")
_PHONE_SEPARATORS = re.compile(r"[ -]")
_MOBILE = re.compile(r"(?:\+62|62|0)8([0-9]{8,11})")


@dataclass(frozen=True)
class NikParts:
    province: str
    city_code: str
    day: int  # as written: women's days have 40 added
    month: int
    year2: int
    serial: str

    @property
    def gender(self) -> str:
        return "P" if self.day > FEMALE_DAY_OFFSET else "L"

    @property
    def birth_day(self) -> int:
        return self.day - FEMALE_DAY_OFFSET if self.day > FEMALE_DAY_OFFSET else self.day


def parse_nik(nik: str) -> NikParts | None:
    """Split a 16-digit NIK; None when it is not 16 digits."""
    if not _DIGITS16.fullmatch(nik):
        return None
    return NikParts(
        province=nik[:2],
        city_code=nik[:4],
        day=int(nik[6:8]),
        month=int(nik[8:10]),
        year2=int(nik[10:12]),
        serial=nik[12:],
    )


def normalise_phone(phone: str) -> str | None:
    """E.164 form (+628 and 8 to 11 digits) of an Indonesian mobile number, or None."""
    match = _MOBILE.fullmatch(_PHONE_SEPARATORS.sub("", phone))
    return f"+628{match.group(1)}" if match else None


def age_on(birth: date, day: date) -> int:
    """Whole years; someone born on 29 February turns a year older on 1 March in common years."""
    had_birthday = (day.month, day.day) >= (birth.month, birth.day)
    return day.year - birth.year - (0 if had_birthday else 1)


def first_name(full_name: str) -> str:
    parts = full_name.split()
    return parts[0] if parts else ""


def _nik_rules(v: Mapping[str, Any]) -> list[Reason]:
    parts = parse_nik(v["nik"])
    if parts is None:
        return [Reason(code="invalid-nik", field="nik", message="NIK must be exactly 16 digits.")]
    reasons = []
    if parts.province != DKI_PROVINCE:
        reasons.append(
            Reason(code="nik-not-dki", field="nik", message="NIK is not from a DKI Jakarta KTP.")
        )
    if parts.serial == "0000":
        reasons.append(Reason(code="invalid-nik", field="nik", message="NIK serial is 0000."))
    if not (1 <= parts.month <= 12 and 1 <= parts.birth_day <= 31):
        reasons.append(
            Reason(code="invalid-nik", field="nik", message="NIK digits 7-12 are not a date.")
        )
    return reasons


def _nik_city(v: Mapping[str, Any]) -> list[Reason]:
    parts = parse_nik(v["nik"])
    expected = CITY_CODES.get(v["city"])
    if parts is None or expected is None or parts.province != DKI_PROVINCE:
        return []  # reported by the NIK and city rules themselves
    if parts.city_code != expected:
        return [
            Reason(
                code="nik-city-mismatch",
                field="nik",
                message=f"NIK's city code does not belong to {v['city']}.",
            )
        ]
    return []


def _nik_birth(v: Mapping[str, Any]) -> list[Reason]:
    parts = parse_nik(v["nik"])
    birth: date = v["birth_date"]
    if parts is None:
        return []
    same_date = (parts.birth_day, parts.month, parts.year2) == (
        birth.day,
        birth.month,
        birth.year % 100,
    )
    if not same_date:
        return [
            Reason(
                code="nik-birthdate-mismatch",
                field="birth_date",
                message="NIK digits 7-12 do not match the birth date.",
            )
        ]
    if v["gender"] in GENDERS and parts.gender != v["gender"]:
        return [
            Reason(
                code="nik-birthdate-mismatch",
                field="gender",
                message="NIK's birth day (40 added for women) does not match the gender.",
            )
        ]
    return []


def _age(v: Mapping[str, Any]) -> list[Reason]:
    if age_on(v["birth_date"], v["today"]) < MINIMUM_AGE:
        return [
            Reason(
                code="underage",
                field="birth_date",
                message=f"Participants must be at least {MINIMUM_AGE} years old.",
            )
        ]
    return []


def _valid_email(email: str) -> bool:
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


Rule = tuple[tuple[str, ...], Callable[[Mapping[str, Any]], list[Reason]]]

# Rules over several fields: (the fields a rule needs, the rule).
RULES: tuple[Rule, ...] = (
    (("nik",), _nik_rules),
    (("nik", "city"), _nik_city),
    (("nik", "birth_date", "gender"), _nik_birth),
    (("birth_date", "today"), _age),
)


@dataclass(frozen=True)
class FieldCheck:
    """A rule over one field: when ``ok`` fails, the reason is (code, field, message)."""

    field: str
    code: str
    message: str
    ok: Callable[[Any], bool]


FIELD_CHECKS: tuple[FieldCheck, ...] = (
    FieldCheck(
        "kk",
        "invalid-kk",
        "KK must be 16 digits starting with 31 (DKI Jakarta).",
        lambda kk: bool(_DIGITS16.fullmatch(kk)) and kk[:2] == DKI_PROVINCE,
    ),
    FieldCheck("gender", "invalid-payload", "Gender must be L or P.", GENDERS.__contains__),
    FieldCheck(
        "phone",
        "invalid-phone",
        "Phone must be an Indonesian mobile number (08..., 628..., +628...).",
        lambda phone: normalise_phone(phone) is not None,
    ),
    FieldCheck(
        "email",
        "invalid-email",
        "E-mail address is not valid.",
        lambda email: email is None or _valid_email(email),
    ),
    FieldCheck(
        "city",
        "unknown-city",
        f"City must be one of: {', '.join(CITY_CODES)}.",
        CITY_CODES.__contains__,
    ),
    FieldCheck(
        "sector",
        "unknown-sector",
        f"Sector must be one of: {', '.join(sorted(SECTORS))}.",
        SECTORS.__contains__,
    ),
    FieldCheck(
        "nib",
        "invalid-nib",
        "NIB must be exactly 13 digits.",
        lambda nib: nib is None or bool(_DIGITS13.fullmatch(nib)),
    ),
    FieldCheck(
        "consent",
        "missing-consent",
        "Consent to the processing of personal data is required.",
        lambda consent: consent is True,
    ),
)


def assess(values: Mapping[str, Any], today: date) -> list[Reason]:
    """Every rule whose fields are available; an empty list means the submission is valid."""
    available = {**values, "today": today}
    reasons: list[Reason] = []
    for needs, rule in RULES:
        if all(name in available for name in needs):
            reasons.extend(rule(available))
    for check in FIELD_CHECKS:
        if check.field in available and not check.ok(available[check.field]):
            reasons.append(Reason(code=check.code, field=check.field, message=check.message))
    return reasons


def schema_reasons(errors: Mapping[str, str]) -> list[Reason]:
    """One ``invalid-payload`` reason per field the schema refused."""
    return [
        Reason(code="invalid-payload", field=name, message=f"{name}: {message}")
        for name, message in errors.items()
    ]


ALREADY_REGISTERED = Reason(
    code="already-registered",
    field="nik",
    message="A participant with this NIK is already registered.",
)
