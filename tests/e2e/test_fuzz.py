"""Hostile input for every consumed topic, on the four services running together on the real
servers: every record ends in an answer or a DLQ entry from each service that consumes its
topic, every consumer group commits past it (lag back to zero), no service stops, and a
valid record sent after each batch of poison is handled within seconds.

``make test`` runs a seed-fixed sample (``--fuzz-records``, default 300); ``make fuzz`` runs
10,000 and prints the figures.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.coaching.handlers import CONSUMES as COACHING
from services.marketplace.handlers import CONSUMES as MARKETPLACE
from services.notifications.app import create_app as create_notifications
from services.notifications.handlers import CONSUMES as NOTIFICATIONS
from services.registry.app import CONSUMES as REGISTRY
from shared.contracts import (
    Event,
    FinancialReportRecorded,
    ParticipantRegistered,
    RegistrationRejected,
    RegistrationSubmitted,
    TrainingEnrolled,
)
from shared.envelope import new_envelope
from shared.kafka import KafkaAccess, dlq_topic
from tests import waiting
from tests.coaching.fixtures import running_coaching
from tests.conftest import Servers, random_id
from tests.e2e.hostile import Hostile, generate
from tests.kafka_helpers import Collector, send, serving
from tests.marketplace.fixtures import running_marketplace, sales
from tests.notifications.fixtures import notification_settings, stand_in_providers
from tests.registry.fixtures import running_registry
from tools.registrations import Generator, headers_for

pytestmark = pytest.mark.integration

CONSUMERS: dict[str, tuple[type[Event], ...]] = {
    "registry": REGISTRY,
    "coaching": COACHING,
    "marketplace": MARKETPLACE,
    "notifications": NOTIFICATIONS,
}
BATCH = 100  # poison records between two valid probes


def _body(record: Any) -> dict[str, Any]:
    """A record's JSON object; {} for the poison that shares the services' topics."""
    try:
        body = json.loads(record.value)
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def _consumers_of(event: type[Event]) -> set[str]:
    return {service for service, events in CONSUMERS.items() if event in events}


async def _lag(kafka: KafkaAccess, prefix: str) -> dict[str, int]:
    """Per service: records on its topics not yet committed by its group."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    consumer = AIOKafkaConsumer(**kafka.client_kwargs())
    await consumer.start()
    try:
        lag: dict[str, int] = {}
        for service, events in CONSUMERS.items():
            partitions = [
                TopicPartition(f"{prefix}{e.name}", p)
                for e in events
                for p in consumer.partitions_for_topic(f"{prefix}{e.name}") or ()
            ]
            ends = await consumer.end_offsets(partitions)
            committed = await admin.list_consumer_group_offsets(
                f"{prefix}{service}", partitions=partitions
            )
            lag[service] = sum(
                max(0, end - max(0, committed[tp].offset if tp in committed else 0))
                for tp, end in ends.items()
            )
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def test_hostile_records_on_every_topic_end_answered_or_dead_lettered(
    servers: Servers,
    producer: AIOKafkaProducer,
    forger: AIOKafkaProducer,
    tmp_path: Path,
    fuzz_records: int,
    fuzz_seed: int,
) -> None:
    # The four services on topics of their own: the poison must not reach other tests.
    prefix = random_id("fuzz-") + "."
    async with contextlib.AsyncExitStack() as stack:
        registry = await stack.enter_async_context(running_registry(servers, producer, prefix))
        coaching = await stack.enter_async_context(
            running_coaching(servers, producer, prefix, tmp_path)
        )
        marketplace = await stack.enter_async_context(
            running_marketplace(servers, producer, prefix)
        )
        _, providers_url, smtp_port = await stack.enter_async_context(stand_in_providers())
        settings = notification_settings(servers, providers_url, smtp_port, topic_prefix=prefix)
        url = await stack.enter_async_context(
            serving(create_notifications(settings), settings.http_port)
        )
        await _fuzz(
            servers,
            forger,
            registry,
            [registry.url, coaching.url, marketplace.url, url],
            prefix,
            fuzz_records,
            fuzz_seed,
        )


