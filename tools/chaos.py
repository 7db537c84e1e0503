"""``make chaos``: fault injection under load, and the proof that every guarantee held.

A fresh supervised local stack (``python -m deploy.local supervise`` in its own run
directory, on free ports) is fed by the simulator at a steady rate (``--rate`` submissions
per second). Mid-stream each service in turn is SIGKILLed (registry, coaching, marketplace,
notifications), then mongod, then the Kafka broker; before the next kill the victim must be
back: its restart count in the supervisor's state file incremented, running under a new
pid, every service's ``/readyz`` answering 200 and events flowing again.

When the system has settled (the simulator saw every plan to its end, the registry's funnel
matches the intent and stops changing, every service reports ``jakpreneur_outbox_backlog``
and ``jakpreneur_consumer_lag`` zero, and every consumer group has committed up to the end
of its topics), every topic is read from the beginning with plain aiokafka consumers and
the guarantees are checked:

- every submission is answered by exactly one distinct event (``participant-registered``
  or ``registration-rejected``; a repeated ``ce_id`` is a redelivery, two ``ce_id`` s are a
  duplicate), of the kind the simulator intended;
- every effect once: one ``training-enrolled`` per registered participant, one
  ``product-certified`` per certified product, one ``product-listed`` per listed product,
  one ``financing-referred`` per referred participant (distinct ``ce_id`` s per entity),
  one notification outcome per event told about, and each message delivered once at the
  provider stand-in by its raw count (``GET /_deliveries``, when the stand-in has it);
- the registry's funnel equals the simulator's intent at every stage;
- nothing on any ``.dlq`` topic (the simulator's invalid registrations are answered with
  ``registration-rejected``, not dead-lettered).

Progress lines go to stderr; the JSON summary (kills, restarts, participants, duplicates,
time to settle, each check with its evidence) to stdout or ``--out``. The exit status is 1
when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from deploy.local.launcher import install_kafka, install_mongod
from deploy.local.stack import free_ports_env, spawn_supervisor
from shared.contracts import (
    Event,
    FinancingReferred,
    NotificationFailed,
    NotificationSent,
    ParticipantRegistered,
    ProductCertified,
    ProductListed,
    RegistrationRejected,
    RegistrationSubmitted,
    TrainingEnrolled,
)
from shared.envelope import new_envelope
from shared.kafka import KafkaAccess
from tools.ops_token import ops_headers
from tools.simulate import WATCHED, Plan, Simulator, intended, plan, source_of

T = TypeVar("T")

SERVICES = ("registry", "coaching", "marketplace", "notifications")
VICTIMS = (*SERVICES, "mongod", "kafka")
# Every message goes out during the run: no quiet hours, no daily cap deferring the rest.
SERVICE_ENV = {
    "NOTIFICATIONS_QUIET_START_HOUR": "0",
    "NOTIFICATIONS_QUIET_END_HOUR": "0",
    "NOTIFICATIONS_DAILY_LIMIT": "1000",
    **{f"{name.upper()}_LOG_LEVEL": "WARNING" for name in SERVICES},
}
_STARTED = time.monotonic()


def say(message: str) -> None:
    sys.stderr.write(f"[chaos +{time.monotonic() - _STARTED:6.1f}s] {message}\n")
    sys.stderr.flush()


async def wait_for(
    check: Callable[[], Awaitable[T | None]], timeout: float, what: str, every: float = 0.5
) -> T:
    """Poll ``check`` until it returns something other than None; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(every)


# --------------------------------------------------------------------------- the stack


