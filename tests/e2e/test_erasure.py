"""Erasure (UU 27/2022) across every service, on the session's running services.

One participant is carried through registration, training, certification, a listing, sales
and a message; erasure is requested through the registry's API; once every service has
confirmed, nothing of theirs is left in clear (or in a form the registry's keys open) in any
service's database or in the long-retention topics, while the funnel still counts them. A
repeated request changes nothing, and facts arriving afterwards leave nothing personal.
"""

from __future__ import annotations

import asyncio
import collections
import random
import string
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from cryptography.fernet import InvalidToken
from pymongo import AsyncMongoClient

from services.notifications.app import create_app as create_notifications
from services.registry.domain import normalise_phone
from shared.contracts import (
    FinancingReferred,
    NotificationSent,
    ParticipantContact,
    ParticipantDataErased,
    ParticipantErasureRequested,
    ParticipantRegistered,
    ProductListed,
    RegistrationSubmitted,
)
from shared.envelope import new_envelope
from shared.kafka import dlq_topic
from shared.mongo import Outbox
from tests import auth_helpers, waiting
from tests.coaching.fixtures import CoachingUnderTest
from tests.coaching.test_coaching_flow import carry_through_coaching
from tests.conftest import Servers, random_id
from tests.kafka_helpers import Collector, send, serving, wait_committed
from tests.marketplace.fixtures import MarketplaceUnderTest, review, sales
from tests.notifications.fixtures import (
    Clock,
    NotificationsUnderTest,
    notification_settings,
    stand_in_providers,
)
from tests.registry.fixtures import Registry

pytestmark = pytest.mark.integration

# The services the registry must hear from (the consumers of participant-erasure-requested
# among shared.access.SERVICES, once every one of them erases): named here, so that a
# service dropping out of the catalogue fails this test rather than shrinking it.
EVERY_SERVICE = ["coaching", "marketplace", "notifications", "registry"]
# Short retention by design (helper R): the submission and its DLQ copy. Every other topic
# of the session's prefix keeps its records long and is scanned.
SHORT_RETENTION = (RegistrationSubmitted.name, dlq_topic(RegistrationSubmitted.name))


@pytest_asyncio.fixture(scope="module")
async def session_notifications(
    servers: Servers, producer: Any, topic_prefix: str
) -> AsyncIterator[NotificationsUnderTest]:
    """Notifications on the session's topics (the session fixture has topics of its own), so
    the participant gets a message and the erasure request reaches it. Its clock says 10:00
    in Jakarta: no quiet hours."""
    async with stand_in_providers() as (stand_in, providers_url, smtp_port):
        settings = notification_settings(
            servers,
            providers_url,
            smtp_port,
            topic_prefix=topic_prefix,
            contact_wait_s=60,
        )
        clock = Clock()
        app = create_notifications(settings, clock)
        async with serving(app, settings.http_port) as url:
            events = await Collector(servers.kafka, [settings.topic(NotificationSent.name)]).start()
            try:
                yield NotificationsUnderTest(
                    settings, url, producer, events, stand_in, providers_url, clock
                )
            finally:
                await events.stop()


@dataclass(frozen=True)
class Person:
    pid: str
    submission: dict[str, Any]

    def unique(self) -> list[str]:
        """Values no other participant has: found anywhere, they are this person's."""
        s = self.submission
        phone = normalise_phone(s["phone"])
        assert phone is not None
        values = [s["full_name"], s["nik"], s["kk"], s["email"], s["business_name"], s["nib"]]
        return [*values, phone, phone.removeprefix("+"), "0" + phone.removeprefix("+62")]

    def shared(self) -> list[str]:
        """Values others may share (first name, kelurahan, birth date): theirs only in a
        document or record that also names this participant."""
        s = self.submission
        return [s["full_name"].split()[0], s["kelurahan"], s["birth_date"]]


def _letters(n: int) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=n))


