"""Simulator of the programme's internal systems, against a running stack.

It plays the registration portal, the trainers' LMS, the pendamping apps, the OSS / BPJPH /
BPOM / DJKI issuers, the curators, QRIS / e-Order and Bank DKI for N participants: it
submits the registrations, then reacts to what the services publish the way those systems
would (attendance only for enrolled participants, certificates for submitted products,
reviews level by level, a month of sales after the month before was recorded, a decision
for each referral). Seeded and deterministic in what it intends: conversion per stage
follows the programme's 2021 funnel; monthly sales spread over the business classes, some
growing past Rp 2 bn a year (naik kelas); grade-A products with a trademark go abroad.

**A programme calendar, compressed.** Every fact it sends carries its business time (the
envelope's ``ce_businesstime``, and the fact's own ``*_at``): registrations spread through a
programme year that ended 17 months ago (:func:`calendar_start`), cohorts starting a few
weeks later with weekly sessions, mentoring sessions weeks apart, certificates after their
issuers' lead times, curation level by level, monthly sales reported on the 5th of the
next month up to last month, Bank DKI's decision weeks after the referral. The services
carry each cause's business time to the events it causes (shared/envelope.py), so the
registry's time-in-stage shows programme days although the whole year plays in minutes.
Nothing is dated in the future: the calendar is laid out backwards from today.

``python -m tools.simulate --participants 1000`` (after ``make up``) prints what it
intended per stage; ``make run`` runs it and then compares with the registry's funnel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shared.contracts import (
    CertificationIssued,
    CurationReviewed,
    Event,
    ExportFacilitated,
    FinancialReportRecorded,
    FinancingApproved,
    FinancingDecided,
    FinancingDeclined,
    FinancingReferred,
    MentoringAssigned,
    MentoringCompleted,
    MentoringSessionRecorded,
    ParticipantRegistered,
    ProductCertified,
    ProductCurationRejected,
    ProductListed,
    ProductSubmitted,
    RegistrationRejected,
    RegistrationSubmitted,
    SalesReported,
    TrainingAssessed,
    TrainingAttendanceRecorded,
    TrainingEnrolled,
    TrainingNotCompleted,
)
from shared.envelope import new_envelope
from shared.kafka import KafkaAccess
from tools.registrations import Generator

console = Console(stderr=True)

# The 2021 funnel: 284,164 registered -> 176,891 trained -> 157,498 mentored -> 148,374
# licensed -> 44,456 marketed -> 32,883 reporting -> 6,159 financed.
CONVERSION = {
    "trained": 176_891 / 284_164,
    "mentored": 157_498 / 176_891,
    "licensed": 148_374 / 157_498,
    "marketed": 44_456 / 148_374,
    "reporting": 32_883 / 44_456,
    "financed": 6_159 / 32_883,
}
# A registered trademark (HKI merek, DJKI), which export needs: more often for the products
# the curators grade A (the stronger brands).
TRADEMARK = {"A": 0.6, "B": 0.2, "C": 0.1}
CATEGORY_OF_SECTOR = {
    "kuliner": "makanan-minuman",
    "fashion": "fashion",
    "kriya": "kriya",
    "jasa": "jasa",
    "agribisnis": "makanan-minuman",
    "lainnya": "lainnya",
}
CERTIFICATES = {"makanan-minuman": ("PIRT", "HALAL")}  # besides the business's NIB
WATCHED = (
    ParticipantRegistered,
    RegistrationRejected,
    TrainingEnrolled,
    TrainingNotCompleted,
    MentoringAssigned,
    MentoringCompleted,
    ProductCertified,
    ProductCurationRejected,
    ProductListed,
    ExportFacilitated,
    FinancialReportRecorded,
    FinancingReferred,
    FinancingApproved,
    FinancingDeclined,
)
# Intended funnel stage -> the plan flag that decides it (None: every registered one).
STAGE_FLAGS = {
    "registered": None,
    "training-enrolled": None,
    "training-completed": "trained",
    "mentoring-assigned": "trained",
    "mentoring-completed": "mentored",
    "product-certified": "licensed",
    "product-curated": "marketed",
    "product-listed": "marketed",
    "export-facilitated": "exporter",
    "sales-reported": "reporting",
    "naik-kelas": "moves_up",
    "financing-referred": "reporting",
    "financing-approved": "financed",
}

# ----------------------------------------------------------------- the programme calendar

DAY = timedelta(days=1)
WIB = timezone(timedelta(hours=7), "WIB")
REGISTRATION_MONTHS = 12  # the programme year
# It ended this many months before the current month: the slowest journey (about 13
# months to a listing) still has three months of sales reported before today.
CALENDAR_LAG_MONTHS = 17
# More sign up when the dinas campaigns (Jakpreneur festivals, Ramadan bazaars), by the
# month's place in the programme year.
MONTH_WEIGHTS = (8, 9, 10, 12, 9, 7, 7, 8, 9, 10, 6, 5)
# Each wait of the calendar, in days: (shortest, longest).
WAITS = {
    "cohort-start": (3, 21),  # registration -> the cohort's first session
    "training": (21, 35),  # first session -> last (about weekly)
    "post-test": (1, 5),  # last session -> post-test
    "mentoring-first": (7, 21),  # training completed -> the pendamping's first visit
    "mentoring-next": (14, 35),  # between visits
    "product": (3, 28),  # mentoring completed -> product submitted for licensing
    "curation-step": (3, 21),  # between curation levels
    "bank": (10, 40),  # referral -> Bank DKI's decision
}
# Issuers' lead times, days from the product's submission (OSS is quick, SEHATI is not).
LEAD_DAYS = {"NIB": (1, 3), "PIRT": (14, 45), "HALAL": (21, 90), "HKI_MEREK": (30, 120)}
VALID_YEARS = {"NIB": None, "PIRT": 5, "HALAL": 4, "HKI_MEREK": 10}
REPORT_DAY = 5  # a month's sales are reported on the 5th of the next month
CURATION = ("pendamping", "kecamatan", "dinas", "curator")

# ----------------------------------------------------------- sales and business class

# PP 7/2021: the most annual sales each class allows, inclusive (besar: the rest). The
# marketplace derives the class from its ledger; this is the simulator's own reading, to
# know what it intends.
CLASS_CEILINGS = (("mikro", 2_000_000_000), ("kecil", 15_000_000_000), ("menengah", 50_000_000_000))
CLASSES = ("mikro", "kecil", "menengah", "besar")
# Monthly sales profiles of those who report, with their share: (share, monthly rupiah
# before, monthly rupiah after the business grows, or None when it stays).
SALES_PROFILES: dict[str, tuple[float, tuple[int, int], tuple[int, int] | None]] = {
    "mikro": (0.70, (4_000_000, 120_000_000), None),
    "mikro-naik": (0.15, (90_000_000, 150_000_000), (240_000_000, 480_000_000)),
    "kecil": (0.10, (220_000_000, 1_000_000_000), None),
    "kecil-naik": (0.04, (700_000_000, 1_150_000_000), (1_500_000_000, 3_500_000_000)),
    "menengah": (0.01, (1_400_000_000, 3_800_000_000), None),
}
FINANCING_IDR = (2_000_000, 10_000_000)  # Bank DKI micro credit, in Rp 500,000 steps


def _month_index(period: str) -> int:
    return int(period[:4]) * 12 + int(period[5:7]) - 1


def _period(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _month_start(index: int) -> datetime:
    """The first instant of a month, in Jakarta."""
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=WIB)


def calendar_start(now: datetime) -> int:
    """The month index the programme year starts in (REGISTRATION_MONTHS before its end)."""
    local = now.astimezone(WIB)
    return local.year * 12 + local.month - 1 - CALENDAR_LAG_MONTHS - REGISTRATION_MONTHS


def class_of(annual_idr: int) -> str:
    return next((c for c, ceiling in CLASS_CEILINGS if annual_idr <= ceiling), "besar")


def announced_classes(sales: Sequence[Sale]) -> list[str]:
    """The classes the ledger gives as the months come in, in order (sales in period
    order, one a month), each change once: the last 12 months ending at the latest one,
    with 3 to 11 of them annualised (sum x 12 / months), fewer than 3 none (issue 16)."""
    announced: list[str] = []
    for n in range(1, len(sales) + 1):
        latest = _month_index(sales[n - 1].period)
        window = [s for s in sales[:n] if _month_index(s.period) > latest - 12]
        if len(window) < 3:
            continue
        annual = sum(s.revenue_idr for s in window) * 12 // len(window)
        business_class = class_of(annual)
        if not announced or announced[-1] != business_class:
            announced.append(business_class)
    return announced


@dataclass(frozen=True)
class Sale:
    period: str
    revenue_idr: int
    transactions: int
    reported_at: datetime


@dataclass
class Timeline:
    """When each thing the simulated systems do for a participant happens (business time).
    Laid out at plan time, so what is intended is known before anything is sent."""

    registered_at: datetime
    training_start: datetime
    training_end: datetime  # the last session
    assessed_at: datetime
    mentoring: list[datetime]  # the pendamping's three visits
    product_submitted_at: datetime
    issued: dict[str, datetime]  # certificate kind -> issued
    reviewed: dict[str, datetime]  # curation level -> reviewed
    sales: list[Sale]  # one a month from the month after the listing to last month
    bank_wait: timedelta  # referral -> decision
    financing_idr: int

    @property
    def listed_at(self) -> datetime:
        return self.reviewed["curator"]


@dataclass
class Plan:
    """What the simulated systems will do for one registration."""

    data: dict[str, Any]
    rejected_as: str | None  # the reason code the registry should answer with, if any
    trained: bool = False
    mentored: bool = False
    licensed: bool = False
    marketed: bool = False
    reporting: bool = False
    financed: bool = False
    grade: str = "B"
    trademark: bool = False  # an HKI merek for the product (export needs it)
    sales_profile: str = "mikro"
    timeline: Timeline | None = None
    participant_id: str | None = None
    product_id: str = field(default_factory=lambda: f"prod-{uuid.uuid4().hex[:10]}")
    # progress, as the services answer
    done: bool = False
    curation_sent: bool = False
    sales_sent: int = 0
    decided: bool = False
    exported: bool = False

    @property
    def exporter(self) -> bool:
        """A grade-A listing with a trademark and sales: the marketplace facilitates export."""
        return self.reporting and self.grade == "A" and self.trademark

    @property
    def classes(self) -> list[str]:
        """The classes the marketplace will announce, in order."""
        if not self.reporting or self.timeline is None:
            return []
        return announced_classes(self.timeline.sales)

    @property
    def moves_up(self) -> bool:
        """Naik kelas: some class announced above the first."""
        classes = self.classes
        return any(CLASSES.index(c) > CLASSES.index(classes[0]) for c in classes)

    @property
    def sales_done(self) -> bool:
        return self.timeline is None or self.sales_sent >= len(self.timeline.sales)

    def settle(self) -> None:
        """A reporting plan is done once every month is recorded, the bank has decided
        and, for an exporter, the export was facilitated."""
        if self.decided and self.sales_done and (self.exported or not self.exporter):
            self.done = True


def _days(rng: random.Random, wait: str | tuple[int, int]) -> timedelta:
    low, high = WAITS[wait] if isinstance(wait, str) else wait
    return timedelta(days=rng.uniform(low, high))


def _office_hours(rng: random.Random, day: datetime) -> datetime:
    """A moment of ``day`` between 08:00 and 17:00 in Jakarta, in UTC."""
    local = day.astimezone(WIB).replace(hour=8, minute=0, second=0, microsecond=0)
    return (local + timedelta(minutes=rng.randrange(9 * 60))).astimezone(UTC)


def _timeline(rng: random.Random, p: Plan, start: int, now: datetime) -> Timeline:
    month = start + rng.choices(range(REGISTRATION_MONTHS), weights=MONTH_WEIGHTS)[0]
    days_in_month = (_month_start(month + 1) - _month_start(month)).days
    day = _month_start(month) + rng.randrange(days_in_month) * DAY
    registered = (
        day.astimezone(WIB).replace(hour=rng.randrange(7, 22), minute=rng.randrange(60))
    ).astimezone(UTC)
    training_start = _office_hours(rng, registered + _days(rng, "cohort-start"))
    training_end = training_start + _days(rng, "training")
    assessed = training_end + _days(rng, "post-test")
    visits = [assessed + _days(rng, "mentoring-first")]
    for _ in range(2):
        visits.append(visits[-1] + _days(rng, "mentoring-next"))
    visits = [_office_hours(rng, v) for v in visits]
    submitted = visits[-1] + _days(rng, "product")
    issued = {
        kind: _office_hours(rng, submitted + _days(rng, lead)) for kind, lead in LEAD_DAYS.items()
    }
    category = CATEGORY_OF_SECTOR.get(p.data.get("sector", ""), "lainnya")
    kinds = ("NIB", *CERTIFICATES.get(category, ()), *(("HKI_MEREK",) if p.trademark else ()))
    reviewed, at = {}, max(issued[k] for k in kinds)
    for level in CURATION:
        at = _office_hours(rng, at + _days(rng, "curation-step"))
        reviewed[level] = at
    sales = _sales(rng, p.sales_profile, reviewed["curator"], now)
    amount = rng.randrange(FINANCING_IDR[0], FINANCING_IDR[1] + 1, 500_000)
    return Timeline(
        registered_at=registered,
        training_start=training_start,
        training_end=training_end,
        assessed_at=assessed,
        mentoring=visits,
        product_submitted_at=submitted,
        issued={k: issued[k] for k in kinds},
        reviewed=reviewed,
        sales=sales,
        bank_wait=_days(rng, "bank"),
        financing_idr=amount,
    )


def _sales(rng: random.Random, profile: str, listed: datetime, now: datetime) -> list[Sale]:
    """A month of sales for each month after the listing's up to last month, reported on
    the 5th of the next (never after now), following the plan's profile: noisy around a
    level that drifts, and for those who grow, a step up some months in."""
    local = listed.astimezone(WIB)
    first = local.year * 12 + local.month  # the month after the listing's
    today = now.astimezone(WIB)
    last = today.year * 12 + today.month - 2  # last month
    months = list(range(first, last + 1))
    _, before, after = SALES_PROFILES[profile]
    level = rng.uniform(*before)
    grown = rng.uniform(*after) if after else None
    # the step comes after at least 3 months (a first class first), in time to count
    step = rng.randint(3, max(3, len(months) - 6)) if grown else len(months)
    drift = rng.uniform(-0.005, 0.02)
    out = []
    for n, index in enumerate(months):
        base = grown if grown is not None and n >= step else level
        revenue = int(base * (1 + drift) ** n * rng.uniform(0.85, 1.15)) // 1000 * 1000
        ticket = rng.uniform(25_000, 150_000) if base < 200_000_000 else rng.uniform(1e5, 2e6)
        reported = _month_start(index + 1) + (REPORT_DAY - 1) * DAY
        reported_at = min(_office_hours(rng, reported), now - timedelta(minutes=1))
        out.append(Sale(_period(index), revenue, max(1, int(revenue / ticket)), reported_at))
    return out


def plan(
    count: int, seed: int, kecamatan: str | None = None, now: datetime | None = None
) -> list[Plan]:
    """``count`` registrations and what becomes of each; the calendar ends at ``now``."""
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    calendar = random.Random(f"{seed}-calendar")  # apart, so the flags are as they were
    start = calendar_start(now)
    plans = []
    for data, code in Generator(seed=seed).batch(count, invalid_rate=0.04, duplicate_rate=0.02):
        if kecamatan:
            data["kecamatan"] = kecamatan
        p = Plan(data=data, rejected_as=code)
        if code is None:
            p.trained = rng.random() < CONVERSION["trained"]
            p.mentored = p.trained and rng.random() < CONVERSION["mentored"]
            p.licensed = p.mentored and rng.random() < CONVERSION["licensed"]
            p.marketed = p.licensed and rng.random() < CONVERSION["marketed"]
            p.reporting = p.marketed and rng.random() < CONVERSION["reporting"]
            p.financed = p.reporting and rng.random() < CONVERSION["financed"]
            p.grade = rng.choices("ABC", weights=(3, 5, 2))[0]
        p.trademark = p.licensed and calendar.random() < TRADEMARK[p.grade]
        profiles = list(SALES_PROFILES)
        p.sales_profile = calendar.choices(profiles, [SALES_PROFILES[k][0] for k in profiles])[0]
        p.timeline = _timeline(calendar, p, start, now)
        plans.append(p)
    return plans


def intended(plans: list[Plan]) -> dict[str, int]:
    registered = [p for p in plans if p.rejected_as is None]
    return {
        stage: sum(1 for p in registered if flag is None or getattr(p, flag))
        for stage, flag in STAGE_FLAGS.items()
    }


def intended_outcomes(plans: list[Plan]) -> dict[str, Any]:
    """The outcomes the registry's funnel should show (``outcomes``), as intended."""
    registered = [p for p in plans if p.rejected_as is None]
    moves: Counter[tuple[str, str]] = Counter()
    now: Counter[str] = Counter()
    for p in registered:
        classes = p.classes
        if classes:
            now[classes[-1]] += 1
        if p.moves_up:
            moves[(classes[0], max(classes, key=CLASSES.index))] += 1
    exporters = sum(p.exporter for p in registered)
    financed = [p for p in registered if p.financed and p.timeline]
    return {
        "naik_kelas": {
            "participants": sum(moves.values()),
            "transitions": [
                {"from_class": a, "to_class": b, "participants": n}
                for (a, b), n in sorted(
                    moves.items(), key=lambda m: (CLASSES.index(m[0][0]), CLASSES.index(m[0][1]))
                )
            ],
        },
        "business_classes": {c: now[c] for c in CLASSES},
        "export_facilitated": {"participants": exporters, "products": exporters},
        "financing_approved": {
            "participants": len(financed),
            "total_idr": sum(p.timeline.financing_idr for p in financed if p.timeline),
        },
    }


