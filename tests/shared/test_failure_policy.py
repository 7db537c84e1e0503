"""The one failure policy, on the real servers: whose fault a failure is, a bug isolated to
its record, outages waited out (and shown on /readyz), parked facts that expire to the DLQ,
and an event too large to publish."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from pymongo.errors import DuplicateKeyError, OperationFailure, ServerSelectionTimeoutError

from deploy.local.launcher import Mongod, free_port
from services.registry.app import RegistrySettings, create_app
from shared.contracts import ParticipantRegistered, RegistrationRejected, TrainingEnrolled
from shared.envelope import OutgoingEvent, new_envelope
from shared.kafka import Record
from shared.mongo import Parking, in_transaction
from shared.retry import is_transient
from shared.service import Watchdog, consume
from tests import waiting
from tests.conftest import Servers, random_id
from tests.kafka_helpers import Collector, send, serving
from tests.shared.conftest import World
from tools.registrations import Generator, headers_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("error", "infrastructure"),
    [
        (ServerSelectionTimeoutError("no primary"), True),
        (OperationFailure("auth failed", code=18), True),
        (OperationFailure("not authorized on registry", code=13), True),
        (OperationFailure("WiredTiger: No space left on device", code=1), True),
        (OperationFailure("disk", code=14031), True),
        (OperationFailure("not primary", code=10107), True),
        (KafkaConnectionError(), True),
        (TimeoutError(), True),
        (MessageSizeTooLargeError(), False),
        (DuplicateKeyError("dup"), False),
        (OperationFailure("bad $ operator", code=2), False),
        (ValueError("a bug"), False),
        (OverflowError("date value out of range"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_whose_fault_a_failure_is(error: BaseException, infrastructure: bool) -> None:
    assert is_transient(error) is infrastructure


def _record(world: World, offset: int, cohort: str) -> Record:
    envelope = new_envelope(type=TrainingEnrolled.ce_type(), source="test")
    event = TrainingEnrolled(
        participant_id=f"p{offset}", cohort_id=cohort, sector="s", city="c", session_count=4
    )
    key = str(uuid.uuid4()).encode()
    return Record(world.topic, 0, offset, key, event.model_dump_json().encode(), envelope.headers())


async def test_a_bug_escaping_a_handler_dead_letters_only_its_record(world: World) -> None:
    handled: list[bytes] = []

    async def handler(records: list[Record]) -> None:
        for record in records:
            if b'"bug"' in record.value:
                raise ZeroDivisionError("a bug in the handler")
        handled.extend(r.value for r in records)

    records = [_record(world, i, "bug" if i == 1 else "ok") for i in range(3)]
    await consume(records, handler, world.broker, "policy-test")

    assert handled == [records[0].value, records[2].value]
    [dead] = await world.dlq.wait_for(lambda r: r.key == records[1].key)
    assert dead.headers["dlq_error_type"] == "handler-error"
    assert "ZeroDivisionError" in dead.headers["dlq_error_message"]
    assert dead.headers["ce_id"] == records[1].headers["ce_id"]


async def test_parked_facts_expire_to_the_dlq_and_release_their_claim(world: World) -> None:
    client = world.states.collection.database.client
    db = world.states.collection.database
    parking = Parking(client, db)
    await parking.ensure_indexes()
    waiting, taken = _record(world, 10, "waits"), _record(world, 11, "taken")

    async def park(session: object) -> None:
        for record, key in ((waiting, "certificate:never"), (taken, "certificate:comes")):
            claim = f"{record.headers['ce_type']}:{record.headers['ce_id']}"
            await db.inbox.insert_one({"_id": claim}, session=session)
            await parking.park(session, key, record)  # type: ignore[arg-type]

    await in_transaction(client, park)  # type: ignore[arg-type]

    async def take(session: object) -> list[Record]:
        return await parking.take(session, "certificate:comes")  # type: ignore[arg-type]

    [came] = await in_transaction(client, take)  # type: ignore[arg-type]
    assert came.value == taken.value

    assert await parking.expire(world.broker, "policy-test", timedelta(hours=1)) == 0
    # after a batch and on the periodic check at once: one of them dead-letters it
    both = await asyncio.gather(
        parking.expire(world.broker, "policy-test", timedelta(0)),
        parking.expire(world.broker, "policy-test", timedelta(0)),
    )
    assert sorted(both) == [0, 1]
    [dead] = await world.dlq.wait_for(lambda r: r.key == waiting.key)
    assert dead.headers["dlq_error_type"] == "parked-expired"
    assert "certificate:never" in dead.headers["dlq_error_message"]
    assert dead.value == waiting.value and dead.headers["ce_id"] == waiting.headers["ce_id"]
    assert await parking.collection.count_documents({}) == 0
    # Replay decides it afresh: its inbox claim is gone; the one applied keeps its claim.
    claims = {doc["_id"] async for doc in db.inbox.find()}
    assert f"{waiting.headers['ce_type']}:{waiting.headers['ce_id']}" not in claims
    assert f"{taken.headers['ce_type']}:{taken.headers['ce_id']}" in claims


@pytest.mark.parametrize("huge_first", [True, False], ids=["first", "second"])
async def test_an_event_too_large_to_publish_is_a_permanent_failure(
    world: World, huge_first: bool
) -> None:
    """Refused first or second in its write's outbox document: the other event is
    published, the document goes, and the refused event stays as a row of its own."""
    envelope = new_envelope(type=TrainingEnrolled.ce_type(), source="policy-test")
    huge = OutgoingEvent(world.topic, "p-huge", envelope, b'{"x": "' + b"a" * 2_000_000 + b'"}')
    small = OutgoingEvent(
        world.topic,
        "p-small",
        new_envelope(type=TrainingEnrolled.ce_type(), source="policy-test"),
        b"{}",
    )

    async def add(session: object) -> None:
        await world.outbox.add(session, written)  # type: ignore[arg-type]

    written = [huge, small] if huge_first else [small, huge]
    client = world.states.collection.database.client
    await in_transaction(client, add)  # type: ignore[arg-type]
    await asyncio.wait_for(world.outbox.publish(written), timeout=60)

    [dead] = await world.dlq.wait_for(lambda r: r.headers.get("ce_id") == envelope.id)
    assert dead.headers["dlq_error_type"] == "too-large"
    assert dead.headers["dlq_value_dropped"].startswith("2000009 bytes")
    assert dead.value == b""
    await world.published.wait_for(lambda r: r.headers.get("ce_id") == small.envelope.id)
    # the published event's row is gone; the refused one stays, with its reason
    [doc] = await world.outbox.collection.find().to_list()
    assert doc["_id"] == envelope.id and doc["failed"].startswith("MessageSizeTooLargeError")
    assert await world.outbox.relay_pending() == 0  # never retried
    assert await world.outbox.collection.count_documents({"_id": envelope.id}) == 1


async def test_a_mongod_outage_pauses_the_registry_and_nothing_is_lost_or_doubled(
    servers: Servers, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    """kill -9 of its MongoDB mid-stream: /readyz says not ready and why, nothing is
    dead-lettered for it, and once mongod is back every submission has exactly one answer."""
    mongod = Mongod(tmp_path / "mongod", users={"registry": ["registry"]}).start()
    settings = RegistrySettings(
        **{
            **servers.settings_for("registry", random_id("outage-") + ".", "registry"),
            "mongodb_uri": mongod.uri_for("registry"),
        },
        http_port=free_port(),
        outbox_relay_interval_s=0.2,
        # shorter than the outage: the consumer leaves its group while it waits, its commit
        # afterwards fails and the batch comes again; nothing may be lost or doubled by that
        max_poll_interval_ms=2000,
    )
    submit = settings.topic("registration-submitted")
    topics = [settings.topic(ParticipantRegistered.name), settings.topic(RegistrationRejected.name)]
    generator = Generator(seed=None)
    try:
        async with serving(create_app(settings), settings.http_port) as url:
            outcomes = Collector(servers.kafka, [*topics, f"{submit}.dlq"])
            await outcomes.start()

            async def submit_many(count: int) -> list[str]:
                ids = []
                for _ in range(count):
                    data = generator.valid()
                    ids.append(data["submission_id"])
                    headers = headers_for(data["submission_id"])
                    key = data["submission_id"].encode()
                    await send(producer, submit, json.dumps(data).encode(), key, headers)
                return ids

            first = await submit_many(5)
            await outcomes.wait_for(lambda r: True, count=5)
            assert mongod.process is not None
            mongod.process.send_signal(signal.SIGKILL)
            mongod.process.wait()
            during = await submit_many(20)
            async with httpx.AsyncClient(timeout=10) as http:

                async def readyz() -> httpx.Response:
                    return await http.get(f"{url}/readyz")

                ready = await waiting.until(
                    "/readyz to say what the service waits for",
                    readyz,
                    60,
                    done=lambda r: r.status_code == 503 and bool(r.json()["waiting_for"]),
                )
                assert ready.json()["checks"]["mongodb"] is False
                mongod.start()  # same port, same data
                await outcomes.wait_for(lambda r: True, count=25, timeout=120)
                await waiting.until(
                    "/readyz to answer 200 again", readyz, 120, done=lambda r: r.status_code == 200
                )
            await outcomes.caught_up()
            await outcomes.stop()
    finally:
        mongod.stop()

    assert not [r for r in outcomes.records if r.topic.endswith(".dlq")]
    answers: dict[str, set[str]] = {}
    for r in outcomes.records:
        answers.setdefault(r.json()["submission_id"], set()).add(r.headers["ce_id"])
    assert set(answers) == set(first + during)
    assert all(len(ids) == 1 for ids in answers.values())
    assert datetime.now(UTC)  # the clock still answers: nothing above hung


def test_the_watchdog_tells_a_stalled_consumer_from_an_idle_or_a_waiting_one() -> None:
    dog = Watchdog(timeout_s=60)
    start = dog.last
    assert not dog.stalled(behind=0, now=start + 600)  # idle: nothing behind it
    assert not dog.stalled(behind=5, now=start + 30)  # behind, but handled a batch lately
    assert dog.stalled(behind=5, now=start + 61)  # behind, and nothing handled for 61 s
    dog.started()
    assert not dog.stalled(behind=5, now=dog.last + 600)  # a batch waiting out an outage
    dog.finished()
    assert not dog.stalled(behind=5, now=dog.last + 1)
