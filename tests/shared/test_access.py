"""Who may do what on the real servers: Kafka's ACLs as the catalogue generates them, SCRAM
logins, MongoDB's users, and the consumers' own check of ``ce_source``."""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from shared.access import (
    INBOUND,
    OPS,
    SERVICES,
    SIMULATOR,
    SYSTEMS,
    Acl,
    acls,
    cluster_rules,
    replay_refusal,
)
from shared.contracts import (
    CATALOGUE,
    Event,
    FinancingDecided,
    FinancingReferred,
    ParticipantRegistered,
    ProductSubmitted,
    RegistrationRejected,
    RegistrationSubmitted,
    SalesReported,
    consumed_by,
    produced_by,
)
from shared.envelope import new_envelope
from shared.kafka import DLQ_SUFFIX, ensure_topics
from shared.settings import ServiceSettings
from tests.conftest import Servers, Upstream, random_id
from tests.kafka_helpers import send
from tests.marketplace.fixtures import MarketplaceUnderTest, sales

# ------------------------------------------------------------------ the generated rules


def _allowed(user: str, operation: str, prefix: str = "p.") -> set[str]:
    return {
        a.name
        for a in acls(prefix)
        if a.user == user and a.resource == "topic" and a.operation == operation
    }


def test_a_service_writes_what_it_produces_and_the_dlqs_of_what_it_consumes() -> None:
    for service in SERVICES:
        produced = {f"p.{e.name}" for e in produced_by(service)}
        dlqs = {f"p.{e.name}{DLQ_SUFFIX}" for e in consumed_by(service)}
        assert _allowed(service, "Write") == produced | dlqs, service
        assert _allowed(service, "Read") == {f"p.{e.name}" for e in consumed_by(service)}


def test_an_internal_system_writes_its_facts_and_reads_what_it_reacts_to() -> None:
    for system in SYSTEMS:
        assert _allowed(system, "Write") == {f"p.{e.name}" for e in produced_by(system)}
        assert _allowed(system, "Read") == {f"p.{e.name}" for e in consumed_by(system)}
        groups = {a.name for a in acls("p.") if a.user == system and a.resource == "group"}
        assert groups == ({f"p.{system}"} if consumed_by(system) else set())
    assert _allowed("portal", "Write") == {
        f"p.{RegistrationSubmitted.name}",
        f"p.{ProductSubmitted.name}",
        "p.participant-erasure-requested",  # a data subject's requests (UU 27/2022)
        "p.consent-withdrawn",
    }
    assert _allowed("bank-dki", "Read") == {f"p.{FinancingReferred.name}"}
    # the portal learns a rejection; participant-registered carries contacts it may not read
    assert _allowed("portal", "Read") == {f"p.{RegistrationRejected.name}"}
    assert _allowed("qris-eorder", "Read") == set()


def test_every_topic_has_exactly_its_catalogue_producers_as_writers() -> None:
    for event in CATALOGUE:
        writers = {
            a.user
            for a in acls("p.")
            if a.name == f"p.{event.name}" and a.operation == "Write" and a.user != OPS
        }
        expected = set(event.producers) | ({SIMULATOR} if event in INBOUND else set())
        assert writers == expected, event.name


def test_each_dlq_is_written_by_its_consumers_and_read_by_ops() -> None:
    for event in CATALOGUE:
        dlq = f"p.{event.name}{DLQ_SUFFIX}"
        writers = {a.user for a in acls("p.") if a.name == dlq and a.operation == "Write"}
        assert writers == (set(event.consumers) & set(SERVICES)) | {OPS}, event.name
    assert Acl(OPS, "topic", "*", "Read") in cluster_rules()


def test_a_group_belongs_to_its_service_under_the_prefix() -> None:
    groups = {(a.user, a.name) for a in acls("p.") if a.resource == "group"}
    readers = {user for e in CATALOGUE for user in e.consumers}
    assert groups == {(user, f"p.{user}") for user in readers}


# ------------------------------------------------------------------ on the real broker


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def prefix(servers: Servers) -> str:
    """A deployment of its own whose every topic exists (created by the admin)."""
    prefix = random_id("acl-") + "."
    settings = ServiceSettings(service_name="ops", **servers.settings_for("admin", prefix, "x"))
    await ensure_topics(settings, [e.name for e in CATALOGUE])
    return prefix


async def test_a_client_without_credentials_is_refused(servers: Servers) -> None:
    anonymous = AIOKafkaProducer(
        bootstrap_servers=servers.kafka.bootstrap_servers, request_timeout_ms=3000
    )
    with pytest.raises(KafkaConnectionError):
        await anonymous.start()
    await anonymous.stop()


async def test_a_wrong_password_is_refused(servers: Servers) -> None:
    wrong = servers.principal("portal").as_user("portal", "not-the-password")
    producer = AIOKafkaProducer(**wrong.client_kwargs(), request_timeout_ms=3000)
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()