def _strings(value: Any) -> Iterator[str]:
    """Every text in a document: strings, and bytes as UTF-8 (an outbox's values)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif value is not None:
        yield str(value)


def _findings(where: str, texts: list[str], person: Person, extra: list[str]) -> list[str]:
    blob = "\n".join(texts)
    needles = person.unique() + extra
    if person.pid in blob:
        needles += person.shared()
    return [f"{where}: {needle!r}" for needle in needles if needle and needle in blob]


async def scan_databases(
    mongo: AsyncMongoClient[dict[str, Any]],
    databases: list[str],
    person: Person,
    registry: Registry,
) -> list[str]:
    """Every document of every service's database, as the admin: the person's values in
    clear, the NIK's keyed hash under any key of the registry's ring, and any value the
    registry's keys decrypt to one of them."""
    vault = registry.settings.pii_vault()
    hashes = vault.lookup_hashes(person.submission["nik"])
    found: list[str] = []
    for name in databases:
        db = mongo[name]
        for collection in await db.list_collection_names():
            async for doc in db[collection].find({}):
                where = f"{name}.{collection}/{doc.get('_id')}"
                texts = list(_strings(doc))
                found += _findings(where, texts, person, hashes)
                if name != registry.settings.mongodb_database:
                    continue
                for text in texts:  # a Fernet token that opens to the person's values
                    if not text.startswith("gAAAAA"):
                        continue
                    try:
                        clear = vault.decrypt(text.encode())
                    except (InvalidToken, ValueError):
                        continue
                    found += _findings(f"{where} (decrypted)", [clear], person, [])
    return found


