"""Submit a generated batch of registrations to a running stack and tally the answers.

``python -m tools.demo --count 10000`` (after ``make up``) prints registered and rejected
counts by reason code, end-to-end submissions/s and p50/p95/p99 latency from submission to
outcome, and whether every answer is the one the generator intended.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.contracts import (
    ParticipantRegistered,
    RegistrationRejected,
    RegistrationSubmitted,
    TrainingEnrolled,
)
from shared.kafka import KafkaAccess, dlq_topic
from tools.registrations import Generator, headers_for, nik_groups

console = Console(stderr=True)


@dataclass
class Tally:
    submitted: int = 0
    answered: int = 0
    registered: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    enrolled: int = 0  # training-enrolled (coaching) for the participants registered here
    enrolled_seconds: float = 0.0
    unexpected: int = 0  # answers other than the one the generator intended
    duplicates: int = 0  # a second, different answer to one submission
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]

    def summary(self) -> dict[str, Any]:
        return {
            "submitted": self.submitted,
            "answered": self.answered,
            "registered": self.registered,
            "rejected_by_reason": dict(self.rejected.most_common()),
            "dead_lettered": self.dead_lettered,
            "training_enrolled": self.enrolled,
            "enrolled_after_s": round(self.enrolled_seconds, 2),
            "unexpected_answers": self.unexpected,
            "duplicate_answers": self.duplicates,
            "seconds": round(self.seconds, 2),
            "submissions_per_s": round(self.answered / self.seconds, 1) if self.seconds else None,
            "latency_ms_p50": round(self.percentile(50), 1),
            "latency_ms_p95": round(self.percentile(95), 1),
            "latency_ms_p99": round(self.percentile(99), 1),
        }


async def _outcome_consumer(kafka: KafkaAccess, topics: list[str]) -> AIOKafkaConsumer:
    """Reads the answer topics from their current end, before anything is submitted."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        for p in (consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))
    ]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)
    return consumer


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(100):
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
        if found:
            return set(found)
        await asyncio.sleep(0.2)
    raise RuntimeError(f"topic {topic} does not exist; is the registry running?")