class SupervisedStack:
    """A fresh stack under its own supervisor process, in ``run_dir``, on free ports."""

    def __init__(self, run_dir: Path, topic_prefix: str) -> None:
        self.run_dir = run_dir
        self.topic_prefix = topic_prefix
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}

    def start(self, timeout: float = 300) -> dict[str, str]:
        install_kafka()
        install_mongod()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        env = {
            **os.environ,
            **SERVICE_ENV,
            "JAKPRENEUR_RUN_DIR": str(self.run_dir),
            "TOPIC_PREFIX": self.topic_prefix,
            **free_ports_env(),
        }
        self.process = spawn_supervisor(env, self.run_dir / "supervisor.log")
        deadline = time.monotonic() + timeout
        env_file = self.run_dir / "stack.env"
        while not env_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError("the stack did not start:\n" + self.log_tail())
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stack did not start in {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.5)
        lines = env_file.read_text().splitlines()
        self.env = dict(line.split("=", 1) for line in lines if "=" in line)
        return self.env

    def log_tail(self) -> str:
        return (self.run_dir / "supervisor.log").read_text(errors="replace")[-3000:]

    def processes(self) -> dict[str, dict[str, Any]]:
        """The supervisor's state file (replaced atomically), by process name."""
        state = json.loads((self.run_dir / "supervisor.json").read_text())
        return {row["name"]: row for row in state["processes"]}

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(90)
        except subprocess.TimeoutExpired:
            self.process.kill()  # its children die with it (PR_SET_PDEATHSIG)
            self.process.wait()


async def all_ready(http: httpx.AsyncClient, env: dict[str, str]) -> bool:
    for name in SERVICES:
        try:
            answer = await http.get(f"{env[name.upper() + '_URL']}/readyz", timeout=3)
        except httpx.HTTPError:
            return False
        if answer.status_code != 200:
            return False
    return True


_SAMPLE = re.compile(r"^(jakpreneur_outbox_backlog|jakpreneur_consumer_lag)\{([^}]*)\} (\S+)$")


async def backlog_and_lag(http: httpx.AsyncClient, env: dict[str, str]) -> dict[str, float]:
    """Per service, its outbox backlog and its summed consumer lag, from ``/metrics``."""
    out: dict[str, float] = {}
    for name in SERVICES:
        text = (await http.get(f"{env[name.upper() + '_URL']}/metrics", timeout=10)).text
        backlog = lag = None
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match is None:
                continue
            if match[1] == "jakpreneur_outbox_backlog":
                backlog = float(match[3])
            else:
                lag = (lag or 0.0) + float(match[3])
        if backlog is None:
            raise RuntimeError(f"{name}'s /metrics has no jakpreneur_outbox_backlog")
        out[f"{name}_outbox_backlog"] = backlog
        out[f"{name}_consumer_lag"] = lag or 0.0  # no partition assigned yet reads as none
    return out


