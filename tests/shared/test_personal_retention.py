"""Personal data kept no longer than needed (issue 14), on the real servers: the retention
of the topics whose events carry personal fields and of their DLQs, their alignment on
existing topics, the personal fields of a dead letter encrypted, and the TTL index that
purges sent outbox rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from cryptography.fernet import Fernet
from pydantic import SecretStr

from shared.contracts import RegistrationSubmitted, personal_fields
from shared.dlq_seal import MASK, InvalidToken, PersonalSeal, masked
from shared.kafka import (
    DLQ_SUFFIX,
    KafkaAccess,
    Record,
    align_topics,
    configure_dead_letters,
    ensure_topics,
    send_to_dlq,
)
from shared.mongo import Outbox
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


async def test_sent_outbox_rows_expire_and_pending_ones_never(world: World) -> None:
    """The TTL index: on sent_at, with the retention, only over sent rows (its partial
    filter). MongoDB's TTL monitor runs once a minute: the test checks the index and what its
    filter matches, not the deletion. A changed retention replaces the index."""
    await world.outbox.ensure_indexes(3600)
    ttl = (await world.outbox.collection.index_information())[Outbox.SENT_TTL_INDEX]
    assert ttl["key"] == [("sent_at", 1)]
    assert ttl["expireAfterSeconds"] == 3600
    assert ttl["partialFilterExpression"] == {"sent_at": {"$type": "date"}}

    now = datetime.now(UTC)
    rows = [
        {"_id": random_id("sent-"), "created_at": now, "sent_at": now},
        {"_id": random_id("pending-"), "created_at": now, "sent_at": None},
        {"_id": random_id("refused-"), "created_at": now, "sent_at": None, "failed": "too big"},
    ]
    await world.outbox.collection.insert_many(rows)
    matched = await world.outbox.collection.find(ttl["partialFilterExpression"]).to_list()
    assert [doc["_id"] for doc in matched] == [rows[0]["_id"]]

    await world.outbox.ensure_indexes(7 * 24 * 3600)
    ttl = (await world.outbox.collection.index_information())[Outbox.SENT_TTL_INDEX]
    assert ttl["expireAfterSeconds"] == 7 * 24 * 3600


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
