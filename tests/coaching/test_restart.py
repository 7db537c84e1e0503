"""Coaching killed (SIGKILL) mid-stream and restarted: every participant still enrolled once
and every product certified once."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.launcher import free_port
from shared.contracts import Event, ProductCertified, TrainingEnrolled
from shared.envelope import new_envelope
from tests import waiting
from tests.coaching.fixtures import days, participant
from tests.coaching.test_coaching_flow import certificate, product
from tests.conftest import Servers, random_id
from tests.kafka_helpers import Collector, spawn_service, wait_ready

pytestmark = pytest.mark.integration
PARTICIPANTS = 300


async def test_killed_and_restarted_mid_stream_converges_without_duplicates(
    servers: Servers, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    prefix = random_id("coach-crash-") + "."
    port = free_port()
    database = random_id("coaching_")
    env = {
        **servers.env_for("coaching", prefix, database),
        "COACHING_MONGODB_DATABASE": database,
        "COACHING_HTTP_PORT": str(port),
        "COACHING_OUTBOX_RELAY_INTERVAL_S": "0.2",
    }
    log = tmp_path / "coaching.log"
    url = f"http://127.0.0.1:{port}"
    processes = []
    try:
        first = spawn_service("services.coaching", env, log)
        processes.append(first)
        await wait_ready(url, first)
        enrolled_topic, certified_topic = (
            prefix + TrainingEnrolled.name,
            prefix + ProductCertified.name,
        )
        events = await Collector(servers.kafka, [enrolled_topic, certified_topic]).start()

        facts: list[Event] = []
        pids = [str(uuid.uuid4()) for _ in range(PARTICIPANTS)]
        for pid in pids:
            prod = random_id("prod-")
            facts += [
                participant(pid, "Gambir", "kuliner"),
                product(pid, prod, "fashion"),
                certificate(pid, "NIB", None, days(365)),
            ]
        sends = []
        for fact in facts:
            headers = new_envelope(type=fact.ce_type(), source=fact.producers[0]).headers()
            sends.append(
                await producer.send(
                    prefix + fact.name,
                    fact.model_dump_json().encode(),
                    key=getattr(fact, "participant_id").encode(),  # noqa: B009
                    headers=[(k, v.encode()) for k, v in headers.items()],
                )
            )
        await asyncio.gather(*sends)

        await events.wait_for(lambda r: True, count=30, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait()
        before_kill = len(events.records)
        second = spawn_service("services.coaching", env, log)
        processes.append(second)
        try:
            await wait_ready(url, second)
            wanted = {(t, pid) for pid in pids for t in (enrolled_topic, certified_topic)}

            def missing() -> set[tuple[str, str]]:
                return wanted - {(r.topic, r.json()["participant_id"]) for r in events.records}

            await waiting.until(
                "every enrolment and certification after the restart",
                missing,
                240,
                done=lambda gap: not gap,
            )
            await events.caught_up()
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(60)
            await events.stop()

        assert before_kill < 2 * PARTICIPANTS, "the kill came after everything was done"
        distinct: dict[tuple[str, str], set[str]] = defaultdict(set)
        for record in events.records:
            distinct[(record.topic, record.json()["participant_id"])].add(record.headers["ce_id"])
        for pid in pids:
            assert len(distinct[(enrolled_topic, pid)]) == 1
            assert len(distinct[(certified_topic, pid)]) == 1
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