def source_of(fact: type[Event]) -> str:
    """The ``ce_source`` a fact is sent with: the system the catalogue says produces it
    (a consumer dead-letters any other as ``unknown-source``)."""
    return fact.producers[0]


# The field of each inbound fact that says when it happened: its business time.
TIME_FIELDS = ("recorded_at", "assessed_at", "session_at", "issued_at", "reviewed_at", "decided_at")


class Simulator:
    """Plays every internal system; ``kafka`` is the simulator's principal, which may write
    every inbound fact and read every topic (``.run/stack.env`` has it)."""

    def __init__(self, kafka: KafkaAccess, prefix: str, plans: list[Plan]) -> None:
        self.kafka, self.prefix, self.plans = kafka, prefix, plans
        self.by_submission = {p.data["submission_id"]: p for p in plans}
        self.by_participant: dict[str, Plan] = {}
        # Events of a participant whose registration has not been read yet: topics are read
        # side by side, so a training-enrolled can come before its participant-registered
        # (after a broker restart it does); they are reacted to once the participant is known.
        self.early: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self.rejections: Counter[str] = Counter()
        self.sent = 0
        # The business time of facts that have no time field of their own (a product's
        # submission, a month's sales report), by product id or source_ref.
        self.dated: dict[str, datetime] = {}

    def business_time(self, fact: Event) -> datetime | None:
        """When the fact happened in the simulated calendar: its ``*_at``, or as dated."""
        for name in TIME_FIELDS:
            at = getattr(fact, name, None)
            if isinstance(at, datetime):
                return at
        key = getattr(fact, "source_ref", None) or getattr(fact, "product_id", None)
        return self.dated.pop(key, None) if isinstance(key, str) else None

    async def emit(self, fact: Event, key: str) -> None:
        headers = new_envelope(
            type=fact.ce_type(),
            source=source_of(type(fact)),
            business_time=self.business_time(fact),
        ).headers()
        await self.producer.send(
            self.prefix + fact.name,
            fact.model_dump_json().encode(),
            key=key.encode(),
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
        self.sent += 1

    async def submit(self, p: Plan) -> None:
        headers = new_envelope(
            type=RegistrationSubmitted.ce_type(),
            source=source_of(RegistrationSubmitted),
            business_time=p.timeline.registered_at if p.timeline else None,
        ).headers()
        await self.producer.send(
            self.prefix + RegistrationSubmitted.name,
            json.dumps(p.data).encode(),
            key=p.data["submission_id"].encode(),
            headers=[(k, v.encode()) for k, v in headers.items()],
        )

    async def react(self, topic: str, data: dict[str, Any]) -> None:
        name = topic.removeprefix(self.prefix)
        if name == RegistrationRejected.name:
            p = self.by_submission.get(data["submission_id"])
            if p is not None:
                p.done = True
                self.rejections.update({r["code"] for r in data["reasons"]})
            return
        if name == ParticipantRegistered.name:
            p = self.by_submission.get(data["submission_id"])
            if p is not None:
                p.participant_id = data["participant_id"]
                self.by_participant[p.participant_id] = p
                for early_topic, early_data in self.early.pop(p.participant_id, []):
                    await self.react(early_topic, early_data)
            return
        p = self.by_participant.get(data.get("participant_id", ""))
        if p is None:
            if isinstance(data.get("participant_id"), str):
                self.early.setdefault(data["participant_id"], []).append((topic, data))
            return
        assert p.timeline is not None  # every plan has one
        await self._act(p, p.timeline, name, data)

    async def _act(self, p: Plan, t: Timeline, name: str, data: dict[str, Any]) -> None:
        pid = p.participant_id or ""
        if name == TrainingEnrolled.name:  # the LMS: attendance and the post-test
            cohort, sessions = data["cohort_id"], data["session_count"]
            step = (t.training_end - t.training_start) / max(1, sessions - 1)
            for n in range(1, sessions + 1):
                await self.emit(
                    TrainingAttendanceRecorded(
                        participant_id=pid,
                        cohort_id=cohort,
                        session_no=n,
                        present=p.trained or n == 1,
                        recorded_at=t.training_start + (n - 1) * step,
                        trainer_id="lms-sim",
                    ),
                    pid,
                )
            await self.emit(
                TrainingAssessed(
                    participant_id=pid,
                    cohort_id=cohort,
                    score=85 if p.trained else 50,
                    assessed_at=t.assessed_at,
                ),
                pid,
            )
        elif name == TrainingNotCompleted.name:
            p.done = True
        elif name == MentoringAssigned.name:  # the pendamping app
            if not p.mentored:
                p.done = True
                return
            for visit in t.mentoring:
                await self.emit(
                    MentoringSessionRecorded(
                        participant_id=pid,
                        mentor_id=data["mentor_id"],
                        session_at=visit,
                        notes="sim",
                    ),
                    pid,
                )
        elif name == MentoringCompleted.name:  # the portal, then OSS / BPJPH / BPOM / DJKI
            if not p.licensed:
                p.done = True
                return
            await self._license(p, t, pid)
        elif name == ProductCertified.name:  # the curators, level by level, once
            if p.curation_sent or data.get("product_id") != p.product_id:
                return
            p.curation_sent = True
            for level in CURATION:
                reject = not p.marketed and level == "kecamatan"
                await self.emit(
                    CurationReviewed.model_validate(
                        {
                            "product_id": p.product_id,
                            "level": level,
                            "decision": "reject" if reject else "approve",
                            "grade": p.grade if level == "curator" else None,
                            "reviewer_id": f"{level}-sim",
                            "notes": "",
                            "reviewed_at": t.reviewed[level],
                        }
                    ),
                    p.product_id,
                )
                if reject:
                    break
        elif name == ProductCurationRejected.name:
            p.done = True
        elif name == ProductListed.name:  # QRIS / e-Order report the first month
            if not p.reporting:
                p.done = True
                return
            if p.sales_sent == 0:
                await self._report(p, t, pid)
        elif name == FinancialReportRecorded.name:  # ... and each next once it is recorded
            sent = t.sales[p.sales_sent - 1] if p.sales_sent else None
            if sent is not None and data.get("period") == sent.period and not p.sales_done:
                await self._report(p, t, pid)
            p.settle()
        elif name == ExportFacilitated.name:
            p.exported = True
            p.settle()
        elif name == FinancingReferred.name:  # Bank DKI decides, weeks later
            referred = t.sales[min(2, len(t.sales) - 1)].reported_at if t.sales else t.listed_at
            amount = min(t.financing_idr, int(data.get("max_amount_idr", t.financing_idr)))
            await self.emit(
                FinancingDecided.model_validate(
                    {
                        "referral_id": data["referral_id"],
                        "decision": "approved" if p.financed else "declined",
                        "amount_idr": amount if p.financed else 0,
                        "decided_at": min(referred + t.bank_wait, datetime.now(UTC)),
                        "bank_ref": f"DKI-{uuid.uuid4().hex[:8]}",
                    }
                ),
                data["referral_id"],
            )
        elif name in (FinancingApproved.name, FinancingDeclined.name):
            p.decided = True
            if p.reporting:
                p.settle()
            else:
                p.done = True

    async def _license(self, p: Plan, t: Timeline, pid: str) -> None:
        category = CATEGORY_OF_SECTOR.get(p.data["sector"], "lainnya")
        started = t.registered_at - timedelta(days=30 * (12 if p.data.get("has_business") else 0))
        self.dated[p.product_id] = t.product_submitted_at
        await self.emit(
            ProductSubmitted.model_validate(
                {
                    "product_id": p.product_id,
                    "participant_id": pid,
                    "name": "Produk Simulasi",
                    "category": category,
                    "production_started": started.astimezone(WIB).strftime("%Y-%m"),
                }
            ),
            pid,
        )
        for kind, issued in sorted(t.issued.items(), key=lambda item: item[1]):
            years = VALID_YEARS[kind]
            await self.emit(
                CertificationIssued.model_validate(
                    {
                        "certificate_id": f"{kind}-{uuid.uuid4().hex[:10]}",
                        "participant_id": pid,
                        "product_id": None if kind == "NIB" else p.product_id,
                        "kind": kind,
                        "number": f"{kind}-{uuid.uuid4().hex[:8]}",
                        "issued_at": issued,
                        "expires_at": issued + timedelta(days=365 * years) if years else None,
                        "issuer": "sim",
                    }
                ),
                pid,
            )

    async def _report(self, p: Plan, t: Timeline, pid: str) -> None:
        """The next month's sales (a month is sent once the one before it is recorded, as
        months come one after another)."""
        sale = t.sales[p.sales_sent]
        p.sales_sent += 1
        source_ref = f"qris-{uuid.uuid4().hex[:12]}"
        self.dated[source_ref] = sale.reported_at
        await self.emit(
            SalesReported.model_validate(
                {
                    "participant_id": pid,
                    "period": sale.period,
                    "revenue_idr": sale.revenue_idr,
                    "transactions": sale.transactions,
                    "channel": "qris",
                    "source_ref": source_ref,
                }
            ),
            pid,
        )

    async def run(self, timeout_s: float = 1800, idle_s: float = 60) -> None:
        self.producer = AIOKafkaProducer(
            **self.kafka.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=5
        )
        await self.producer.start()
        consumer = AIOKafkaConsumer(**self.kafka.client_kwargs(), enable_auto_commit=False)
        await consumer.start()
        partitions = []
        for event in WATCHED:
            topic = self.prefix + event.name
            found = consumer.partitions_for_topic(topic)
            for _ in range(100):
                if found:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.2)
                found = consumer.partitions_for_topic(topic)
            if not found:
                raise RuntimeError(f"topic {topic} does not exist; is the stack running?")
            partitions += [TopicPartition(topic, n) for n in found]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        first_wave = [p for p in self.plans if p.rejected_as != "already-registered"]
        first_wave.sort(
            key=lambda p: (
                p.timeline.registered_at if p.timeline else datetime.min.replace(tzinfo=UTC)
            )
        )
        second_wave = [p for p in self.plans if p.rejected_as == "already-registered"]
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        try:
            with Progress(*columns, console=console) as progress:
                journeys = progress.add_task("participants settled", total=len(self.plans))
                for p in first_wave:  # repeated NIKs come after their originals are answered
                    await self.submit(p)
                await self.producer.flush()
                waves_left = [second_wave]
                deadline, last_activity = time.monotonic() + timeout_s, time.monotonic()
                while time.monotonic() < deadline and time.monotonic() - last_activity < idle_s:
                    batches = await consumer.getmany(timeout_ms=500, max_records=2000)
                    for records in batches.values():
                        for record in records:
                            last_activity = time.monotonic()
                            await self.react(record.topic, json.loads(record.value))
                    if waves_left and all(p.done or p.participant_id for p in first_wave):
                        for p in waves_left.pop():
                            await self.submit(p)
                    await self.producer.flush()
                    settled = sum(p.done for p in self.plans)
                    progress.update(journeys, completed=settled)
                    if settled == len(self.plans):
                        break
        finally:
            await consumer.stop()
            await self.producer.stop()


