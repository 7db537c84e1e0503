"""The ops CLI run as a program, its stdout a pipe as when another program reads it: the
listings print whole values, and ``--output json`` is one document with every column."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import Servers, random_id

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).with_name("jakpreneur")  # the installed entry point


async def jakpreneur(servers: Servers, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdout and stderr pipes. COLUMNS=80 is the width rich assumed for a
    pipe, which is what cut values before."""
    environ = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": servers.kafka_bootstrap_servers,
        "COLUMNS": "80",
        **env,
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [str(CLI), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    headers: dict[str, str]


@pytest_asyncio.fixture
async def dead_letter(servers: Servers, producer: AIOKafkaProducer) -> AsyncIterator[DeadLetter]:
    """One record on a DLQ topic whose name and headers are far wider than 80 columns."""
    topic = random_id("test-cli-") + ".registration-submitted-with-a-long-name-for-the-table.dlq"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    headers = {
        "ce_type": "jakpreneur.registration-submitted.v1",
        "ce_id": random_id("event-"),
        "ce_correlationid": random_id("correlation-"),
        "dlq_error_type": "invalid-payload",
        "dlq_error_message": "1 validation error for RegistrationSubmitted: "
        + " ".join(f"field_{i} is not a valid value" for i in range(12)),
        "dlq_original_topic": "registration-submitted",
        "dlq_original_partition": "0",
        "dlq_original_offset": "42",
        "dlq_failing_service": "registry",
        "dlq_failed_at": datetime.now(UTC).isoformat(),  # microseconds and offset: > 19 chars
    }
    await producer.send_and_wait(
        topic, b"{not json", key=b"k", headers=[(k, v.encode()) for k, v in headers.items()]
    )
    yield DeadLetter(topic, headers)


async def test_dlq_list_as_json_carries_every_column_whole(
    servers: Servers, dead_letter: DeadLetter
) -> None:
    done = await jakpreneur(servers, "dlq", "list", "--topic", dead_letter.topic, "-o", "json")

    rows = json.loads(done.stdout)  # the whole of stdout is one document
    h = dead_letter.headers
    assert rows == [
        {
            "dlq_topic": dead_letter.topic,
            "partition": 0,
            "offset": 0,
            "error": h["dlq_error_type"],
            "message": h["dlq_error_message"],
            "failed_at": h["dlq_failed_at"],
            "ce_type": h["ce_type"],
            "headers": h,
        }
    ]


async def test_dlq_list_piped_as_a_table_is_not_cut(
    servers: Servers, dead_letter: DeadLetter
) -> None:
    done = await jakpreneur(servers, "dlq", "list", "--topic", dead_letter.topic)

    assert dead_letter.topic in done.stdout
    assert dead_letter.headers["dlq_error_message"] in done.stdout
    assert dead_letter.headers["dlq_failed_at"] in done.stdout
    assert "…" not in done.stdout


async def test_topics_list_and_describe_whole_in_both_forms(
    servers: Servers, dead_letter: DeadLetter
) -> None:
    listed = await jakpreneur(servers, "topics", "list", "--output", "json")
    assert {"topic": dead_letter.topic} in json.loads(listed.stdout)
    table = await jakpreneur(servers, "topics", "list")
    assert dead_letter.topic in table.stdout.splitlines()

    described = await jakpreneur(servers, "topics", "describe", dead_letter.topic, "-o", "json")
    [partition] = json.loads(described.stdout)
    assert partition["topic"] == dead_letter.topic
    assert partition["partition"] == 0
    assert partition["replicas"] == partition["isr"] == [partition["leader"]]
    table = await jakpreneur(servers, "topics", "describe", dead_letter.topic)
    assert dead_letter.topic in table.stdout
    assert "…" not in table.stdout


async def test_stack_status_without_a_stack_is_an_empty_list(
    servers: Servers, tmp_path: Path
) -> None:
    done = await jakpreneur(
        servers, "stack", "status", "--output", "json", JAKPRENEUR_RUN_DIR=str(tmp_path)
    )
    assert json.loads(done.stdout) == []
    assert "no stack running" in done.stderr
