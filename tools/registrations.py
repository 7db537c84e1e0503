"""Synthetic ``registration-submitted`` records, as the portal, JAKI and kelurahan send them.

Seeded and deterministic. Valid ones have a NIK consistent with city, birth date and gender;
``invalid_rate`` of them break one rule each, ``duplicate_rate`` reuse an earlier NIK.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.registry.domain import CITY_CODES
from shared.contracts import RegistrationSubmitted
from shared.envelope import new_envelope

FIRST_NAMES = ("Siti", "Budi", "Dewi", "Agus", "Rina", "Joko", "Ani", "Hendra", "Wati", "Yusuf")
LAST_NAMES = ("Lestari", "Santoso", "Wijaya", "Pratama", "Hidayat", "Saputra", "Kurniawan")
KECAMATAN = {
    "Jakarta Pusat": ("Gambir", "Tanah Abang", "Menteng"),
    "Jakarta Utara": ("Koja", "Cilincing", "Penjaringan"),
    "Jakarta Barat": ("Cengkareng", "Kebon Jeruk", "Palmerah"),
    "Jakarta Selatan": ("Tebet", "Kebayoran Baru", "Pasar Minggu"),
    "Jakarta Timur": ("Cakung", "Duren Sawit", "Matraman"),
    "Kepulauan Seribu": ("Kepulauan Seribu Utara", "Kepulauan Seribu Selatan"),
}
CITY_WEIGHTS = {  # roughly by population
    "Jakarta Timur": 30,
    "Jakarta Barat": 24,
    "Jakarta Selatan": 22,
    "Jakarta Utara": 18,
    "Jakarta Pusat": 10,
    "Kepulauan Seribu": 1,
}
SECTOR_WEIGHTS = {"kuliner": 80, "kriya": 7, "fashion": 6, "jasa": 5, "agribisnis": 1, "lainnya": 1}

# One broken rule per invalid submission, with the reason code it must produce.
BREAKERS: dict[str, Any] = {
    "invalid-nik": lambda d: d.update(nik=d["nik"][:15]),
    "nik-not-dki": lambda d: d.update(nik="32" + d["nik"][2:]),
    "nik-city-mismatch": lambda d: d.update(
        city="Jakarta Pusat" if d["city"] != "Jakarta Pusat" else "Jakarta Utara"
    ),
    "nik-birthdate-mismatch": lambda d: d.update(
        birth_date=(date.fromisoformat(d["birth_date"]) - timedelta(days=1)).isoformat()
    ),
    "invalid-kk": lambda d: d.update(kk="12345"),
    "underage": None,  # made by choosing a recent birth date, see make_submission
    "invalid-phone": lambda d: d.update(phone="021-555-1234"),
    "invalid-email": lambda d: d.update(email="not-an-email"),
    "unknown-city": lambda d: d.update(city="Bandung"),
    "unknown-sector": lambda d: d.update(sector="tambang"),
    "invalid-nib": lambda d: d.update(nib="12"),
    "missing-consent": lambda d: d.update(consent=False),
    "invalid-payload": lambda d: d.update(full_name={"$gt": ""}),
}


def make_nik(city: str, birth: date, gender: str, serial: int) -> str:
    day = birth.day + (40 if gender == "P" else 0)
    district = f"{serial % 100:02d}"
    born = f"{day:02d}{birth.month:02d}{birth.year % 100:02d}"
    return f"{CITY_CODES[city]}{district}{born}{serial % 9999 + 1:04d}"


def jakarta_today() -> date:
    return datetime.now(ZoneInfo("Asia/Jakarta")).date()


@dataclass
class Generator:
    """``today`` must be the registry's today, since age is judged on the day of submission."""

    seed: int | None = 2024  # None: a fresh random sequence
    today: date = field(default_factory=jakarta_today)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.serial = self.rng.randrange(10**6)

    def valid(self, **overrides: Any) -> dict[str, Any]:
        rng = self.rng
        city = rng.choices(list(CITY_WEIGHTS), weights=list(CITY_WEIGHTS.values()))[0]
        gender = rng.choice("LP")
        birth = self.today - timedelta(days=rng.randint(18 * 366, 65 * 365))
        self.serial += 1
        phone_digits = f"{rng.randrange(10**9, 10**10)}"
        has_business = rng.random() < 0.66
        first = rng.choice(FIRST_NAMES)
        data: dict[str, Any] = {
            "submission_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "nik": make_nik(city, birth, gender, self.serial),
            "kk": f"{CITY_CODES[city]}{rng.randrange(10**12):012d}",
            "full_name": f"{first} {rng.choice(LAST_NAMES)}",
            "birth_date": birth.isoformat(),
            "gender": gender,
            "phone": rng.choice(("08", "628", "+628", "+62 8")) + phone_digits,
            "email": f"{first.lower()}{self.serial}@contoh.id" if rng.random() < 0.6 else None,
            "city": city,
            "kecamatan": rng.choice(KECAMATAN[city]),
            "kelurahan": "Kelurahan " + rng.choice(("Satu", "Dua", "Tiga", "Empat")),
            "sector": rng.choices(list(SECTOR_WEIGHTS), weights=list(SECTOR_WEIGHTS.values()))[0],
            "has_business": has_business,
            "business_name": f"Usaha {first}" if has_business else None,
            "nib": f"{rng.randrange(10**13):013d}" if has_business and rng.random() < 0.5 else None,
            "consent": True,
            "channel": rng.choice(("portal", "jaki", "kelurahan")),
        }
        data.update(overrides)
        return data

    def invalid(self, code: str) -> dict[str, Any]:
        """A submission that breaks exactly the rule behind ``code``."""
        if code == "underage":
            birth = self.today - timedelta(days=16 * 365)
            data = self.valid(birth_date=birth.isoformat())
            data["nik"] = make_nik(data["city"], birth, data["gender"], self.serial)
            return data
        data = self.valid()
        BREAKERS[code](data)
        return data

    def batch(
        self, count: int, invalid_rate: float = 0.05, duplicate_rate: float = 0.02
    ) -> list[tuple[dict[str, Any], str | None]]:
        """``count`` submissions, each with the reason code expected (None: registered).

        A repeated NIK is expected as ``already-registered``, but the twins travel on
        different partitions, so either one may be answered first: :func:`nik_groups` lets a
        checker accept exactly one registration per NIK instead.
        """
        out: list[tuple[dict[str, Any], str | None]] = []
        registered: list[dict[str, Any]] = []
        for _ in range(count):
            roll = self.rng.random()
            if roll < invalid_rate:
                code = self.rng.choice(list(BREAKERS))
                out.append((self.invalid(code), code))
            elif roll < invalid_rate + duplicate_rate and registered:
                twin = self.rng.choice(registered)
                out.append(
                    (
                        self.valid(
                            nik=twin["nik"],
                            birth_date=twin["birth_date"],
                            gender=twin["gender"],
                            city=twin["city"],
                        ),
                        "already-registered",
                    )
                )
            else:
                data = self.valid()
                registered.append(data)
                out.append((data, None))
        return out


def nik_groups(batch: list[tuple[dict[str, Any], str | None]]) -> list[list[str]]:
    """Submission ids sharing a NIK, for the submissions expected to register or collide."""
    groups: dict[str, list[str]] = {}
    for data, code in batch:
        if code in (None, "already-registered"):
            groups.setdefault(data["nik"], []).append(data["submission_id"])
    return [ids for ids in groups.values() if len(ids) > 1]


def headers_for(
    submission_id: str, source: str = RegistrationSubmitted.producers[0]
) -> dict[str, str]:
    """CloudEvents headers of a new submission: the portal starts the flow, and its
    ``ce_source`` is the producer the catalogue allows (the registry refuses any other)."""
    envelope = new_envelope(type=RegistrationSubmitted.ce_type(), source=source, subject=None)
    return envelope.headers()