async def group_lag(kafka: KafkaAccess, prefix: str) -> dict[str, int]:
    """Per consumer group of this deployment: end offsets minus committed offsets (as a
    principal that may describe every group and read every topic: the simulator, ops)."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    consumer = AIOKafkaConsumer(**kafka.client_kwargs())
    await admin.start()
    await consumer.start()
    try:
        groups = [g[0] for g in await admin.list_consumer_groups()]
        mine = [g for g in groups if g.startswith(prefix)] if prefix else groups
        out: dict[str, int] = {}
        for group in mine:
            committed = await admin.list_consumer_group_offsets(group)
            ends = await consumer.end_offsets(list(committed))
            out[group] = sum(max(0, ends[tp] - meta.offset) for tp, meta in committed.items())
        return out
    finally:
        await consumer.stop()
        await admin.close()


# --------------------------------------------------------------------------- the feed


@dataclass
class Outgoing:
    topic: str
    value: bytes
    key: bytes
    headers: list[tuple[str, bytes]]


class ChaosFeed(Simulator):
    """The simulator at a steady rate, through a broker that dies: a record whose delivery
    failed is sent again as it was (same ``ce_id``: a redelivery, which every consumer
    drops), and an event seen again under the same ``ce_id`` is not reacted to twice."""

    def __init__(self, kafka: KafkaAccess, prefix: str, plans: list[Plan], rate: float) -> None:
        super().__init__(kafka, prefix, plans)
        self.rate = rate
        self.submitted = 0
        self.seen: set[str] = set()
        self.redelivered: Counter[str] = Counter()  # topic -> records seen again by ce_id
        self.resent = 0
        self.events = 0
        self.inflight: list[tuple[asyncio.Future[Any], Outgoing]] = []
        self.finished = asyncio.Event()

    async def _send(self, out: Outgoing) -> None:
        while True:
            try:
                future = await self.producer.send(
                    out.topic, out.value, key=out.key, headers=out.headers
                )
            except KafkaError as exc:  # no metadata while the broker is down
                say(f"send to {out.topic} failed ({exc!r}); again")
                await asyncio.sleep(1)
                continue
            self.inflight.append((future, out))
            return

    async def reap(self) -> None:
        """Send again what the broker did not acknowledge."""
        pending, failed = [], []
        for future, out in self.inflight:
            if not future.done():
                pending.append((future, out))
            elif future.exception() is not None:
                failed.append(out)
        self.inflight = pending
        for out in failed:
            self.resent += 1
            await self._send(out)

    async def emit(self, fact: Event, key: str) -> None:
        headers = new_envelope(type=fact.ce_type(), source=source_of(type(fact))).headers()
        await self._send(
            Outgoing(
                self.prefix + fact.name,
                fact.model_dump_json().encode(),
                key.encode(),
                [(k, v.encode()) for k, v in headers.items()],
            )
        )
        self.sent += 1

    async def submit(self, p: Plan) -> None:
        headers = new_envelope(
            type=RegistrationSubmitted.ce_type(), source=source_of(RegistrationSubmitted)
        ).headers()
        await self._send(
            Outgoing(
                self.prefix + RegistrationSubmitted.name,
                json.dumps(p.data).encode(),
                p.data["submission_id"].encode(),
                [(k, v.encode()) for k, v in headers.items()],
            )
        )
        self.submitted += 1

    async def _feed(self) -> None:
        first = [p for p in self.plans if p.rejected_as != "already-registered"]
        second = [p for p in self.plans if p.rejected_as == "already-registered"]
        started = time.monotonic()
        for n, p in enumerate(first):
            await asyncio.sleep(max(0.0, started + n / self.rate - time.monotonic()))
            await self.submit(p)

        async def answered() -> bool | None:
            return True if all(p.done or p.participant_id for p in first) else None

        # a repeated NIK comes after its original is answered
        await wait_for(answered, 1800, "the first wave's answers")
        started = time.monotonic()
        for n, p in enumerate(second):
            await asyncio.sleep(max(0.0, started + n / self.rate - time.monotonic()))
            await self.submit(p)

    @property
    def settled(self) -> int:
        return sum(p.done for p in self.plans)

    async def run(self, timeout_s: float = 1800, idle_s: float = 0) -> None:
        self.producer = AIOKafkaProducer(
            **self.kafka.client_kwargs(),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=20_000,
        )
        await self.producer.start()
        consumer = AIOKafkaConsumer(
            **self.kafka.client_kwargs(), enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        feeder: asyncio.Task[None] | None = None
        try:
            partitions = await _partitions(consumer, [self.prefix + e.name for e in WATCHED])
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)  # a fresh stack: all of it is ours
            feeder = asyncio.create_task(self._feed())
            deadline, progress_due = time.monotonic() + timeout_s, 0.0
            while time.monotonic() < deadline and self.settled < len(self.plans):
                if feeder.done() and feeder.exception() is not None:
                    raise RuntimeError("the feed failed") from feeder.exception()
                batches = await consumer.getmany(timeout_ms=500, max_records=2000)
                for records in batches.values():
                    for record in records:
                        headers = {k: v.decode() for k, v in record.headers}
                        ce_id = headers.get("ce_id", "")
                        if ce_id in self.seen:
                            self.redelivered[record.topic.removeprefix(self.prefix)] += 1
                            continue
                        self.seen.add(ce_id)
                        self.events += 1
                        await self.react(record.topic, json.loads(record.value))
                await self.reap()
                if time.monotonic() > progress_due:
                    progress_due = time.monotonic() + 5
                    say(
                        f"submitted {self.submitted}/{len(self.plans)}, settled "
                        f"{self.settled}, events seen {self.events}, facts sent {self.sent}, "
                        f"resent {self.resent}"
                    )
            await self.producer.flush()
            while self.inflight:
                await self.reap()
                await asyncio.sleep(0.2)
        finally:
            self.finished.set()
            if feeder is not None and not feeder.done():
                feeder.cancel()
            await consumer.stop()
            await self.producer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    out = []
    for topic in topics:

        async def found(topic: str = topic) -> set[int] | None:
            partitions: set[int] | None = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer._client.force_metadata_update()
                return None
            return partitions

        out += [TopicPartition(topic, n) for n in sorted(await wait_for(found, 60, topic))]
    return out


# --------------------------------------------------------------------------- the kills


@dataclass
class Kill:
    victim: str
    pid: int
    at_s: float
    submitted: int
    settled: int
    restarts_before: int
    restarts_after: int = 0
    new_pid: int | None = None
    back_after_s: float = 0.0
    events_flowing_after_s: float | None = None


async def kill_in_turn(
    stack: SupervisedStack, feed: ChaosFeed, victims: tuple[str, ...], first_after: int
) -> list[Kill]:
    kills: list[Kill] = []

    async def started() -> bool | None:
        return True if feed.submitted >= first_after or feed.finished.is_set() else None

    await wait_for(started, 1800, "the stream")
    async with httpx.AsyncClient() as http:
        for victim in victims:
            row = stack.processes()[victim]
            pid = int(row["pid"])
            kill = Kill(
                victim,
                pid,
                round(time.monotonic() - _STARTED, 1),
                feed.submitted,
                feed.settled,
                int(row["restarts"]),
            )
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            say(f"SIGKILL {victim} (pid {pid}); submitted {feed.submitted}, settled {feed.settled}")

            async def back(kill: Kill = kill) -> dict[str, Any] | None:
                row = stack.processes()[kill.victim]
                if row["restarts"] <= kill.restarts_before or row["state"] != "running":
                    return None
                if row["pid"] in (None, kill.pid) or not await all_ready(http, stack.env):
                    return None
                return row

            row = await wait_for(back, 300, f"{victim} back after SIGKILL")
            kill.restarts_after, kill.new_pid = int(row["restarts"]), int(row["pid"])
            kill.back_after_s = round(time.monotonic() - killed_at, 1)
            say(
                f"{victim} is back (pid {kill.new_pid}, restart {kill.restarts_after}) "
                f"after {kill.back_after_s} s"
            )
            events, back_at = feed.events, time.monotonic()

            async def flowing(events: int = events) -> bool | None:
                moved = feed.events >= events + 5 or feed.finished.is_set()
                return True if moved else None

            try:
                await wait_for(flowing, 120, "events after the restart", every=0.2)
                kill.events_flowing_after_s = round(time.monotonic() - back_at, 1)
            except TimeoutError:
                say(f"no events flowing within 120 s of {victim}'s return")
            kills.append(kill)
    return kills


# --------------------------------------------------------------------------- the checks


@dataclass
class Record:
    topic: str
    key: str | None
    headers: dict[str, str]
    data: Any

    @property
    def ce_id(self) -> str:
        return self.headers.get("ce_id", "")


async def read_everything(kafka: KafkaAccess, prefix: str) -> dict[str, list[Record]]:
    """Every record of this deployment's topics, from the beginning to the current end (as
    a principal that reads every topic: the simulator, ops)."""
    consumer = AIOKafkaConsumer(
        **kafka.client_kwargs(), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        topics = [
            t for t in await consumer.topics() if t.startswith(prefix) and not t.startswith("__")
        ]
        partitions = await _partitions(consumer, topics)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out: dict[str, list[Record]] = {t.removeprefix(prefix): [] for t in topics}
        remaining = {tp for tp in partitions if ends[tp] > 0}
        deadline = time.monotonic() + 300
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                for r in records:
                    try:
                        data = json.loads(r.value) if r.value is not None else None
                    except ValueError:
                        data = None
                    out[tp.topic.removeprefix(prefix)].append(
                        Record(
                            tp.topic.removeprefix(prefix),
                            r.key.decode(errors="replace") if r.key is not None else None,
                            {k: v.decode(errors="replace") for k, v in r.headers},
                            data,
                        )
                    )
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        if remaining:
            raise TimeoutError(f"could not read to the end of {sorted(map(str, remaining))}")
        return out
    finally:
        await consumer.stop()


@dataclass
class Check:
    name: str
    checked: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    duplicates: int = 0  # violations that are a second effect, not a missing one

    def fail(self, duplicate: bool = False, **evidence: Any) -> None:
        self.violations.append(evidence)
        self.duplicates += duplicate

    def summary(self) -> dict[str, Any]:
        return {
            "ok": not self.violations,
            "checked": self.checked,
            "violations": len(self.violations),
            "duplicates": self.duplicates,
            "evidence": self.violations[:20],
            **({"note": self.note} if self.note else {}),
        }


def distinct_ids(records: list[Record], field_name: str) -> dict[str, set[str]]:
    """Per entity (the value of ``field_name``), the distinct ``ce_id`` s that announce it."""
    out: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if isinstance(r.data, dict) and field_name in r.data:
            out[str(r.data[field_name])].add(r.ce_id)
    return out


def exactly_once(
    name: str, records: list[Record], field_name: str, expected: set[str], what: str
) -> Check:
    check = Check(name)
    seen = distinct_ids(records, field_name)
    for entity in sorted(expected | set(seen)):
        check.checked += 1
        ids = seen.get(entity, set())
        if entity not in expected:
            check.fail(entity=entity, problem=f"{what} not intended", ce_ids=sorted(ids))
        elif len(ids) != 1:
            problem = "missing" if not ids else "duplicate (distinct ce_ids)"
            check.fail(len(ids) > 1, entity=entity, problem=problem, ce_ids=sorted(ids))
    return check


def verify(
    plans: list[Plan],
    topics: dict[str, list[Record]],
    funnel: dict[str, int],
    deliveries: dict[str, Any] | None,
) -> list[Check]:
    checks: list[Check] = []
    by_submission = {p.data["submission_id"]: p for p in plans}
    registered = {p.participant_id for p in plans if p.participant_id}

    answers = Check("every submission answered by exactly one distinct event")
    answer_records = [
        *topics.get(ParticipantRegistered.name, []),
        *topics.get(RegistrationRejected.name, []),
    ]
    by_answer: dict[str, dict[str, str]] = defaultdict(dict)  # submission -> ce_id -> topic
    for r in answer_records:
        by_answer[str(r.data.get("submission_id"))][r.ce_id] = r.topic
    for submission, p in sorted(by_submission.items()):
        answers.checked += 1
        found = by_answer.get(submission, {})
        if len(found) != 1:
            answers.fail(
                len(found) > 1,
                submission_id=submission,
                problem="unanswered" if not found else "answered more than once",
                answers=found,
            )
            continue
        kind = next(iter(found.values()))
        want = ParticipantRegistered.name if p.rejected_as is None else RegistrationRejected.name
        if kind != want:
            answers.fail(
                submission_id=submission, problem=f"{kind}, intended {want}", answers=found
            )
    for submission in sorted(set(by_answer) - set(by_submission)):
        answers.fail(submission_id=submission, problem="answer to an unknown submission")
    checks.append(answers)

    checks.append(
        exactly_once(
            "one training-enrolled per registered participant",
            topics.get(TrainingEnrolled.name, []),
            "participant_id",
            {pid for pid in registered if pid},
            "enrolment",
        )
    )
    checks.append(
        exactly_once(
            "one product-certified per product",
            topics.get(ProductCertified.name, []),
            "product_id",
            {p.product_id for p in plans if p.licensed},
            "certification",
        )
    )
    checks.append(
        exactly_once(
            "one product-listed per listing",
            topics.get(ProductListed.name, []),
            "product_id",
            {p.product_id for p in plans if p.marketed},
            "listing",
        )
    )
    referrals = topics.get(FinancingReferred.name, [])
    referred = exactly_once(
        "one financing-referred per referral",
        referrals,
        "participant_id",
        {p.participant_id for p in plans if p.reporting and p.participant_id},
        "referral",
    )
    for referral, ids in distinct_ids(referrals, "referral_id").items():
        if len(ids) != 1:
            referred.fail(
                True, entity=referral, problem="one referral, distinct ce_ids", ce_ids=sorted(ids)
            )
    checks.append(referred)

    told = Check("one notification outcome per event told about")
    outcomes = distinct_ids(
        [*topics.get(NotificationSent.name, []), *topics.get(NotificationFailed.name, [])],
        "cause_event_id",
    )
    for cause, ids in sorted(outcomes.items()):
        told.checked += 1
        if len(ids) != 1:
            told.fail(True, cause_event_id=cause, problem="duplicate", ce_ids=sorted(ids))
    checks.append(told)

    delivered = Check("each message delivered once at the provider (raw count)")
    if deliveries is None:
        delivered.note = "the provider stand-in has no GET /_deliveries: not checked"
    else:
        for key, count in sorted(deliveries.get("deliveries", {}).items()):
            delivered.checked += 1
            if count != 1:
                delivered.fail(
                    count > 1,
                    idempotency_key=key,
                    delivered=count,
                    received=deliveries.get("received", {}).get(key),
                )
    checks.append(delivered)

    stages = Check("the registry's funnel equals the simulator's intent")
    meant = intended(plans)
    for stage in sorted(set(meant) | set(funnel)):
        stages.checked += 1
        if funnel.get(stage) != meant.get(stage):
            stages.fail(stage=stage, funnel=funnel.get(stage), intended=meant.get(stage))
    checks.append(stages)

    dlq = Check("nothing on any .dlq topic but the deliberately invalid")
    for topic, records in sorted(topics.items()):
        if not topic.endswith(".dlq"):
            continue
        dlq.checked += 1
        for r in records:
            deliberate = (
                topic == RegistrationSubmitted.name + ".dlq"
                and r.key in by_submission
                and by_submission[r.key].rejected_as is not None
            )
            if not deliberate:
                dlq.fail(
                    topic=topic,
                    key=r.key,
                    ce_type=r.headers.get("ce_type"),
                    error_type=r.headers.get("dlq_error_type"),
                    error=r.headers.get("dlq_error_message", "")[:300],
                    service=r.headers.get("dlq_failing_service"),
                )
    checks.append(dlq)
    return checks


def redeliveries(topics: dict[str, list[Record]]) -> dict[str, int]:
    """Per topic, records that repeat a ``ce_id`` already on it (allowed: dropped by ce_id)."""
    out = {}
    for topic, records in topics.items():
        repeats = len(records) - len({r.ce_id for r in records})
        if repeats:
            out[topic] = repeats
    return out


# --------------------------------------------------------------------------- settling


async def funnel_counts(http: httpx.AsyncClient, env: dict[str, str]) -> dict[str, int]:
    """The registry's funnel, read as ops (the stack's JAKPRENEUR_OPS_TOKEN)."""
    answer = await http.get(f"{env['REGISTRY_URL']}/funnel", headers=ops_headers(env), timeout=30)
    answer.raise_for_status()
    return {row["stage"]: row["count"] for row in answer.json()["stages"]}


async def settle(
    stack: SupervisedStack, want: dict[str, int], quiet_s: float, timeout: float
) -> dict[str, Any]:
    """Wait until the funnel matches and stops changing, and nothing is left to process."""
    env = stack.env
    last: dict[str, int] | None = None
    same_since = time.monotonic()
    async with httpx.AsyncClient() as http:

        async def settled() -> dict[str, Any] | None:
            nonlocal last, same_since
            try:
                counts = await funnel_counts(http, env)
                gauges = await backlog_and_lag(http, env)
                groups = await group_lag(KafkaAccess.from_env(env), stack.topic_prefix)
            except (httpx.HTTPError, KafkaError) as exc:
                say(f"not settled: {exc!r}")
                return None
            if counts != last:
                last, same_since = counts, time.monotonic()
            busy = {k: v for k, v in gauges.items() if v}
            busy.update({g: n for g, n in groups.items() if n})
            if counts != want or busy or time.monotonic() - same_since < quiet_s:
                say(f"settling: funnel {'matches' if counts == want else 'differs'}, busy {busy}")
                return None
            return {"funnel": counts, "gauges": gauges, "group_lag": groups}

        return await wait_for(settled, timeout, "the system to settle", every=2)


# --------------------------------------------------------------------------- the run


@dataclass
class Options:
    participants: int = 1000
    rate: float = 5.0
    seed: int = 2021
    run_dir: Path | None = None
    topic_prefix: str = ""
    quiet_s: float = 10.0
    settle_timeout_s: float = 900.0
    victims: tuple[str, ...] = VICTIMS


async def _chaos(stack: SupervisedStack, options: Options) -> dict[str, Any]:
    plans = plan(options.participants, options.seed)
    env = stack.env
    # The simulator's principal (stack.env's): it plays the systems, reads every topic and
    # describes every group, which is all the feed, the settling and the checks need.
    kafka = KafkaAccess.from_env(env)
    feed = ChaosFeed(kafka, options.topic_prefix, plans, options.rate)
    started = time.monotonic()
    # Feeding takes participants / rate; then every plan has settle_timeout_s to finish.
    feeding_s = len(plans) / options.rate
    run = asyncio.create_task(feed.run(timeout_s=feeding_s + options.settle_timeout_s))
    killing = asyncio.create_task(
        kill_in_turn(stack, feed, options.victims, max(1, options.participants // 10))
    )
    try:
        kills = await killing
    except BaseException:
        run.cancel()
        raise
    last_back = time.monotonic()
    say(f"all {len(kills)} kills done; waiting for the simulator to see every plan through")
    await run
    feed_done = time.monotonic()
    say(f"simulator done: {feed.settled}/{len(plans)} plans settled")
    settled = await settle(stack, intended(plans), options.quiet_s, options.settle_timeout_s)
    settled_at = time.monotonic()
    say("settled; reading every topic from the beginning")
    topics = await read_everything(kafka, options.topic_prefix)
    async with httpx.AsyncClient() as http:
        funnel = await funnel_counts(http, env)
        answer = await http.get(f"{env['PROVIDERS_URL']}/_deliveries", timeout=30)
        deliveries = answer.json() if answer.status_code == 200 else None
    checks = verify(plans, topics, funnel, deliveries)
    processes = stack.processes()
    duplicates = sum(c.duplicates for c in checks)
    return {
        "ok": all(not c.violations for c in checks),
        "participants": len(plans),
        "rate_per_s": options.rate,
        "seed": options.seed,
        "topic_prefix": options.topic_prefix,
        "kills": len(kills),
        "kill_log": [vars(k) for k in kills],
        "restarts_observed": {name: row["restarts"] for name, row in processes.items()},
        "plans_settled": feed.settled,
        "duplicates_found": duplicates,
        "redeliveries_same_ce_id": redeliveries(topics),
        "simulator": {
            "facts_sent": feed.sent,
            "records_resent": feed.resent,
            "events_seen": feed.events,
            "redelivered_to_simulator": dict(feed.redelivered),
        },
        "records_read": {t: len(r) for t, r in sorted(topics.items()) if r},
        "funnel": funnel,
        "intended": intended(plans),
        "seconds": {
            "feed_and_kills": round(feed_done - started, 1),
            "settle_after_last_recovery": round(settled_at - last_back, 1),
            "settle_after_simulator_done": round(settled_at - feed_done, 1),
            "total": round(settled_at - started, 1),
        },
        "settled_state": settled,
        "checks": {c.name: c.summary() for c in checks},
    }


def run_chaos(options: Options) -> dict[str, Any]:
    """Start a fresh supervised stack, run the chaos against it, stop it; the summary."""
    temporary = options.run_dir is None
    run_dir = options.run_dir or Path(tempfile.mkdtemp(prefix="jakpreneur-chaos-"))
    stack = SupervisedStack(run_dir, options.topic_prefix)
    began = time.monotonic()
    try:
        say(f"starting a supervised stack in {run_dir}")
        stack.start()
        say(f"stack up in {time.monotonic() - began:.1f} s; {stack.env['KAFKA_BOOTSTRAP_SERVERS']}")
        started = time.monotonic()
        summary = asyncio.run(_chaos(stack, options))
        summary["seconds"]["stack_start"] = round(started - began, 1)
        summary["run_dir"] = str(run_dir)
        return summary
    finally:
        stack.stop()
        if temporary:
            shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__)
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=5.0, help="submissions per second")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--out", type=Path, default=None, help="the JSON summary; else stdout")
    parser.add_argument(
        "--run-dir", type=Path, default=Path(".run") / "chaos", help="wiped at the start"
    )
    parser.add_argument("--topic-prefix", default=f"chaos-{uuid.uuid4().hex[:6]}.")
    args = parser.parse_args()
    # The broker's deaths are the point: aiokafka's reconnect errors would drown the progress.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    summary = run_chaos(
        Options(
            participants=args.participants,
            rate=args.rate,
            seed=args.seed,
            run_dir=args.run_dir.resolve(),
            topic_prefix=args.topic_prefix,
        )
    )
    text = json.dumps(summary, indent=2, default=str) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        say(f"summary in {args.out}")
    else:
        sys.stdout.write(text)
    for name, check in summary["checks"].items():
        say(f"{'ok  ' if check['ok'] else 'FAIL'} {name} ({check['checked']} checked)")
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