async def submit_and_tally(
    kafka: KafkaAccess,
    prefix: str = "",
    count: int = 1000,
    seed: int | None = None,
    timeout_s: float = 600,
    rate: float | None = None,
    follow_coaching: bool = True,
) -> Tally:
    """Submit ``count`` registrations (as a burst, or ``rate`` per second) and tally them;
    with ``follow_coaching``, also wait until coaching has enrolled every new participant.
    ``kafka`` plays the portal and reads the answers: the simulator's principal."""
    gen = Generator(seed=seed if seed is not None else int(time.time()))
    batch = gen.batch(count)
    expected = {data["submission_id"]: code for data, code in batch}
    groups = nik_groups(batch)
    for ids in groups:  # settled per NIK below: exactly one of them registers
        for sid in ids:
            expected[sid] = "registered|already-registered"
    submit_topic = prefix + RegistrationSubmitted.name
    registered_topic = prefix + ParticipantRegistered.name
    rejected_topic = prefix + RegistrationRejected.name
    enrolled_topic = prefix + TrainingEnrolled.name
    topics = [registered_topic, rejected_topic, dlq_topic(submit_topic)]
    consumer = await _outcome_consumer(
        kafka, [*topics, enrolled_topic] if follow_coaching else topics
    )
    registered_ids: set[str] = set()
    producer = AIOKafkaProducer(
        **kafka.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    tally = Tally()
    sent_at: dict[str, float] = {}
    answers: dict[str, str] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            submitting = progress.add_task("submitted", total=count)
            answering = progress.add_task("answered ", total=count)
            enrolling = progress.add_task("enrolled ", total=None, visible=follow_coaching)

            async def submit() -> None:
                start = time.monotonic()
                for i, (data, _) in enumerate(batch):
                    if rate:  # hold a steady rate instead of a burst
                        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                    sent_at[data["submission_id"]] = time.monotonic()
                    await producer.send(
                        submit_topic,
                        json.dumps(data).encode(),
                        key=data["submission_id"].encode(),
                        headers=[
                            (k, v.encode()) for k, v in headers_for(data["submission_id"]).items()
                        ],
                    )
                    tally.submitted += 1
                    progress.update(submitting, completed=tally.submitted)
                await producer.flush()

            async def collect() -> None:
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline and (
                    tally.answered < count
                    or (follow_coaching and tally.enrolled < tally.registered)
                ):
                    polled = await consumer.getmany(timeout_ms=500, max_records=2000)
                    now = time.monotonic()
                    for records in polled.values():
                        for record in records:
                            _count(record, now)
                    progress.update(answering, completed=tally.answered)
                    progress.update(enrolling, completed=tally.enrolled, total=tally.registered)

            def _count(record: Any, now: float) -> None:
                if record.topic.endswith(".dlq"):
                    tally.dead_lettered += 1
                    return
                data = json.loads(record.value)
                if record.topic == enrolled_topic:
                    tally.enrolled += data["participant_id"] in registered_ids
                    return
                sid = data["submission_id"]
                if sid not in expected:
                    return  # someone else's submission
                answer = (
                    "registered"
                    if record.topic == registered_topic
                    else ",".join(sorted({r["code"] for r in data["reasons"]}))
                )
                if sid in answers:
                    tally.duplicates += answers[sid] != answer or 0
                    return
                answers[sid] = answer
                tally.answered += 1
                if tally.answered == count:
                    tally.seconds = now - started
                tally.latencies_ms.append((now - sent_at[sid]) * 1000)
                if answer == "registered":
                    tally.registered += 1
                    registered_ids.add(data["participant_id"])
                else:
                    tally.rejected.update(answer.split(","))
                if answer not in (expected[sid] or "registered").split("|"):
                    tally.unexpected += 1

            started = time.monotonic()
            await asyncio.gather(submit(), collect())
            tally.seconds = tally.seconds or time.monotonic() - started
            tally.enrolled_seconds = time.monotonic() - started
            tally.unexpected += sum(
                [answers.get(sid) for sid in ids].count("registered") != 1 for ids in groups
            )
    finally:
        await producer.stop()
        await consumer.stop()
    return tally


def print_tally(tally: Tally) -> None:
    table = Table(title="Registrations")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_row("registered", str(tally.registered))
    for code, n in tally.rejected.most_common():
        table.add_row(f"rejected: {code}", str(n))
    table.add_row("dead-lettered", str(tally.dead_lettered))
    table.add_row("unanswered", str(tally.submitted - tally.answered))
    table.add_row("registered, then enrolled in training (coaching)", str(tally.enrolled))
    console.print(table)
    s = tally.summary()
    console.print(
        f"{s['answered']}/{s['submitted']} answered in {s['seconds']} s = "
        f"{s['submissions_per_s']} submissions/s; submit->outcome p50 {s['latency_ms_p50']} ms, "
        f"p95 {s['latency_ms_p95']} ms, p99 {s['latency_ms_p99']} ms; "
        f"unexpected answers {s['unexpected_answers']}, duplicate answers {s['duplicate_answers']}"
    )


def stack_access(bootstrap: str = "", *, admin: bool = False) -> KafkaAccess:
    """Who a tool logs in to Kafka as: the environment's ``KAFKA_*`` variables when it names
    a cluster or a user (e.g. ops' own principal on a cluster), else those of the local
    stack's ``stack.env`` (the simulator's principal; with ``admin``, the stack's super user
    from ``KAFKA_ADMIN_USERNAME``/``KAFKA_ADMIN_PASSWORD``). Never a mix: a local stack's
    password or protocol must not go to another cluster. ``bootstrap``, when given,
    replaces the address only."""
    from deploy.local.stack import stack_env  # JAKPRENEUR_RUN_DIR's, else .run's

    named = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("KAFKA_SASL_USERNAME")
    source = os.environ if named else stack_env()
    access = KafkaAccess.from_env(source, admin=admin)
    return dataclasses.replace(access, bootstrap_servers=bootstrap) if bootstrap else access


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--bootstrap", default="", help="the broker's address; default: .run/stack.env's"
    )
    parser.add_argument("--topic-prefix", default="")
    parser.add_argument("--rate", type=float, default=None, help="submissions/s; default: burst")
    parser.add_argument("--json", action="store_true", help="also print the summary as JSON")
    parser.add_argument(
        "--registry-only", action="store_true", help="do not wait for coaching's enrolments"
    )
    args = parser.parse_args()
    kafka = stack_access(args.bootstrap)
    tally = asyncio.run(
        submit_and_tally(
            kafka,
            args.topic_prefix,
            args.count,
            args.seed,
            rate=args.rate,
            follow_coaching=not args.registry_only,
        )
    )
    print_tally(tally)
    if args.json:
        sys.stdout.write(json.dumps(tally.summary()) + "\n")


if __name__ == "__main__":
    main()