async def _fuzz(
    servers: Servers,
    forger: AIOKafkaProducer,
    registry: Any,
    urls: list[str],
    topic_prefix: str,
    fuzz_records: int,
    fuzz_seed: int,
) -> None:
    events = tuple(dict.fromkeys(e for es in CONSUMERS.values() for e in es))
    records = generate(events, fuzz_records, fuzz_seed)
    assert len(records) >= fuzz_records * 0.9, "Hypothesis ran out of distinct records"
    topics = sorted({r.event.name for r in records})
    watched = [dlq_topic(f"{topic_prefix}{t}") for t in topics]
    watched += [f"{topic_prefix}{e.name}" for e in (RegistrationRejected, ParticipantRegistered)]
    watched += [f"{topic_prefix}{e.name}" for e in (TrainingEnrolled, FinancialReportRecorded)]
    seen = await Collector(servers.kafka, watched).start()
    started = time.monotonic()
    probe_seconds: list[float] = []
    generator = Generator(seed=fuzz_seed)
    try:
        for start in range(0, len(records), BATCH):
            for record in records[start : start + BATCH]:
                topic = f"{topic_prefix}{record.event.name}"
                # as the super user: a stolen principal is the worst a topic can see
                await forger.send(topic, record.value, key=record.key, headers=record.headers)
            await forger.flush()
            probe_seconds.append(await _probe(registry, seen, generator, topic_prefix))
            sys.stderr.write(  # progress: shown by make fuzz (-s), captured in make test
                f"fuzz: {min(start + BATCH, len(records))}/{len(records)} sent, "
                f"valid probe handled in {probe_seconds[-1]:.2f} s\n"
            )
        await _all_answered(records, seen, topic_prefix)
        lag = await waiting.until(
            "every consumer's lag back to zero",
            lambda: _lag(servers.kafka, topic_prefix),
            120,
            done=lambda lag: not any(lag.values()),
        )
        async with httpx.AsyncClient() as http:
            for url in urls:
                assert (await http.get(f"{url}/healthz")).status_code == 200
    finally:
        await seen.stop()
    kinds = collections.Counter(r.kind for r in records)
    codes = collections.Counter(
        r.headers.get("dlq_error_type") for r in seen.records if r.topic.endswith(".dlq")
    )
    print(  # the figures `make fuzz` reports
        json.dumps(
            {
                "records": len(records),
                "topics": len(topics),
                "kinds": dict(kinds),
                "dlq_entries_by_reason": dict(codes),
                "probe_seconds_max": round(max(probe_seconds), 2),
                "probe_seconds_median": round(sorted(probe_seconds)[len(probe_seconds) // 2], 2),
                "seconds": round(time.monotonic() - started, 1),
                "lag_after": lag,
            }
        )
    )


async def _probe(registry: Any, seen: Collector, generator: Generator, prefix: str) -> float:
    """A valid submission and a valid sales report after the poison: handled in seconds."""
    began = time.monotonic()
    data = generator.valid()
    submitted = headers_for(data["submission_id"])
    await registry.submit(data, submitted)
    # Matched by headers and keys, not by parsing: the poison shares these topics.
    [answer] = await seen.wait_for(
        lambda r: (
            r.topic == f"{prefix}{ParticipantRegistered.name}"
            and r.headers.get("ce_causationid") == submitted["ce_id"]
        ),
        timeout=30,
    )
    pid = answer.json()["participant_id"]
    await seen.wait_for(
        lambda r: r.topic == f"{prefix}{TrainingEnrolled.name}" and r.key == pid.encode(),
        timeout=30,
    )
    report = sales(pid, "2026-01", ref=str(uuid.uuid4()))
    headers = new_envelope(type=report.ce_type(), source=report.producers[0]).headers()
    await send(
        registry.producer,
        f"{prefix}sales-reported",
        report.model_dump_json().encode(),
        pid.encode(),
        headers,
    )
    await seen.wait_for(
        lambda r: r.topic == f"{prefix}{FinancialReportRecorded.name}" and r.key == pid.encode(),
        timeout=30,
    )
    return time.monotonic() - began


async def _all_answered(records: list[Hostile], seen: Collector, prefix: str) -> None:
    """Each record: a DLQ entry from every service consuming its topic, or (a submission
    that can be answered) a rejection."""
    deadline = time.monotonic() + 120
    while True:
        dead: dict[bytes, set[str]] = collections.defaultdict(set)
        rejected: set[bytes] = set()
        for r in seen.records:
            if r.topic.endswith(".dlq") and r.key is not None:
                dead[r.key].add(r.headers.get("dlq_failing_service", ""))
            elif (
                r.topic == f"{prefix}{RegistrationRejected.name}"
                and r.headers.get("ce_source") == "registry"
            ):
                rejected.add(str(_body(r).get("submission_id")).encode())
        missing = [
            r
            for r in records
            if r.key not in rejected and not _consumers_of(r.event) <= dead.get(r.key, set())
        ]
        if not missing:
            return
        unanswered = collections.Counter(
            (m.event.name, m.kind, *sorted(_consumers_of(m.event) - dead.get(m.key, set())))
            for m in missing
        )
        assert time.monotonic() < deadline, (
            f"{len(missing)} records neither answered nor dead-lettered: "
            f"{unanswered.most_common(8)}"
        )
        await asyncio.sleep(0.5)


def test_the_submission_strategy_is_reproducible() -> None:
    first = generate((RegistrationSubmitted,), 30, 7)
    again = generate((RegistrationSubmitted,), 30, 7)
    assert [(r.kind, r.value, r.key) for r in first] == [(r.kind, r.value, r.key) for r in again]
    assert len({r.kind for r in first}) >= 5
