"""Simulator of the programme's internal systems, against a running stack.

It plays the registration portal, the trainers' LMS, the pendamping apps, the OSS / BPJPH /
BPOM issuers, the curators, QRIS / e-Order and Bank DKI for N participants: it submits the
registrations, then reacts to what the services publish the way those systems would
(attendance only for enrolled participants, certificates for submitted products, reviews
level by level, a decision for each referral). Seeded and deterministic in what it intends:
conversion per stage follows the programme's 2021 funnel.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shared.contracts import (
    CertificationIssued,
    CurationReviewed,
    Event,
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
    "sales-reported": "reporting",
    "financing-referred": "reporting",
    "financing-approved": "financed",
}


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
    participant_id: str | None = None
    product_id: str = field(default_factory=lambda: f"prod-{uuid.uuid4().hex[:10]}")
    done: bool = False


def plan(count: int, seed: int, kecamatan: str | None = None) -> list[Plan]:
    rng = random.Random(seed)
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
        plans.append(p)
    return plans


def intended(plans: list[Plan]) -> dict[str, int]:
    registered = [p for p in plans if p.rejected_as is None]
    return {
        stage: sum(1 for p in registered if flag is None or getattr(p, flag))
        for stage, flag in STAGE_FLAGS.items()
    }


def _recent_months(count: int) -> list[str]:
    now = datetime.now(UTC)
    year, month, out = now.year, now.month, []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out


def source_of(fact: type[Event]) -> str:
    """The ``ce_source`` a fact is sent with: the system the catalogue says produces it
    (a consumer dead-letters any other as ``unknown-source``)."""
    return fact.producers[0]


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

    async def emit(self, fact: Event, key: str) -> None:
        headers = new_envelope(type=fact.ce_type(), source=source_of(type(fact))).headers()
        await self.producer.send(
            self.prefix + fact.name,
            fact.model_dump_json().encode(),
            key=key.encode(),
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
        self.sent += 1

    async def submit(self, p: Plan) -> None:
        headers = new_envelope(
            type=RegistrationSubmitted.ce_type(), source=source_of(RegistrationSubmitted)
        ).headers()
        await self.producer.send(
            self.prefix + RegistrationSubmitted.name,
            json.dumps(p.data).encode(),
            key=p.data["submission_id"].encode(),
            headers=[(k, v.encode()) for k, v in headers.items()],
        )

    async def react(self, topic: str, data: dict[str, Any]) -> None:
        name = topic.removeprefix(self.prefix)
        now = datetime.now(UTC)
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
        pid = p.participant_id or ""
        if name == TrainingEnrolled.name:  # the LMS: attendance and the post-test
            cohort = data["cohort_id"]
            for n in range(1, data["session_count"] + 1):
                present = p.trained or n == 1
                await self.emit(
                    TrainingAttendanceRecorded(
                        participant_id=pid,
                        cohort_id=cohort,
                        session_no=n,
                        present=present,
                        recorded_at=now,
                        trainer_id="lms-sim",
                    ),
                    pid,
                )
            await self.emit(
                TrainingAssessed(
                    participant_id=pid,
                    cohort_id=cohort,
                    score=85 if p.trained else 50,
                    assessed_at=now,
                ),
                pid,
            )
        elif name == TrainingNotCompleted.name:
            p.done = True
        elif name == MentoringAssigned.name:  # the pendamping app
            if not p.mentored:
                p.done = True
                return
            for _ in range(3):
                await self.emit(
                    MentoringSessionRecorded(
                        participant_id=pid, mentor_id=data["mentor_id"], session_at=now, notes="sim"
                    ),
                    pid,
                )
        elif name == MentoringCompleted.name:  # the portal, then OSS / BPJPH / BPOM
            if not p.licensed:
                p.done = True
                return
            category = CATEGORY_OF_SECTOR.get(p.data["sector"], "lainnya")
            await self.emit(
                ProductSubmitted.model_validate(
                    {
                        "product_id": p.product_id,
                        "participant_id": pid,
                        "name": "Produk Simulasi",
                        "category": category,
                        "production_started": "2023-01",
                    }
                ),
                pid,
            )
            for kind in ("NIB", *CERTIFICATES.get(category, ())):
                await self.emit(
                    CertificationIssued.model_validate(
                        {
                            "certificate_id": f"{kind}-{uuid.uuid4().hex[:10]}",
                            "participant_id": pid,
                            "product_id": None if kind == "NIB" else p.product_id,
                            "kind": kind,
                            "number": f"{kind}-{uuid.uuid4().hex[:8]}",
                            "issued_at": now,
                            "expires_at": None,
                            "issuer": "sim",
                        }
                    ),
                    pid,
                )
        elif name == ProductCertified.name:  # the curators, level by level
            for level in ("pendamping", "kecamatan", "dinas", "curator"):
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
                            "reviewed_at": now,
                        }
                    ),
                    p.product_id,
                )
                if reject:
                    break
        elif name == ProductCurationRejected.name:
            p.done = True
        elif name == ProductListed.name:  # QRIS / e-Order report sales
            if not p.reporting:
                p.done = True
                return
            for month in _recent_months(3):
                await self.emit(
                    SalesReported.model_validate(
                        {
                            "participant_id": pid,
                            "period": month,
                            "revenue_idr": 3_000_000,
                            "transactions": 60,
                            "channel": "qris",
                            "source_ref": f"qris-{uuid.uuid4().hex[:12]}",
                        }
                    ),
                    pid,
                )
        elif name == FinancingReferred.name:  # Bank DKI decides
            await self.emit(
                FinancingDecided.model_validate(
                    {
                        "referral_id": data["referral_id"],
                        "decision": "approved" if p.financed else "declined",
                        "amount_idr": 7_500_000 if p.financed else 0,
                        "decided_at": now,
                        "bank_ref": f"DKI-{uuid.uuid4().hex[:8]}",
                    }
                ),
                data["referral_id"],
            )
        elif name in (FinancingApproved.name, FinancingDeclined.name):
            p.done = True

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


def print_funnel(result: Result, funnel: Any) -> None:
    from rich.table import Table

    table = Table(title="Jakpreneur funnel (registry's read model vs the simulator's intent)")
    for column in ("stage", "participants", "intended", "conversion", "median days to next"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in funnel["stages"]:
        conversion = "" if row["conversion"] is None else f"{row['conversion']:.1%}"
        median = "" if row["median_days_to_next"] is None else str(row["median_days_to_next"])
        table.add_row(
            row["stage"],
            str(row["count"]),
            str(result.intended.get(row["stage"], "")),
            conversion,
            median,
        )
    console.print(table)
    console.print(
        f"{len(result.plans)} registrations simulated in {result.seconds:.1f} s; rejected: "
        + ", ".join(f"{code} {n}" for code, n in result.rejections.most_common())
        + f"; also {funnel['side_stages']}"
    )