@dataclass
class Result:
    intended: dict[str, int]
    plans: list[Plan]
    rejections: Counter[str]
    settled: int
    seconds: float

    @property
    def outcomes(self) -> dict[str, Any]:
        """The outcomes intended (the funnel's ``outcomes``)."""
        return intended_outcomes(self.plans)


async def simulate(
    kafka: KafkaAccess,
    prefix: str = "",
    participants: int = 1000,
    seed: int = 2021,
    kecamatan: str | None = None,
) -> Result:
    plans = plan(participants, seed, kecamatan)
    simulator = Simulator(kafka, prefix, plans)
    started = time.monotonic()
    await simulator.run()
    return Result(
        intended(plans),
        plans,
        simulator.rejections,
        sum(p.done for p in plans),
        time.monotonic() - started,
    )


def main() -> None:
    from tools.demo import stack_access

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument(
        "--bootstrap", default="", help="the broker's address; default: .run/stack.env's"
    )
    parser.add_argument("--topic-prefix", default="")
    args = parser.parse_args()
    kafka = stack_access(args.bootstrap)
    result = asyncio.run(simulate(kafka, args.topic_prefix, args.participants, args.seed))
    summary = {
        "intended": result.intended,
        "outcomes": result.outcomes,
        "rejections": dict(result.rejections),
        "settled": result.settled,
        "seconds": round(result.seconds, 1),
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()


def settled_funnel(
    registry_url: str, wanted: dict[str, int], token: str | None = None, quiet_s: float = 20
) -> Any:
    """Poll the registry's funnel until it shows what was intended, or stops changing; as
    ops (``token``, else JAKPRENEUR_OPS_TOKEN: tools/ops_token.py)."""
    import httpx

    from tools.ops_token import ops_headers

    headers = {"Authorization": f"Bearer {token}"} if token else ops_headers()
    last, last_change = None, time.monotonic()
    while True:
        answer = httpx.get(f"{registry_url}/funnel", headers=headers, timeout=30)
        answer.raise_for_status()  # a 401 says the token is missing or stale
        funnel = answer.json()
        counts = {row["stage"]: row["count"] for row in funnel["stages"]}
        if all(counts.get(stage, 0) >= n for stage, n in wanted.items()):
            return funnel
        if counts != last:
            last, last_change = counts, time.monotonic()
        elif time.monotonic() - last_change > quiet_s:
            return funnel
        time.sleep(0.5)


def rupiah(amount: int) -> str:
    """Rp with the thousands separated as in Indonesia: Rp 7.500.000."""
    return "Rp " + f"{amount:,}".replace(",", ".")


def print_funnel(result: Result, funnel: Any) -> None:
    """The closing table of ``make run``: each stage in programme order beside what was
    intended, conversion, median (business) days from the stage before and to the next;
    then the outcomes and the registrations per month."""
    from rich.table import Table

    table = Table(
        title="Jakpreneur funnel (registry's read model vs the simulator's intent)",
        caption="participants; median days (business time) from the previous stage, to the next",
    )
    columns = ("step", "stage", "count", "intended", "conv.", "days from", "days to")
    for column in columns:
        left = column in ("step", "stage")  # the stage's name whole, even in 80 columns
        table.add_column(column, justify="left" if left else "right", no_wrap=column == "stage")

    def days(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    for row in funnel["stages"]:
        conversion = "" if row["conversion"] is None else f"{row['conversion']:.1%}"
        table.add_row(
            row.get("step", ""),
            row["stage"] if row.get("main", True) else f"  ↳ {row['stage']}",
            str(row["count"]),
            str(result.intended.get(row["stage"], "")),
            conversion,
            days(row.get("median_days_from_previous")),
            days(row["median_days_to_next"]),
        )
    console.print(table)
    console.print(
        f"{len(result.plans)} registrations simulated in {result.seconds:.1f} s; rejected: "
        + ", ".join(f"{code} {n}" for code, n in result.rejections.most_common())
        + f"; also {funnel['side_stages']}"
    )
    outcomes, meant = funnel.get("outcomes"), result.outcomes
    if outcomes:
        naik, financing = outcomes["naik_kelas"], outcomes["financing_approved"]
        moves = ", ".join(
            f"{t['from_class']} → {t['to_class']} {t['participants']}" for t in naik["transitions"]
        )
        console.print(
            f"Outcomes — naik kelas: {naik['participants']} (intended "
            f"{meant['naik_kelas']['participants']}; {moves or 'none'}); business class now: "
            + ", ".join(f"{c} {n}" for c, n in outcomes["business_classes"].items())
            + f"; export facilitated: {outcomes['export_facilitated']['participants']} "
            f"(intended {meant['export_facilitated']['participants']}); financing approved: "
            f"{financing['participants']}, {rupiah(financing['total_idr'])} (intended "
            f"{rupiah(meant['financing_approved']['total_idr'])})"
        )
    per_month = funnel.get("registrations_per_month") or []
    if per_month:
        console.print(
            "Registrations per month (business time): "
            + " · ".join(f"{m['month']} {m['participants']}" for m in per_month)
        )
