"""Notifications and the PDP law (UU 27/2022) on the real Kafka, mongod and provider
stand-ins: an erasure, a withdrawal of consent and a participant-contact tombstone."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from shared.contracts import (
    Event,
    NotificationSent,
    ParticipantContact,
    ParticipantDataErased,
)
from shared.envelope import new_envelope
from shared.kafka import KafkaAccess, dlq_topic
from tests.conftest import Servers, random_id
from tests.kafka_helpers import send, wait_committed
from tests.notifications.fixtures import (
    NotificationsUnderTest,
    Registration,
    enrolled,
    jakarta,
    new_phone,
    registered,
    until,
)
from tests.personal_scan import erasure, traces, withdrawal

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("daytime_and_healthy_providers")]


def person(pid: str) -> tuple[Registration, list[str]]:
    """A registration with a contact of its own (name, phone, e-mail) and those values."""
    name, phone, email = random_id("Wati"), new_phone(), f"{random_id('w')}@contoh.id"
    reg = registered(pid, phone, email)
    contact = reg.contact.model_copy(update={"display_name": name})
    return Registration(contact, reg.event), [name, phone, email]


async def post(n: NotificationsUnderTest, fact: Event, ce_id: str | None = None) -> Any:
    """Publish ``fact`` as its producer would; its record's metadata."""
    headers = new_envelope(type=fact.ce_type(), source=fact.producers[0]).headers()
    headers["ce_id"] = ce_id or headers["ce_id"]
    pid: str = getattr(fact, "participant_id")  # noqa: B009
    value = fact.model_dump_json().encode()
    return await send(n.producer, n.topic(type(fact)), value, pid.encode(), headers)


async def processed(n: NotificationsUnderTest, meta: Any) -> None:
    s = n.settings
    await wait_committed(
        KafkaAccess.of(s), s.consumer_group, meta.topic, meta.partition, meta.offset
    )


async def statuses(n: NotificationsUnderTest, mongo: Any, pid: str) -> dict[str, str]:
    jobs = mongo[n.settings.mongodb_database].jobs.find({"participant_id": pid})
    return {job["template"]: job["status"] async for job in jobs}


@pytest.fixture
async def mongo(servers: Servers) -> Any:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_uri)
    yield client
    await client.close()


async def test_an_erasure_forgets_the_contact_strips_the_log_and_holds_for_late_facts(
    notifications: NotificationsUnderTest, mongo: Any
) -> None:
    n, pid = notifications, str(uuid.uuid4())
    db_name = n.settings.mongodb_database
    registration, personal = person(pid)
    await n.send(registration)
    [sent] = await n.wait(NotificationSent, pid)
    personal.append(sent.json()["provider_message_id"])
    n.clock.now = jakarta(0, 22)  # quiet hours: the next message stays pending
    await processed(n, await post(n, enrolled(pid)))
    assert await statuses(n, mongo, pid) == {
        "participant-registered": "sent",
        "training-enrolled": "pending",
    }
    assert await traces(mongo, db_name, personal)  # the scan does find them

    ce_id = str(uuid.uuid4())
    await post(n, erasure(pid), ce_id)
    meta = await post(n, erasure(pid), ce_id)  # a redelivery
    [erased] = await n.wait(ParticipantDataErased, pid)
    await processed(n, meta)
    body = erased.json()
    assert (body["service"], body["categories"]) == ("notifications", ["name", "contact"])
    assert await traces(mongo, db_name, personal) == []
    assert await statuses(n, mongo, pid) == {
        "participant-registered": "sent",  # the delivery statistics stay
        "training-enrolled": "cancelled",
    }

    # Late facts: the contact again, and an event to tell; daytime, the dispatcher runs.
    n.clock.now = jakarta(1, 9)
    await post(n, registration.contact)
    await processed(n, await post(n, enrolled(pid)))
    await n.clock.read(10)
    assert await traces(mongo, db_name, personal) == []
    assert set((await statuses(n, mongo, pid)).values()) == {"sent", "cancelled"}

    # A repeated request changes nothing and is confirmed alike.
    marker = await mongo[db_name].participants.find_one({"_id": pid})
    await processed(n, await post(n, erasure(pid)))
    [_, again] = await n.wait(ParticipantDataErased, pid, 2)
    assert again.json() == body
    assert await mongo[db_name].participants.find_one({"_id": pid}) == marker
    await n.events.caught_up()
    assert len(n.of(ParticipantDataErased, pid)) == 2  # the redelivery added none
    assert len(n.of(NotificationSent, pid)) == 1
    assert len(n.delivered_to(personal[1])) == 1


