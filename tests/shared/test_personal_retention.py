"""Personal data kept no longer than needed (issue 14), on the real servers: the retention
of the topics whose events carry personal fields and of their DLQs, their alignment on
existing topics, the personal fields of a dead letter encrypted, and an outbox row deleted
as soon as its event is published (an earlier version's sent rows and TTL index removed)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from cryptography.fernet import Fernet
from pydantic import SecretStr

from shared.contracts import RegistrationSubmitted, TrainingEnrolled, personal_fields
from shared.dlq_seal import MASK, InvalidToken, PersonalSeal, masked
from shared.envelope import OutgoingEvent, new_envelope
from shared.kafka import (
    DLQ_SUFFIX,
    KafkaAccess,
    Record,
    align_topics,
    configure_dead_letters,
    ensure_topics,
    send_to_dlq,
)
from shared.mongo import Outbox, in_transaction
from shared.settings import DAY_MS, DEV_DLQ_PERSONAL_KEY, ServiceSettings
from tests.conftest import Servers, random_id
from tests.kafka_helpers import Collector
from tests.shared.conftest import World
from tools.registrations import Generator, headers_for

pytestmark = pytest.mark.integration

NAMES = ["registration-submitted", "participant-contact", "training-enrolled"]


async def configs(kafka: KafkaAccess, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        [answer] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        )
    finally:
        await admin.close()
    return {r[3]: {e[0]: e[1] for e in r[4]} for r in answer.resources}


def settings(servers: Servers, prefix: str, **overrides: Any) -> ServiceSettings:
    return ServiceSettings(
        service_name="retention-test",  # a made-up service: it logs in as the admin
        **servers.settings_for("admin", prefix, random_id("retention_")),
        topic_partitions=1,
        **overrides,
    )


async def test_personal_topics_and_their_dlqs_keep_records_for_the_short_retention(
    servers: Servers,
) -> None:
    prefix = random_id("retention-") + "."
    made = await ensure_topics(settings(servers, prefix), NAMES)
    seen = await configs(servers.admin, made)

    def retention(name: str) -> str | None:
        return seen[prefix + name].get("retention.ms")

    week, month = str(7 * DAY_MS), str(30 * DAY_MS)
    assert retention("registration-submitted") == week
    assert retention("registration-submitted" + DLQ_SUFFIX) == week
    # compacted: each participant's latest contact stays until its tombstone; its DLQ is short
    assert seen[prefix + "participant-contact"]["cleanup.policy"] == "compact"
    # a replaced or erased contact leaves the log within a day, even on a quiet topic
    assert seen[prefix + "participant-contact"]["max.compaction.lag.ms"] == str(DAY_MS)
    assert retention("participant-contact" + DLQ_SUFFIX) == week
    assert retention("training-enrolled") == month
    assert retention("training-enrolled" + DLQ_SUFFIX) == month


async def test_existing_topics_are_aligned_keeping_their_own_configs(servers: Servers) -> None:
    """Topics made under the old settings get the new retention from ``align_topics`` (what
    ``jakpreneur topics create`` runs); a config set on a topic by hand stays; a second run
    changes nothing."""
    prefix = random_id("align-") + "."
    old = settings(servers, prefix, topic_personal_retention_ms=30 * DAY_MS)
    made = await ensure_topics(old, NAMES)
    submitted = prefix + "registration-submitted"
    admin = AIOKafkaAdminClient(**servers.admin.client_kwargs())
    await admin.start()
    try:
        by_hand = {"retention.ms": str(30 * DAY_MS), "max.message.bytes": "500000"}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, submitted, by_hand)])
        new = settings(servers, prefix, topic_personal_retention_ms=3 * DAY_MS)
        changed = await align_topics(admin, new, made)
        assert sorted(changed) == sorted(
            [submitted, submitted + DLQ_SUFFIX, prefix + "participant-contact" + DLQ_SUFFIX]
        )
        assert await align_topics(admin, new, made) == {}
    finally:
        await admin.close()
    seen = await configs(servers.admin, made)
    assert seen[submitted]["retention.ms"] == str(3 * DAY_MS)
    assert seen[submitted]["max.message.bytes"] == "500000"
    assert seen[prefix + "training-enrolled"]["retention.ms"] == str(30 * DAY_MS)
    assert seen[prefix + "participant-contact"]["cleanup.policy"] == "compact"


async def test_a_dead_letter_keeps_its_personal_fields_encrypted(world: World) -> None:
    """Through the kernel's send_to_dlq, to the real broker: a readable submission's
    personal fields are ciphertexts (the header names them), everything else is as it was,
    and the key opens it to the original bytes; a value that is not a JSON object is
    encrypted whole; a record of an event without personal fields is untouched."""
    await ensure_topics(world.settings, ["registration-submitted"])
    submitted = world.settings.topic(RegistrationSubmitted.name)
    dlq = await Collector(world.dlq.kafka, [submitted + DLQ_SUFFIX]).start()
    try:
        data = Generator(seed=7).valid()
        original = json.dumps(data).encode()
        headers = headers_for(data["submission_id"])
        for offset, value in enumerate([original, b'["not", "an", "object"]']):
            record = Record(submitted, 0, offset, b"k", value, headers)
            await send_to_dlq(
                world.broker, record, error_type="unknown-source", error_message="x", service="t"
            )
        [sealed] = await dlq.wait_for(lambda r: r.headers.get("dlq_original_offset") == "0")
        [whole] = await dlq.wait_for(lambda r: r.headers.get("dlq_original_offset") == "1")
    finally:
        await dlq.stop()

    present = [f for f in personal_fields(RegistrationSubmitted) if data.get(f) is not None]
    assert sealed.headers["dlq_personal_encrypted"].split(",") == present
    text = sealed.value.decode()
    for name in ("nik", "kk", "full_name", "birth_date", "phone", "email", "nib"):
        assert data[name] is None or str(data[name]) not in text, name
    body = sealed.json()
    assert body["submission_id"] == data["submission_id"]
    assert body["kecamatan"] == data["kecamatan"]  # not personal: readable
    assert sealed.headers["ce_id"] == headers["ce_id"]
    seal = PersonalSeal(DEV_DLQ_PERSONAL_KEY)
    assert seal.open(sealed.value, sealed.headers) == original  # byte for byte
    assert json.loads(masked(sealed.value, sealed.headers))["nik"] == MASK

    assert whole.headers["dlq_value_encrypted"] and b"object" not in whole.value
    assert seal.open(whole.value, whole.headers) == b'["not", "an", "object"]'
    assert masked(whole.value, whole.headers) == MASK
    with pytest.raises(InvalidToken):
        PersonalSeal(Fernet.generate_key().decode()).open(sealed.value, sealed.headers)

    plain = Record(world.topic, 0, 0, b"k", b'{"participant_id": "p"}', headers)
    await send_to_dlq(world.broker, plain, error_type="x", error_message="x", service="t")
    [dead] = await world.dlq.wait_for(lambda r: r.headers.get("ce_id") == headers["ce_id"])
    assert dead.value == plain.value and "dlq_personal_encrypted" not in dead.headers


def test_a_key_ring_opens_what_its_older_key_sealed() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    value = json.dumps({"submission_id": "s", "nik": "3171000000000001"}).encode()
    sealed, headers = PersonalSeal(old).seal("x.registration-submitted", value)
    assert b"3171000000000001" not in sealed
    assert PersonalSeal(f"{new},{old}").open(sealed, headers) == value
    # a service configured from its settings seals under the ring's first key
    ring = SecretStr(f"{new},{old}")
    configure_dead_letters(ServiceSettings(service_name="t", dlq_personal_key=ring))
    configure_dead_letters(ServiceSettings(service_name="t"))  # back to the default


def _event(world: World, key: str) -> OutgoingEvent:
    envelope = new_envelope(type=TrainingEnrolled.ce_type(), source="retention-test")
    return OutgoingEvent(world.topic, key, envelope, b'{"participant_id": "%b"}' % key.encode())


async def test_a_published_events_row_leaves_the_outbox_at_once(world: World) -> None:
    """A row stays while its event is still to be sent (the relay leaves alone what this
    process is about to send itself) and is deleted once the broker has acknowledged the
    event: its value (a contact, say) does not stay behind in MongoDB."""
    events = [_event(world, random_id("p-")) for _ in range(3)]
    ids = [e.envelope.id for e in events]

    async def add(session: Any) -> None:
        await world.outbox.add(session, events)

    await in_transaction(world.outbox.collection.database.client, add)
    rows = world.outbox.collection
    [row] = await rows.find().to_list()  # one document for the write's events, in order
    assert row["_id"] == ids[0] and [e["_id"] for e in row["events"]] == ids  # unsent: kept
    # The previous version's relay (rows of one event) does not take it for one of its own.
    assert await rows.count_documents({"sent_at": None, "failed": {"$exists": False}}) == 0
    assert await world.outbox.backlog() == 3
    assert await world.outbox.relay_pending() == 0  # in flight: this process sends them
    assert await rows.count_documents({"_id": ids[0]}) == 1

    await world.outbox.publish(events)
    published = await world.published.wait_for(lambda r: r.headers["ce_id"] in ids, count=3)
    assert [r.headers["ce_id"] for r in published] == ids
    assert await rows.count_documents({}) == 0
    assert await world.outbox.relay_pending() == 0


async def _written(world: World, *writes: list[OutgoingEvent]) -> None:
    """Each list in one transaction, as one handler's write."""
    for events in writes:

        async def add(session: Any, events: list[OutgoingEvent] = events) -> None:
            await world.outbox.add(session, events)

        await in_transaction(world.outbox.collection.database.client, add)


