"""Exactly one message per (event, participant), whatever crashes (issue 12): two replicas on
one database, a replica killed mid-round, a lease left by a dead instance, and a provider
that accepts a message but answers with nothing readable. Real Kafka, real mongod, and the
provider stand-in's raw count of deliveries per idempotency key, which shows a duplicate
that its de-duplication would otherwise hide."""

from __future__ import annotations

import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.launcher import free_port
from deploy.local.providers import ProviderStandIn
from services.notifications.app import NotificationSettings, create_app
from services.notifications.channels import (
    Accepted,
    ProviderConfig,
    Providers,
    TransientFailure,
    message_id_for,
    read_answer,
    worst_case_s,
)
from shared.contracts import NotificationFailed, NotificationSent
from shared.envelope import new_envelope
from shared.mongo import Document, make_client
from tests import auth_helpers
from tests.conftest import Servers
from tests.kafka_helpers import Collector, serving, spawn_service, wait_ready
from tests.notifications.fixtures import (
    Clock,
    NotificationsUnderTest,
    enrolled,
    jakarta,
    new_phone,
    notification_settings,
    registered,
    stand_in_providers,
    until,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("daytime_and_healthy_providers")]


def sent_ids(n: NotificationsUnderTest, pid: str) -> set[str]:
    """The distinct notification-sent events for ``pid`` (the outbox relay may publish one
    event twice, with one ce_id, which consumers drop)."""
    return {r.headers["ce_id"] for r in n.of(NotificationSent, pid)}


async def jobs_of(servers: Servers, database: str) -> list[Document]:
    client = make_client(servers.mongodb_uri)
    try:
        return await client[database].jobs.find().to_list()
    finally:
        await client.close()


async def under_test(
    servers: Servers,
    producer: AIOKafkaProducer,
    settings: NotificationSettings,
    url: str,
    stand_in: ProviderStandIn,
    providers_url: str,
) -> NotificationsUnderTest:
    """Send and watch a deployment of its own (its first instance has created the topics)."""
    topic = settings.topic(NotificationSent.name)
    events = await Collector(servers.kafka, [topic]).start()
    return NotificationsUnderTest(settings, url, producer, events, stand_in, providers_url, Clock())


async def test_two_replicas_never_send_one_message_twice(
    servers: Servers, producer: AIOKafkaProducer
) -> None:
    """The second replica starts while the first has sends in flight, and both then share
    the work: every message reaches the provider exactly once, by the raw count."""
    async with stand_in_providers() as (stand_in, providers_url, smtp_port):
        # Sends held by the stand-in must not time out while the second replica starts.
        settings = notification_settings(
            servers, providers_url, smtp_port, provider_timeout_s=30, provider_attempts=1,
            lease_s=45,
        )  # fmt: skip
        second_settings = settings.model_copy(update={"http_port": free_port()})
        first_clock, second_clock = Clock(), Clock()
        async with serving(create_app(settings, first_clock), settings.http_port) as url:
            n = await under_test(servers, producer, settings, url, stand_in, providers_url)
            try:
                await n.control(whatsapp="hold", sms="hold")
                keys: dict[str, str] = {}
                for _ in range(20):
                    pid = str(uuid.uuid4())
                    keys[pid] = f"{await n.send(registered(pid, new_phone()))}:{pid}"
                await until(
                    lambda: any(stand_in.received.get(k) for k in keys.values()),
                    what="the first replica's sends to reach the provider",
                )
                in_flight = [k for k in keys.values() if stand_in.received.get(k)]
                async with serving(create_app(second_settings, second_clock), free_port()):
                    await second_clock.read(10)  # the second's dispatcher looked, repeatedly
                    assert {k: stand_in.received[k] for k in in_flight} == dict.fromkeys(
                        in_flight, 1
                    )
                    await n.control(whatsapp="ok", sms="ok")  # the held sends are answered
                    for _ in range(20):  # and more work, with both replicas running
                        pid = str(uuid.uuid4())
                        keys[pid] = f"{await n.send(registered(pid, new_phone()))}:{pid}"
                    await until(
                        lambda: all(sent_ids(n, pid) for pid in keys),
                        what="every participant's notification-sent",
                    )
                    await n.events.caught_up()
            finally:
                await n.events.stop()
        assert {pid: len(sent_ids(n, pid)) for pid in keys} == dict.fromkeys(keys, 1)
        assert {k: stand_in.deliveries.get(k) for k in keys.values()} == dict.fromkeys(
            keys.values(), 1
        )
        assert {k: stand_in.received.get(k) for k in keys.values()} == dict.fromkeys(
            keys.values(), 1
        )
        jobs = await jobs_of(servers, settings.mongodb_database)
        assert sorted(j["_id"] for j in jobs) == sorted(keys.values())
        assert {j["status"] for j in jobs} == {"sent"}