async def test_the_portal_may_submit_but_not_decide_financing_nor_read_registrations(
    servers: Servers, prefix: str
) -> None:
    portal = servers.principal("portal")
    submitted = prefix + RegistrationSubmitted.name
    registered = prefix + ParticipantRegistered.name
    decided = prefix + FinancingDecided.name
    producer = AIOKafkaProducer(**portal.client_kwargs(), acks="all")
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(decided, b"{}")
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(registered, b"{}")
        # what it is there for still works
        assert (await producer.send_and_wait(submitted, b"{}")).offset >= 0
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**portal.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        # The broker does not even show it the topics it may not read (Describe), so it
        # can neither fetch nor look up offsets there; the simulator sees them.
        await consumer._client.force_metadata_update()
        assert consumer.partitions_for_topic(registered) is None
    finally:
        await consumer.stop()
    watcher = AIOKafkaConsumer(**servers.kafka.client_kwargs(), enable_auto_commit=False)
    await watcher.start()
    try:
        await watcher._client.force_metadata_update()
        assert watcher.partitions_for_topic(registered)
    finally:
        await watcher.stop()


async def test_a_service_cannot_use_another_services_group(servers: Servers, prefix: str) -> None:
    coaching = servers.principal("coaching")
    consumer = AIOKafkaConsumer(
        prefix + ParticipantRegistered.name,
        **coaching.client_kwargs(),
        group_id=prefix + "marketplace",
        enable_auto_commit=False,
    )
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            await consumer.start()
    finally:
        await consumer.stop()


async def test_a_service_principal_cannot_forge_another_services_event(
    servers: Servers, prefix: str
) -> None:
    notifications = AIOKafkaProducer(**servers.principal("notifications").client_kwargs())
    await notifications.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await notifications.send_and_wait(prefix + ParticipantRegistered.name, b"{}")
    finally:
        await notifications.stop()


# ------------------------------------------------------------------ on the real mongod


async def test_a_services_mongo_user_reaches_its_own_database_only(servers: Servers) -> None:
    own, other = random_id("coaching_"), random_id("registry_")
    servers.settings_for("registry", random_id("p-") + ".", other)
    uri = servers.settings_for("coaching", random_id("p-") + ".", own)["mongodb_uri"]
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        uri, serverSelectionTimeoutMS=5000
    )
    try:
        await client[own].things.insert_one({"_id": 1})
        assert await client[own].things.count_documents({}) == 1
        with pytest.raises(OperationFailure) as refused:
            await client[other].participants.find_one({})
        assert refused.value.code == 13  # Unauthorized
        with pytest.raises(OperationFailure):  # nor make itself more
            await client.admin.command("createUser", "intruder", pwd="x", roles=["root"])
    finally:
        await client.close()
    nobody: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        servers.mongod.address, serverSelectionTimeoutMS=5000
    )
    try:
        with pytest.raises(OperationFailure):
            await nobody[own].things.find_one({})
    finally:
        await nobody.close()


# ------------------------------------------------------------------ the consumers' own check


async def test_a_fact_from_a_producer_the_catalogue_does_not_name_is_dead_lettered(
    marketplace: MarketplaceUnderTest, producer: Upstream
) -> None:
    """The simulator may write sales-reported (it plays QRIS/e-Order), but a record that
    says it comes from the portal is not QRIS's: the marketplace refuses it by its source."""
    pid = str(uuid.uuid4())
    report = sales(pid, "2026-02")
    topic = marketplace.topic(SalesReported)
    headers = new_envelope(type=report.ce_type(), source="portal", subject=pid).headers()
    value = report.model_dump_json().encode()
    await send(await producer.of(topic), topic, value, pid.encode(), headers)
    record = await marketplace.dead(pid.encode())
    assert record.headers["dlq_error_type"] == "unknown-source"
    assert "portal" in record.headers["dlq_error_message"]


# ------------------------------------------------------------------ replays


def _dead(event: type[Event], **changes: str) -> dict[str, str]:
    return {
        "ce_type": event.ce_type(),
        "ce_source": event.producers[0],
        "dlq_original_topic": f"p.{event.name}",
        "dlq_failing_service": next(c for c in event.consumers if c in SERVICES),
        **changes,
    }


def test_a_dead_letter_goes_back_only_as_its_topics_consumers_would_take_it() -> None:
    """Ops writes every topic and a service writes its topics' DLQs: a stolen service
    principal must not get ops to write, through a replay, where it may not."""
    dlq = f"p.{SalesReported.name}{DLQ_SUFFIX}"
    assert replay_refusal(dlq, _dead(SalesReported)) is None
    forged = _dead(SalesReported, dlq_original_topic=f"p.{FinancingDecided.name}")
    assert "is not the DLQ of" in str(replay_refusal(dlq, forged))
    assert "is not the DLQ of" in str(
        replay_refusal(dlq, _dead(SalesReported, dlq_original_topic=""))
    )
    other_type = _dead(SalesReported, ce_type=FinancingDecided.ce_type())
    assert "ce_type" in str(replay_refusal(dlq, other_type))
    assert "ce_source" in str(replay_refusal(dlq, _dead(SalesReported, ce_source="portal")))
    by_stranger = _dead(SalesReported, dlq_failing_service="notifications")
    assert "does not consume" in str(replay_refusal(dlq, by_stranger))