async def test_the_relay_sends_whole_documents_in_order_and_deletes_each_once_sent(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between commit and publish leaves documents behind (here: a new Outbox, as
    after a restart, knows nothing in flight). Values over a document's budget start a new
    document; the relay's chunks end on a document's end (never half a document sent and
    deleted); every event goes out once, in the order written, and no row is left."""
    monkeypatch.setattr(Outbox, "RELAY_CHUNK", 2)
    first = [_event(world, random_id("p-")) for _ in range(3)]
    second = [_event(world, random_id("p-")) for _ in range(3)]
    with monkeypatch.context() as small:
        small.setattr(Outbox, "DOCUMENT_BYTES", 60)  # each event counts for more: one per row
        await _written(world, first)
    await _written(world, second)
    rows = world.outbox.collection
    assert [len(Outbox.events_of(d)) async for d in rows.find().sort("created_at")] == [1, 1, 1, 3]

    restarted = Outbox(rows.database, world.broker)
    assert await restarted.relay_pending() == 6
    ids = [e.envelope.id for e in first + second]
    published = await world.published.wait_for(lambda r: r.headers["ce_id"] in ids, count=6)
    assert [r.headers["ce_id"] for r in published] == ids
    assert await rows.count_documents({}) == 0
    assert await restarted.backlog() == 0 and await restarted.relay_pending() == 0


async def test_an_erasure_takes_its_events_out_of_the_documents_still_to_send(
    world: World,
) -> None:
    """``forget`` (the registry's erasure deletes the participant's contact copies) pulls the
    matching events from any document in the same transaction, and deletes a document left
    empty; the relay then sends only the others, and a later publish of the write's events
    by the fast path finds nothing it must keep."""
    erased, other = random_id("p-"), random_id("p-")
    mixed = [_event(world, erased), _event(world, other), _event(world, erased)]
    alone = [_event(world, erased)]
    await _written(world, mixed, alone)
    rows = world.outbox.collection
    assert await rows.count_documents(Outbox.holding(key=erased)) == 2

    async def forget(session: Any) -> int:
        return await world.outbox.forget(session, topic=world.topic, key=erased)

    assert await in_transaction(rows.database.client, forget) == 2
    assert await rows.count_documents(Outbox.holding(key=erased)) == 0
    [left] = await rows.find().to_list()
    assert [e["key"] for e in left["events"]] == [other]

    assert await Outbox(rows.database, world.broker).relay_pending() == 1
    [sent] = await world.published.wait_for(lambda r: r.key == other.encode())
    assert sent.headers["ce_id"] == mixed[1].envelope.id
    assert await rows.count_documents({}) == 0
    await world.published.caught_up()
    assert not [r for r in world.published.records if r.key == erased.encode()]


async def test_an_earlier_versions_sent_rows_and_indexes_go_and_unsent_rows_stay(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier version kept a published row (``sent_at`` set) until a TTL index purged it,
    and read the unsent ones through (sent_at, created_at), and services found a
    participant's rows by ``key``. ``ensure_indexes`` deletes those sent rows and drops the
    three indexes, replicas starting together and one finding an index
    already dropped by another alike; a row it had not sent yet stays and the relay
    publishes it (then deletes it), and a refused row stays with its reason."""
    rows = world.outbox.collection
    await rows.create_index([("sent_at", 1), ("created_at", 1)])
    await rows.create_index("key")  # the services' erasures found sent rows by participant
    ttl = {"expireAfterSeconds": 604800, "partialFilterExpression": Outbox.LEGACY_SENT}
    await rows.create_index([("sent_at", 1)], name="sent_at_ttl", **ttl)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    sent, unsent, refused = (_event(world, random_id("p-")) for _ in range(3))
    await rows.insert_many(
        [
            {**sent.to_document(), "created_at": an_hour_ago, "sent_at": an_hour_ago},
            {**unsent.to_document(), "created_at": an_hour_ago, "sent_at": None},
            {**refused.to_document(), "created_at": an_hour_ago, "sent_at": None,
             "failed": "MessageSizeTooLargeError: 2000000 bytes"},
        ]
    )  # fmt: skip

    replicas = [world.outbox, Outbox(rows.database, world.broker)]
    await asyncio.gather(*(replica.ensure_indexes() for replica in replicas))
    indexes = await rows.index_information()
    assert sorted(indexes) == ["_id_", "created_at_1"]
    left = {doc["_id"]: doc async for doc in rows.find()}
    assert sorted(left) == sorted([unsent.envelope.id, refused.envelope.id])
    assert left[refused.envelope.id]["failed"].startswith("MessageSizeTooLargeError")

    # A replica read the indexes just before another dropped the TTL index: it goes on.
    await rows.create_index([("sent_at", 1)], name="sent_at_ttl", **ttl)
    stale = await rows.index_information()
    await rows.drop_index("sent_at_ttl")

    async def as_read_before() -> dict[str, Any]:
        return stale

    monkeypatch.setattr(rows, "index_information", as_read_before)
    await world.outbox.ensure_indexes()
    monkeypatch.undo()
    assert sorted(await rows.index_information()) == ["_id_", "created_at_1"]

    assert await world.outbox.relay_pending() == 1  # the unsent row; never the refused one
    [published] = await world.published.wait_for(lambda r: r.headers["ce_id"] == unsent.envelope.id)
    assert published.value == unsent.value
    assert [doc["_id"] async for doc in rows.find()] == [refused.envelope.id]
    assert await world.outbox.relay_pending() == 0
    # A replica of the earlier version, still running (a rolling upgrade), marks a row it
    # published sent: it is not published again, and the relay deletes it.
    late = _event(world, random_id("p-"))
    marked = {"created_at": an_hour_ago, "sent_at": datetime.now(UTC)}
    await rows.insert_one({**late.to_document(), **marked})
    assert await world.outbox.relay_pending() == 0
    assert [doc["_id"] async for doc in rows.find()] == [refused.envelope.id]
    await world.published.caught_up()
    assert [r.headers["ce_id"] for r in world.published.records] == [unsent.envelope.id]


def test_a_value_too_deep_to_write_again_is_sealed_whole_not_lost() -> None:
    """json.loads reads a little deeper than json.dumps writes: at those depths the fields
    cannot be re-serialised, so the whole value is encrypted (it used to raise, and the
    record got neither an answer nor a dead letter)."""
    seal, nik = PersonalSeal(Fernet.generate_key().decode()), "3171000000000001"
    tried = 0
    for depth in range(900, 1100):
        value = ('{"nik": "' + nik + '", "x": ' + "[" * depth + "]" * depth + "}").encode()
        try:
            json.loads(value)
        except RecursionError:
            continue  # the consumer reads it as too deep before any seal
        tried += 1
        sealed, headers = seal.seal("x.registration-submitted", value)
        assert nik.encode() not in sealed
        assert seal.open(sealed, headers) == value
    assert tried > 10
