"""The ops CLI run as a program, its stdout a pipe as when another program reads it: the
listings print whole values, and ``--output json`` is one document with every column.
It logs in as ops (``KAFKA_SASL_*``), whose ACLs are enough for every command; on a local
stack, as the super user of its ``stack.env``."""

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
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.access import OPS
from shared.contracts import CATALOGUE, FinancingDecided, RegistrationSubmitted, SalesReported
from shared.envelope import new_envelope
from shared.kafka import DLQ_SUFFIX, REPLAYS_TOPIC, KafkaAccess
from tests.conftest import Servers, random_id
from tools.registrations import headers_for

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).with_name("jakpreneur")  # the installed entry point


async def jakpreneur(
    servers: Servers,
    *args: str,
    kafka: KafkaAccess | None = None,
    succeeds: bool = True,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdout and stderr pipes, logged in as ops (or ``kafka``) and nothing
    else: no other ``KAFKA_*`` variable, and no ``stack.env`` where it looks for one.
    COLUMNS=80 is the width rich assumed for a pipe, which is what cut values before."""
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
        **(kafka or servers.principal(OPS)).env(),
        "JAKPRENEUR_RUN_DIR": str(servers.broker.data_dir.parent / "no-stack"),
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
    assert (done.returncode == 0) == succeeds, done.stderr
    return done


async def read_all(kafka: KafkaAccess, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` (one partition), from its beginning to its current end."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[ConsumerRecord[bytes, bytes]] = []
        while await consumer.position(tp) < end:
            for batch in (await consumer.getmany(tp, timeout_ms=500)).values():
                records += batch
        return records
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    headers: dict[str, str]


async def put_dead_letter(
    servers: Servers,
    topic: str,
    headers: dict[str, str],
    value: bytes = b"{not json",
    create: bool = True,
) -> None:
    """Write one record to a DLQ topic (``create``: a new one, outside the catalogue), as
    the super user: a DLQ is written by the service that consumes its topic only."""
    if create:
        admin = AIOKafkaAdminClient(**servers.admin.client_kwargs())
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            await admin.close()
    producer = AIOKafkaProducer(**servers.admin.client_kwargs(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, value, key=b"k", headers=[(k, v.encode()) for k, v in headers.items()]
        )
    finally:
        await producer.stop()


@pytest_asyncio.fixture
async def dead_letter(servers: Servers) -> AsyncIterator[DeadLetter]:
    """One record on a DLQ topic whose name and headers are far wider than 80 columns."""
    topic = random_id("test-cli-") + ".registration-submitted-with-a-long-name-for-the-table.dlq"
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
    await put_dead_letter(servers, topic, headers)
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


async def test_topics_create_makes_the_catalogue_as_ops(servers: Servers) -> None:
    """Every topic of the catalogue and its .dlq, under TOPIC_PREFIX, shaped by TOPIC_*."""
    prefix = random_id("test-cli-create-") + "."
    servers.grant(prefix)  # the catalogue's ACLs for this deployment

    await jakpreneur(servers, "topics", "create", TOPIC_PREFIX=prefix, TOPIC_PARTITIONS="2")

    listed = await jakpreneur(servers, "topics", "list", "-o", "json")
    mine = {row["topic"] for row in json.loads(listed.stdout) if row["topic"].startswith(prefix)}
    assert mine == {prefix + e.name + dlq for e in CATALOGUE for dlq in ("", DLQ_SUFFIX)}
    topic = prefix + RegistrationSubmitted.name
    described = await jakpreneur(servers, "topics", "describe", topic, "-o", "json")
    assert [p["partition"] for p in json.loads(described.stdout)] == [0, 1]
    # a deployment that shortens the personal-data retention: ops aligns what exists
    again = await jakpreneur(
        servers, "topics", "create", TOPIC_PREFIX=prefix, TOPIC_PERSONAL_RETENTION_MS="3600000"
    )
    assert f"{topic}: set" in again.stderr and "retention.ms=3600000" in again.stderr
    assert "0 reconfigured" not in again.stdout


async def test_dlq_show_and_replay(servers: Servers) -> None:
    """A dead-lettered submission shown, then replayed where it failed, both as ops (no super
    user): the original value, key and envelope, without the dlq_* headers; and who
    replayed it, on dlq-replays."""
    prefix = random_id("test-cli-replay-") + "."
    servers.grant(prefix)
    await jakpreneur(servers, "topics", "create", TOPIC_PREFIX=prefix, TOPIC_PARTITIONS="1")
    original = prefix + RegistrationSubmitted.name
    envelope = headers_for("submission-1")
    value = json.dumps({"submission_id": "submission-1"}).encode()
    dlq = original + DLQ_SUFFIX
    await put_dead_letter(
        servers,
        dlq,
        {
            **envelope,
            "dlq_error_type": "invalid-payload",
            "dlq_error_message": "a field is missing",
            "dlq_original_topic": original,
            "dlq_original_partition": "0",
            "dlq_original_offset": "0",
            "dlq_failing_service": "registry",
            "dlq_failed_at": datetime.now(UTC).isoformat(),
        },
        value,
        create=False,
    )

    shown = await jakpreneur(servers, "dlq", "show", dlq, "0", "0")
    assert json.loads(shown.stdout)["headers"]["dlq_error_type"] == "invalid-payload"
    replayed = await jakpreneur(
        servers,
        *("dlq", "replay", dlq, "0", "0", "--by", "ops-test"),
    )
    assert "replayed to " + original in replayed.stdout

    [record] = await read_all(servers.kafka, original)
    assert (record.key, record.value) == (b"k", value)
    assert dict((k, v.decode()) for k, v in record.headers) == envelope
    entries = [json.loads(r.value) for r in await read_all(servers.kafka, REPLAYS_TOPIC)]
    assert {"by": "ops-test", "dlq_topic": dlq, "ce_id": envelope["ce_id"]}.items() <= next(
        e for e in entries if e["dlq_topic"] == dlq
    ).items()


async def test_dlq_show_masks_personal_fields_and_replay_opens_them(servers: Servers) -> None:
    """A dead-lettered submission whose personal fields the service encrypted: ``dlq show``
    prints them as [encrypted] (no NIK on stdout), ``dlq replay`` opens them with
    DLQ_PERSONAL_KEY and republishes the original bytes; with another key it refuses and
    republishes nothing."""
    from cryptography.fernet import Fernet

    from shared.dlq_seal import PersonalSeal
    from tools.registrations import Generator

    prefix = random_id("test-cli-sealed-") + "."
    servers.grant(prefix)
    await jakpreneur(servers, "topics", "create", TOPIC_PREFIX=prefix, TOPIC_PARTITIONS="1")
    original = prefix + RegistrationSubmitted.name
    dlq = original + DLQ_SUFFIX
    data = Generator(seed=11).valid()
    value = json.dumps(data).encode()
    key = Fernet.generate_key().decode()
    sealed, sealing = PersonalSeal(key).seal(original, value)
    envelope = headers_for(data["submission_id"])
    why = {
        "dlq_error_type": "handler-error",
        "dlq_error_message": "ZeroDivisionError",
        "dlq_original_topic": original,
        "dlq_original_partition": "0",
        "dlq_original_offset": "0",
        "dlq_failing_service": "registry",
        "dlq_failed_at": datetime.now(UTC).isoformat(),
    }
    await put_dead_letter(servers, dlq, {**envelope, **why, **sealing}, sealed, create=False)

    shown = await jakpreneur(servers, "dlq", "show", dlq, "0", "0")
    body = json.loads(json.loads(shown.stdout)["value"])
    assert body["nik"] == body["full_name"] == "[encrypted]"
    assert body["submission_id"] == data["submission_id"]
    assert data["nik"] not in shown.stdout and data["phone"] not in shown.stdout

    other = Fernet.generate_key().decode()
    refused = await jakpreneur(
        servers,
        *("dlq", "replay", dlq, "0", "0", "--by", "ops-test"),
        succeeds=False,
        DLQ_PERSONAL_KEY=other,
    )
    assert "not replayed" in refused.stderr and other not in refused.stderr
    assert await read_all(servers.kafka, original) == []

    await jakpreneur(
        servers, *("dlq", "replay", dlq, "0", "0", "--by", "ops-test"), DLQ_PERSONAL_KEY=key
    )
    [record] = await read_all(servers.kafka, original)
    assert record.value == value  # the original record, byte for byte
    assert dict((k, v.decode()) for k, v in record.headers) == envelope


async def test_a_forged_dead_letter_is_not_replayed_elsewhere(servers: Servers) -> None:
    """A record on sales-reported's DLQ (which the marketplace may write) dressed as Bank
    DKI's financing decision: ops's replay refuses it, and financing-decided stays empty."""
    prefix = random_id("test-cli-forged-") + "."
    servers.grant(prefix)
    await jakpreneur(servers, "topics", "create", TOPIC_PREFIX=prefix, TOPIC_PARTITIONS="1")
    dlq = prefix + SalesReported.name + DLQ_SUFFIX
    forged = {
        **new_envelope(type=FinancingDecided.ce_type(), source="bank-dki").headers(),
        "dlq_error_type": "handler-error",
        "dlq_original_topic": prefix + FinancingDecided.name,
        "dlq_original_partition": "0",
        "dlq_original_offset": "0",
        "dlq_failing_service": "marketplace",
        "dlq_failed_at": datetime.now(UTC).isoformat(),
    }
    await put_dead_letter(servers, dlq, forged, b'{"decision": "approved"}', create=False)
    refused = await jakpreneur(
        servers, *("dlq", "replay", dlq, "0", "0", "--by", "ops-test"), succeeds=False
    )
    assert refused.returncode == 1 and "not replayed" in refused.stderr + refused.stdout
    assert await read_all(servers.kafka, prefix + FinancingDecided.name) == []


async def test_a_wrong_password_is_refused_in_one_line(servers: Servers) -> None:
    wrong = servers.principal(OPS).as_user(OPS, "not-the-password")
    done = await jakpreneur(servers, "topics", "list", kafka=wrong, succeeds=False)
    assert done.stdout == ""
    assert "SaslAuthenticationFailed" in done.stderr  # aiokafka's log line says why
    [last] = done.stderr.splitlines()[-1:]
    assert last.startswith("Kafka: ") and "KAFKA_SASL_USERNAME" in last
    assert "Traceback" not in done.stderr and "not-the-password" not in done.stderr