async def test_a_replica_killed_mid_round_loses_nothing_and_repeats_only_the_send_in_flight(
    servers: Servers, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    """A real notifications process, SIGKILLed in the middle of a dispatch round, while some
    of its sends hang at the provider and others have been answered. The answered ones are
    recorded already and never sent again; those in flight go out again from the survivor
    once the dead one's lease ran out, under the same idempotency key (so the provider's
    de-duplication keeps them to one message)."""
    async with stand_in_providers() as (stand_in, providers_url, smtp_port):
        settings = notification_settings(
            servers, providers_url, smtp_port, provider_timeout_s=10, provider_attempts=1,
            lease_s=15, quiet_start_hour=0, quiet_end_hour=0,  # the process's clock is real
        )  # fmt: skip
        fast = {str(uuid.uuid4()): new_phone() for _ in range(10)}
        held = {str(uuid.uuid4()): new_phone() for _ in range(4)}
        keys: dict[str, str] = {}
        # So that the process finds every message due at once, in one round: an instance in
        # the quiet hours of two days ago accepts the events and defers the messages to
        # yesterday, 07:00, then stops.
        night, deferred_to = Clock(), jakarta(-1, 7)
        night.now = jakarta(-2, 22)
        quiet = settings.model_copy(update={"quiet_start_hour": 21, "quiet_end_hour": 7})
        async with serving(create_app(quiet, night), quiet.http_port) as url:
            n = await under_test(servers, producer, settings, url, stand_in, providers_url)
            for pid, phone in (fast | held).items():
                keys[pid] = f"{await n.send(registered(pid, phone))}:{pid}"
            client = make_client(servers.mongodb_uri)
            jobs = client[settings.mongodb_database].jobs

            async def all_deferred() -> bool:
                deferred = {"status": "pending", "not_before": deferred_to}
                return await jobs.count_documents(deferred) == len(keys)

            try:
                await until(all_deferred, what="every message deferred by the quiet hours")
            finally:
                await client.close()
        env = {
            **servers.env_for(
                "notifications", settings.topic_prefix, settings.mongodb_database
            ),
            **{
                f"NOTIFICATIONS_{name.upper()}": str(getattr(settings, name))
                for name in (
                    "mongodb_database", "http_port", "outbox_relay_interval_s",
                    "whatsapp_base_url", "sms_base_url", "smtp_port", "provider_timeout_s",
                    "provider_attempts", "provider_backoff_s", "dispatch_interval_s",
                    "lease_s", "quiet_start_hour", "quiet_end_hour",
                )
            },
        }  # fmt: skip
        await n.control(recipients=dict.fromkeys(held.values(), "hold"))
        url = f"http://127.0.0.1:{settings.http_port}"
        doomed = spawn_service("services.notifications", env, tmp_path / "notifications.log")
        try:
            await wait_ready(url, doomed)
            await until(
                lambda: (
                    all(sent_ids(n, pid) for pid in fast)
                    and all(stand_in.received.get(keys[pid]) for pid in held)
                ),
                what="the fast messages recorded while the held ones are in flight",
            )
            # Still their first try (a timeout would have moved them on to SMS): in flight.
            assert [stand_in.received[keys[pid]] for pid in held] == [1] * len(held)
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
            assert not any(sent_ids(n, pid) for pid in held)
            await n.control(recipients={})  # the provider delivers what it was handed
            survivor = settings.model_copy(update={"http_port": free_port()})
            async with serving(create_app(survivor, Clock()), survivor.http_port):
                await until(
                    lambda: all(sent_ids(n, pid) for pid in keys),
                    what="the survivor to send what the dead one had in flight",
                )
                await n.events.caught_up()
        finally:
            await n.events.stop()
            if doomed.poll() is None:
                doomed.kill()
                doomed.wait()
        assert {pid: len(sent_ids(n, pid)) for pid in keys} == dict.fromkeys(keys, 1)
        # Answered before the crash: delivered once, not again by the survivor.
        assert [stand_in.deliveries.get(keys[pid]) for pid in fast] == [1] * len(fast)
        assert [stand_in.received.get(keys[pid]) for pid in fast] == [1] * len(fast)
        # In flight at the crash: sent again under the same key, one message at the provider.
        for pid, phone in held.items():
            [message] = n.delivered_to(phone)
            [event] = n.of(NotificationSent, pid)[:1]
            assert event.json()["provider_message_id"] == message["id"]
            assert 1 <= stand_in.deliveries[keys[pid]] <= 2
        jobs_left = await jobs_of(servers, settings.mongodb_database)
        assert {j["status"] for j in jobs_left} == {"sent"} and len(jobs_left) == len(keys)


async def test_an_expired_lease_is_taken_over_and_a_live_one_left_alone(
    servers: Servers, notifications: NotificationsUnderTest
) -> None:
    """Two jobs left `sending` by other instances: one whose lease ran out (the instance
    died), one whose holder is alive. The first is sent once; the second is not touched."""
    n, pid, phone = notifications, str(uuid.uuid4()), new_phone()
    wall, now = datetime.now(UTC).replace(microsecond=0), n.clock()  # as mongod keeps them

    def job(lease_owner: str, lease_until: datetime) -> Document:
        cause = new_envelope(type=enrolled(pid).ce_type(), source=enrolled(pid).producers[0])
        return {
            "_id": f"{cause.id}:{pid}",
            "participant_id": pid,
            "template": "training-enrolled",
            "data": enrolled(pid).model_dump(mode="json"),
            "cause": cause.headers(),
            "status": "sending",
            "not_before": now,
            "wait_until": now + timedelta(hours=1),
            "created_at": now,
            "lease_owner": lease_owner,
            "lease_token": uuid.uuid4().hex,
            "lease_until": lease_until,
        }

    dead, alive = job("dead-replica", wall - timedelta(minutes=1)), job("live-replica", wall)
    alive["lease_until"] = wall + timedelta(minutes=10)
    client = make_client(servers.mongodb_uri)
    db = client[n.settings.mongodb_database]
    try:
        await db.contacts.insert_one(
            {"_id": pid, "display_name": "Wati", "phone": phone, "email": None}
        )
        await db.jobs.insert_many([dead, alive])
        [sent] = await n.wait(NotificationSent, pid)
        assert sent.json()["cause_event_id"] == dead["cause"]["ce_id"]
        await n.clock.read(10)  # several more dispatch rounds
        assert await db.jobs.find_one({"_id": alive["_id"]}) == alive
        finished = await db.jobs.find_one({"_id": dead["_id"]})
        assert finished is not None and finished["status"] == "sent"
        assert not {"lease_owner", "lease_token", "lease_until"} & set(finished)
        assert n.providers.deliveries[dead["_id"]] == 1
        assert alive["_id"] not in n.providers.received
        assert len(n.delivered_to(phone)) == 1
        await n.events.caught_up()
        assert len(sent_ids(n, pid)) == 1
    finally:
        await db.jobs.delete_one({"_id": alive["_id"]})  # never to be sent in this session
        await client.close()


@pytest.mark.parametrize("answer", ["unreadable", "unexpected-json"])
async def test_a_2xx_with_an_unreadable_answer_is_recorded_as_sent_once(
    notifications: NotificationsUnderTest, answer: str
) -> None:
    n, pid, phone = notifications, str(uuid.uuid4()), new_phone()
    await n.control(recipients={phone: answer})
    key = f"{await n.send(registered(pid, phone))}:{pid}"
    [sent] = await n.wait(NotificationSent, pid)
    assert (sent.json()["channel"], sent.json()["provider_message_id"]) == ("whatsapp", "unknown")
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        response = await http.get(f"{n.url}/participants/{pid}/notifications")
    [entry] = response.json()["messages"]
    assert (entry["status"], entry["provider_message_id"]) == ("sent", "unknown")
    [problem] = entry["problems"]
    assert (problem["code"], problem["channel"]) == ("unreadable-answer", "whatsapp")
    await n.clock.read(10)  # several more dispatch rounds: nothing is sent again
    await n.events.caught_up()
    assert len(n.of(NotificationSent, pid)) == 1
    assert (n.providers.received[key], n.providers.deliveries[key]) == (1, 1)
    assert [m["channel"] for m in n.delivered_to(phone)] == ["whatsapp"]


def test_a_provider_answer_is_read_for_its_id_or_taken_as_accepted_without_one() -> None:
    assert (
        read_answer("whatsapp", 200, b'{"messages": [{"id": "wamid.1"}]}').message_id == "wamid.1"
    )
    assert read_answer("sms", 201, b'{"message_id": 42}').message_id == "42"
    for answer in (b"", b"<html>OK</html>", b"[]", b'{"message_id": ""}', b'{"messages": []}'):
        accepted = read_answer("sms" if b"message_id" in answer else "whatsapp", 200, answer)
        assert accepted.message_id == "unknown" and accepted.note, answer
    assert read_answer("sms", 200, b'{"message_id": "' + b"x" * 101 + b'"}').message_id == "unknown"


def test_the_lease_must_outlast_a_send() -> None:
    assert worst_case_s(attempts=4, timeout_s=10, backoff_s=0.5) == 40 + 0.5 + 1 + 2
    assert NotificationSettings().lease_s * 0.75 > worst_case_s(4, 10, 0.5)  # the defaults
    with pytest.raises(ValueError, match="lease_s"):
        NotificationSettings(provider_timeout_s=30, lease_s=60)
    NotificationSettings(provider_timeout_s=30, lease_s=200)


@pytest.mark.parametrize("failures", [0, 1, 3, 4])
async def test_a_send_is_tried_again_after_the_waits_worst_case_counts(
    failures: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt runs bare, the others after ``backoff_s`` doubling each time (what
    ``worst_case_s`` adds up); after ``attempts`` transient failures the send fails."""
    config = ProviderConfig(
        "http://w", "n", "t", "http://s", "k", "127.0.0.1", 25, "f@x", 10, 4, 0.5
    )  # fmt: skip
    tries, waits = list[str](), list[float]()

    async def sleep(seconds: float) -> None:  # this send's waits only, taken at once
        waits.append(seconds)

    providers = Providers(config, sleep=sleep)

    async def post(channel: str, to: str, body: str, key: str) -> Accepted:
        tries.append(key)
        if len(tries) <= failures:
            raise TransientFailure(f"{channel}: HTTP 503")
        return Accepted("wamid.1")

    monkeypatch.setattr(providers, "_post", post)
    if failures < config.attempts:
        assert await providers.send("whatsapp", "+62", "s", "b", "k") == Accepted("wamid.1")
    else:
        with pytest.raises(TransientFailure):
            await providers.send("whatsapp", "+62", "s", "b", "k")
    assert tries == ["k"] * min(failures + 1, config.attempts)
    assert waits == [0.5, 1.0, 2.0][: len(tries) - 1]
    assert sum(waits) <= config.worst_case_s - config.attempts * config.timeout_s


def test_a_mail_keeps_one_message_id_that_fits_the_contract() -> None:
    key = f"{uuid.uuid4()}:{uuid.uuid4()}"
    assert message_id_for(key) == message_id_for(key) == f"<{key.replace(':', '.')}@jakpreneur>"
    for odd in (f"{'x' * 100}:{uuid.uuid4()}", "id with spaces:p@q"):
        assert len(message_id_for(odd)) <= 100 and " " not in message_id_for(odd)


async def test_a_job_that_trips_a_bug_ends_failed_not_retried_for_ever(
    servers: Servers, notifications: NotificationsUnderTest
) -> None:
    """A job whose data the template cannot render (here: a field removed by hand, as a bug
    would leave it) is not taken again on every lease for ever: it ends once, as
    notification-failed with internal-error, and nothing reaches a provider."""
    n, pid, phone = notifications, str(uuid.uuid4()), new_phone()
    now = n.clock()
    cause = new_envelope(type=enrolled(pid).ce_type(), source=enrolled(pid).producers[0])
    data = enrolled(pid).model_dump(mode="json")
    data.pop("cohort_id")
    data.pop("sector")
    data.pop("city")
    job = {
        "_id": f"{cause.id}:{pid}",
        "participant_id": pid,
        "template": "training-enrolled",
        "data": data,
        "cause": cause.headers(),
        "status": "pending",
        "not_before": now,
        "wait_until": now + timedelta(hours=1),
        "created_at": now,
    }
    client = make_client(servers.mongodb_uri)
    db = client[n.settings.mongodb_database]
    try:
        await db.contacts.insert_one({"_id": pid, "display_name": "Wati", "phone": phone})
        await db.jobs.insert_one(job)
        [failed] = await n.wait(NotificationFailed, pid)
        assert [r["code"] for r in failed.json()["reasons"]] == ["internal-error"]
        assert failed.json()["cause_event_id"] == cause.id
        await n.clock.read(10)  # several more dispatch rounds
        stored = await db.jobs.find_one({"_id": job["_id"]})
        assert stored is not None and stored["status"] == "failed"
        assert job["_id"] not in n.providers.received
        await n.events.caught_up()
        assert len(n.of(NotificationFailed, pid)) == 1
    finally:
        await client.close()
