"""The ops CLI: a poison record lands in the DLQ, the cause is fixed, the replay is
processed exactly once (a second replay of it is a no-op)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.contracts import MentoringAssigned, MentoringSessionRecorded
from shared.kafka import dlq_topic
from tests import auth_helpers
from tests.coaching.fixtures import CoachingUnderTest
from tests.coaching.test_coaching_flow import NOW, complete_training, processed
from tools.cli import REPLAYS_TOPIC, read_dlq, replay

pytestmark = pytest.mark.integration


async def sessions_of(c: CoachingUnderTest, pid: str) -> int:
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        view = (await http.get(f"{c.url}/participants/{pid}/coaching")).json()
    return int((view.get("mentoring") or {}).get("sessions", 0))


async def test_replay_after_the_cause_is_fixed_is_applied_exactly_once(
    coaching: CoachingUnderTest,
) -> None:
    bootstrap = coaching.settings.kafka_bootstrap_servers
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
        "--bootstrap",
        bootstrap,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0 and "not-a-mentee" in output.decode()

    await complete_training(coaching, pid)  # the cause, fixed: now there is a pendamping
    await coaching.wait(MentoringAssigned, pid)
    [record] = [r for r in await read_dlq(bootstrap, [dlq]) if r["key"] == pid.encode()]
    first = await replay(bootstrap, record, by="ops-test")
    await replay(bootstrap, record, by="ops-test")  # by mistake, twice
    assert first["original_topic"] == coaching.topic(MentoringSessionRecorded)

    # a later real session is processed after both replays (same partition, in order)
    meta = await coaching.send(
        MentoringSessionRecorded(participant_id=pid, mentor_id="g-1", session_at=NOW, notes="")
    )
    await processed(coaching, meta)
    assert await sessions_of(coaching, pid) == 2  # the replayed one counted once, not twice

    replays = await _replays(bootstrap, pid, record)
    assert [(e["by"], e["dlq_offset"]) for e in replays] == [("ops-test", record["offset"])] * 2


async def _replays(bootstrap: str, pid: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
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
