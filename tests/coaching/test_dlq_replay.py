"""The ops CLI: a poison record lands in the DLQ, the cause is fixed, the replay is
processed exactly once (a second replay of it is a no-op). The CLI logs in as ops."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.access import OPS
from shared.contracts import MentoringAssigned, MentoringSessionRecorded
from shared.kafka import KafkaAccess, dlq_topic
from tests import auth_helpers
from tests.coaching.fixtures import CoachingUnderTest
from tests.coaching.test_coaching_flow import NOW, complete_training, processed
from tests.conftest import Servers
from tools.cli import REPLAYS_TOPIC, read_dlq, replay

pytestmark = pytest.mark.integration


async def sessions_of(c: CoachingUnderTest, pid: str) -> int:
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        view = (await http.get(f"{c.url}/participants/{pid}/coaching")).json()
    return int((view.get("mentoring") or {}).get("sessions", 0))


async def test_replay_after_the_cause_is_fixed_is_applied_exactly_once(
    coaching: CoachingUnderTest, servers: Servers, tmp_path: Path
) -> None:
    ops = servers.principal(OPS)
    pid = await coaching.register(kecamatan="Gambir")
    session = MentoringSessionRecorded(
        participant_id=pid, mentor_id="g-1", session_at=NOW, notes="sebelum penugasan"
    )
    await coaching.send(session)  # no pendamping assigned yet: a poison record
    dead = await coaching.dead(pid.encode())
    assert dead.headers["dlq_error_type"] == "not-a-mentee"
    dlq = dlq_topic(coaching.topic(MentoringSessionRecorded))

    cli = str(Path(sys.executable).with_name("jakpreneur"))  # the installed entry point
    proc = await asyncio.create_subprocess_exec(
        cli,
        "dlq",
        "list",
        "--topic",
        dlq,
        "--bootstrap",  # the address only: who logs in still comes from KAFKA_SASL_*
        ops.bootstrap_servers,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
            **ops.env(),
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # nothing listens there
            "JAKPRENEUR_RUN_DIR": str(tmp_path),  # no stack.env: the login is ops' alone
            "COLUMNS": "200",
        },
    )
    output, errors = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, errors.decode()
    assert "not-a-mentee" in output.decode()

    await complete_training(coaching, pid)  # the cause, fixed: now there is a pendamping
    await coaching.wait(MentoringAssigned, pid)
    [record] = [r for r in await read_dlq(ops, [dlq]) if r["key"] == pid.encode()]
    # The replay writes coaching's topic, which no system may: the stack's super user (ops
    # may too, but it has no ACL on the replay log dlq-replays, outside the catalogue).
    first = await replay(servers.admin, record, by="ops-test")
    await replay(servers.admin, record, by="ops-test")  # by mistake, twice
    assert first["original_topic"] == coaching.topic(MentoringSessionRecorded)

    # a later real session is processed after both replays (same partition, in order)
    meta = await coaching.send(
        MentoringSessionRecorded(participant_id=pid, mentor_id="g-1", session_at=NOW, notes="")
    )
    await processed(coaching, meta)
    assert await sessions_of(coaching, pid) == 2  # the replayed one counted once, not twice

    replays = await _replays(servers.kafka, pid, record)
    assert [(e["by"], e["dlq_offset"]) for e in replays] == [("ops-test", record["offset"])] * 2


async def _replays(kafka: KafkaAccess, pid: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(REPLAYS_TOPIC, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        entries = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                entries += [json.loads(r.value) for r in records]
        return [
            e
            for e in entries
            if e["dlq_topic"] == record["topic"]
            and e["dlq_offset"] == record["offset"]
            and e["dlq_partition"] == record["partition"]
        ]
    finally:
        await consumer.stop()