async def test_a_withdrawal_of_consent_cancels_pending_and_waiting_messages_for_good(
    notifications: NotificationsUnderTest, mongo: Any
) -> None:
    n = notifications
    pending, waiting = str(uuid.uuid4()), str(uuid.uuid4())
    n.clock.now = jakarta(0, 22)  # quiet hours hold the first one's welcome back
    reg_pending, values = person(pending)
    await n.send(reg_pending)
    await processed(n, await post(n, enrolled(waiting)))  # no contact yet: it waits
    await until(
        lambda: _is(n, mongo, pending, {"participant-registered": "pending"}), what="pending"
    )
    assert await statuses(n, mongo, waiting) == {"training-enrolled": "waiting-contact"}

    for pid in (pending, waiting):
        await processed(n, await post(n, withdrawal(pid)))
        assert set((await statuses(n, mongo, pid)).values()) == {"cancelled"}

    n.clock.now = jakarta(1, 9)  # daytime: nothing goes out, not even to a late contact
    reg_waiting, late_values = person(waiting)
    await post(n, reg_waiting.contact)
    await processed(n, await post(n, enrolled(pending)))
    await n.clock.read(10)
    for pid in (pending, waiting):
        assert set((await statuses(n, mongo, pid)).values()) == {"cancelled"}
    await n.events.caught_up()
    assert n.of(NotificationSent, pending) == [] and n.of(NotificationSent, waiting) == []
    assert n.delivered_to(values[1]) == [] and n.delivered_to(late_values[1]) == []
    # The data is kept until an erasure.
    contact = await mongo[n.settings.mongodb_database].contacts.find_one({"_id": pending})
    assert contact is not None and contact["phone"] == values[1]


async def _is(n: NotificationsUnderTest, mongo: Any, pid: str, expected: dict[str, str]) -> bool:
    return await statuses(n, mongo, pid) == expected


async def test_a_tombstone_forgets_the_contact_and_an_empty_record_elsewhere_is_dead_lettered(
    notifications: NotificationsUnderTest, mongo: Any
) -> None:
    n = notifications
    contacts = mongo[n.settings.mongodb_database].contacts
    pids = [str(uuid.uuid4()), str(uuid.uuid4())]
    for pid in pids:
        await n.send(person(pid)[0].contact)
    await until(lambda: _count(contacts, pids, 2), what="both contacts")
    # As the registry writes it (its envelope headers), and bare: a null value either way.
    topic = n.topic(ParticipantContact)
    headers = new_envelope(type=ParticipantContact.ce_type(), source="registry").headers()
    await send(n.producer, topic, None, pids[0].encode(), headers)  # type: ignore[arg-type]
    meta = await send(n.producer, topic, None, pids[1].encode(), [])  # type: ignore[arg-type]
    await processed(n, meta)
    await until(lambda: _count(contacts, pids, 0), what="both contacts forgotten")

    empty = str(uuid.uuid4())
    training = n.topic(type(enrolled(empty)))
    headers = new_envelope(type=enrolled(empty).ce_type(), source="coaching").headers()
    await send(n.producer, training, None, empty.encode(), headers)  # type: ignore[arg-type]
    [dead] = await n.events.wait_for(
        lambda r: r.topic == dlq_topic(training) and r.key == empty.encode()
    )
    assert dead.headers["dlq_error_type"] == "invalid-payload"
    await n.events.caught_up()
    contact_dlq = dlq_topic(topic)
    assert not n.events.matching(
        lambda r: r.topic == contact_dlq and r.key in {*map(str.encode, pids)}
    )


async def _count(contacts: Any, pids: list[str], expected: int) -> bool:
    return int(await contacts.count_documents({"_id": {"$in": pids}})) == expected