async def scan_topics(servers: Servers, prefix: str, person: Person) -> list[str]:
    """Every record of every topic of the session's prefix but the short-retention ones.
    ``participant-contact`` is compacted: its earlier records of a key are what the log
    cleaner removes once a later record (here the tombstone) exists, so there the person's
    latest record must be the tombstone, and other keys' records must not name them."""
    access = servers.kafka
    admin = AIOKafkaAdminClient(**access.client_kwargs())
    await admin.start()
    try:
        topics = sorted(
            t
            for t in await admin.list_topics()
            if t.startswith(prefix) and t.removeprefix(prefix) not in SHORT_RETENTION
        )
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(**access.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    found: list[str] = []
    contact_topic = prefix + ParticipantContact.name
    try:
        partitions: list[TopicPartition] = []
        for topic in topics:  # as tests.kafka_helpers.Collector: until metadata has it
            for _ in range(100):
                known = consumer.partitions_for_topic(topic)
                if known:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            assert known, f"no partitions of {topic}"
            partitions += [TopicPartition(topic, p) for p in sorted(known)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        latest_contact: bytes | str | None = "none"
        deadline = time.monotonic() + 60

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            assert time.monotonic() < deadline, "topics not read to their end"
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for r in records:
                    if r.offset >= ends[tp]:
                        continue
                    key = (r.key or b"").decode("utf-8", "replace")
                    if tp.topic == contact_topic and key == person.pid:
                        latest_contact = r.value
                        continue  # judged by its latest record below
                    texts = [key, *_strings(r.value), *(_strings(dict(r.headers)))]
                    found += _findings(f"{tp.topic}@{tp.partition}:{r.offset}", texts, person, [])
    finally:
        await consumer.stop()
    if latest_contact is not None:
        found.append(f"{contact_topic}: the latest record of {person.pid} is not a tombstone")
    return found


async def published_by_registry(
    db: Any, published: Collector, pid: str
) -> collections.Counter[str]:
    """Per topic, the records the registry has published for ``pid`` (other services'
    confirmations left out). A row leaves its outbox once the broker has acknowledged its
    event: with none of ``pid``'s left, all it committed is on the topics, read to the end."""

    async def none_left() -> bool:
        return await db.outbox.count_documents(Outbox.holding(key=pid)) == 0

    await until(f"the registry's outbox to publish every event of {pid}", none_left)
    await published.caught_up()

    def by_registry(record: Any) -> bool:
        if record.key != pid.encode():
            return False
        erased = record.topic.endswith(ParticipantDataErased.name)
        return not erased or record.json()["service"] == "registry"

    return collections.Counter(r.topic for r in published.matching(by_registry))


async def until(what: str, check: Any, timeout: float = 90) -> Any:
    return await waiting.until(what, check, timeout)


async def test_erasure_leaves_nothing_personal_in_any_service(
    servers: Servers,
    topic_prefix: str,
    registry: Registry,
    coaching: CoachingUnderTest,
    marketplace: MarketplaceUnderTest,
    session_notifications: NotificationsUnderTest,
) -> None:
    notifications = session_notifications
    # P1, with values no other participant of the session has
    tag = _letters(10)
    submission = registry.generator.valid(
        sector="kriya",
        full_name=f"Siti Erasa{tag}",
        email=f"erasa.{tag}@contoh.id",
        kelurahan=f"Kelurahan Erasa{tag}",
        has_business=True,
        business_name=f"Usaha Erasa{tag}",
        nib=f"{random.randrange(10**13):013d}",
    )
    await registry.submit(submission)
    [registered] = await registry.outcomes_for(submission["submission_id"])
    pid = ParticipantRegistered.model_validate_json(registered.value).participant_id
    person = Person(pid, submission)

    # P2-P4: training, mentoring, a certified product
    product_id = await carry_through_coaching(coaching, pid, nib=f"{random.randrange(10**13):013d}")

    # P5-P7: the listing, three months of sales, the referral; and a message went out
    for level in ("pendamping", "kecamatan", "dinas", "curator"):
        await marketplace.send(review(product_id, level, grade="A" if level == "curator" else None))
    await marketplace.wait(ProductListed, pid)
    for period in ("2024-02", "2024-03", "2024-04"):
        await marketplace.send(sales(pid, period))
    await marketplace.wait(FinancingReferred, pid)
    await notifications.wait(NotificationSent, pid)

    async with httpx.AsyncClient(timeout=30) as http:
        ops = auth_helpers.ops()
        journey_url = f"{registry.url}/participants/{pid}/journey"
        await until(
            "the journey to show the referral",
            lambda: _has_stage(http, journey_url, ops, "financing-referred"),
        )
        funnel_before = (await http.get(f"{registry.url}/funnel", headers=ops)).json()
        stages_before = (await http.get(journey_url, headers=ops)).json()["stages"]

        # Only ops or the participant themself may ask, or follow the request
        erasure_url = f"{registry.url}/participants/{pid}/erasure"
        kota = auth_helpers.bearer("kota", city=submission["city"])
        assert (await http.post(erasure_url, headers=kota)).status_code == 403
        other = auth_helpers.bearer("participant", participant_id=random_id("p-"))
        assert (await http.post(erasure_url, headers=other)).status_code == 404
        assert (await http.get(erasure_url, headers=ops)).status_code == 404  # none yet

        # The scan sees the person before the erasure (it would find a trace)
        admin: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_uri)
        try:
            before = await scan_databases(
                admin, [registry.settings.mongodb_database], person, registry
            )
        finally:
            await admin.close()
        assert any("(decrypted)" in f for f in before) and any("nik" not in f for f in before)

        # The participant asks
        themself = auth_helpers.bearer("participant", participant_id=pid)
        asked = await http.post(erasure_url, headers=themself, json={"reason": "tutup usaha"})
        assert asked.status_code == 202, asked.text
        assert asked.json()["status"] in ("pending", "complete")

        async def complete() -> dict[str, Any] | None:
            body: dict[str, Any] = (await http.get(erasure_url, headers=themself)).json()
            return body if body.get("status") == "complete" else None

        # Depends on every service answering participant-data-erased (coaching, marketplace
        # and notifications erase in their own handlers).
        status = await until("every service to confirm the erasure", complete)
        assert status["confirmed"] == EVERY_SERVICE, status
        assert status["waiting_for"] == []

        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            servers.mongodb_uri, tz_aware=True
        )
        databases = [
            registry.settings.mongodb_database,
            coaching.settings.mongodb_database,
            marketplace.settings.mongodb_database,
            notifications.settings.mongodb_database,
        ]
        try:
            assert await scan_databases(mongo, databases, person, registry) == []
            assert await scan_topics(servers, topic_prefix, person) == []

            # The funnel still counts them: their journey is whole, without a name
            assert (await http.get(journey_url, headers=ops)).json()["stages"] == stages_before
            funnel_after = (await http.get(f"{registry.url}/funnel", headers=ops)).json()
            assert funnel_after["participants"] >= funnel_before["participants"]
            assert (
                await http.get(f"{registry.url}/participants/{pid}", headers=ops)
            ).status_code == 404

            # A repeated request changes nothing
            registry_db = mongo[registry.settings.mongodb_database]
            names = (ParticipantErasureRequested, ParticipantContact, ParticipantDataErased)
            registry_topics = [registry.settings.topic(event.name) for event in names]
            published = await Collector(servers.kafka, registry_topics).start()
            try:
                published_before = await published_by_registry(registry_db, published, pid)
                again = await http.post(erasure_url, headers=ops, json={"reason": "sekali lagi"})
                assert again.status_code == 202
                request_id = again.json()["request_id"]
                await until(
                    "the registry to decide the repeated request",
                    lambda: registry_db.inbox.find_one(
                        {"_id": {"$regex": f":{request_id}$"}}, {"_id": 1}
                    ),
                )
                repeated = (await http.get(erasure_url, headers=ops)).json()
                assert repeated["status"] == "complete"
                assert repeated["confirmed"] == EVERY_SERVICE
                assert repeated["requests"] == 2
                # the request itself is the one new event: no new tombstone, no new answer
                published_after = await published_by_registry(registry_db, published, pid)
            finally:
                await published.stop()
            requested = registry.settings.topic(ParticipantErasureRequested.name)
            assert published_before[requested] == 1
            assert published_before[registry.settings.topic(ParticipantDataErased.name)] == 1
            assert published_after == {**published_before, requested: 2}

            # Facts arriving after the erasure leave nothing personal: a late sales report,
            # and a late contact (a stale copy of the registry's, e.g. from a stalled relay)
            late = await marketplace.send(sales(pid, "2024-05"))
            contact = ParticipantContact(
                participant_id=pid,
                display_name=submission["full_name"].split()[0],
                phone=normalise_phone(submission["phone"]) or "",
                email=submission["email"],
                updated_at=datetime.now(UTC),
            )
            late_contact = await send(
                registry.producer,
                notifications.topic(ParticipantContact),
                contact.model_dump_json().encode(),
                pid.encode(),
                _headers(contact),
            )
            await wait_committed(
                servers.kafka,
                marketplace.settings.consumer_group,
                late.topic,
                late.partition,
                late.offset,
            )
            await wait_committed(
                servers.kafka,
                notifications.settings.consumer_group,
                late_contact.topic,
                late_contact.partition,
                late_contact.offset,
            )
            # Depends on marketplace and notifications ignoring (or erasing at once) what
            # arrives for an erased participant.
            assert await scan_databases(mongo, databases, person, registry) == []
        finally:
            await mongo.close()

    # The NIK is unknown again: the same person registers anew, as someone new (their
    # erased journey is not linked back to them).
    again = {**submission, "submission_id": str(uuid.uuid4())}
    await registry.submit(again)
    [answer] = await registry.outcomes_for(again["submission_id"])
    assert answer.topic == registry.registered_topic
    assert answer.json()["participant_id"] != pid


def _headers(event: ParticipantContact) -> dict[str, str]:
    return new_envelope(
        type=event.ce_type(), source="registry", subject=event.participant_id
    ).headers()


async def _has_stage(http: httpx.AsyncClient, url: str, headers: Any, stage: str) -> bool:
    response = await http.get(url, headers=headers)
    return response.status_code == 200 and stage in response.json().get("stages", {})
