"""The dispatcher's job queues on the real mongod: the partial indexes replace the full ones
of earlier versions (also when replicas start together), the queue queries the store issues
use them, and a redelivered event's job is refused by its _id and leaves the stored job as
it was. Then a round with many participants due at once, committed in groups: each message
goes out once, and each participant's messages in the order they came."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from pymongo import ASCENDING, AsyncMongoClient

from deploy.local.launcher import Kafka, free_port
from services.notifications.app import create_app
from services.notifications.handlers import NO_CONTACT, Deps, _failure, _Round, system_clock
from services.notifications.store import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    WAITING,
    Lease,
    NotificationStore,
)
from shared.access import PRINCIPALS, cluster_rules
from shared.contracts import NotificationFailed, NotificationSent, TrainingEnrolled
from shared.envelope import new_envelope
from shared.kafka import ensure_topics, make_broker
from shared.mongo import Document, Outbox, make_client
from tests.conftest import Servers, random_id
from tests.kafka_helpers import Collector, serving
from tests.notifications.fixtures import (
    Clock,
    enrolled,
    jakarta,
    new_phone,
    notification_settings,
    registered,
    stand_in_providers,
    until,
)
from tests.notifications.test_exactly_once import sent_ids, under_test

pytestmark = [pytest.mark.integration]

# The queues and the state each holds: (index name, the field it orders, status).
QUEUES = [
    ("due_pending", "not_before", PENDING),
    ("waiting_until", "wait_until", WAITING),
    ("sending_lease", "lease_until", SENDING),
]
# What earlier versions created over every job, whatever its state.
OLD = [[("status", ASCENDING), (field, ASCENDING)] for _, field, _ in QUEUES]


@pytest_asyncio.fixture
async def database(servers: Servers) -> AsyncIterator[tuple[str, str]]:
    """A database of its own: (its name, the notifications user's URI for it)."""
    name = random_id("queues_")
    uri = servers.settings_for("notifications", random_id("queues-") + ".", name)["mongodb_uri"]
    yield name, uri
    admin = make_client(servers.mongodb_uri)
    try:
        await admin.drop_database(name)
    finally:
        await admin.close()


def job(status: str, at: datetime, **fields: Any) -> Document:
    pid = str(uuid.uuid4())
    return {
        "_id": f"{uuid.uuid4()}:{pid}",
        "participant_id": pid,
        "template": "participant-registered",
        "data": {},
        "cause": {},
        "status": status,
        "not_before": at,
        "wait_until": at + timedelta(hours=24),
        "created_at": at,
        **fields,
    }


def found(plan: Any, key: str) -> Iterator[str]:
    """Every value of ``key`` in a plan or any part of it."""
    if isinstance(plan, dict):
        if key in plan:
            yield plan[key]
        for value in plan.values():
            yield from found(value, key)
    elif isinstance(plan, list):
        for value in plan:
            yield from found(value, key)


def index_names(plan: Any) -> Iterator[str]:
    """Every index a plan (or any part of it) reads."""
    return found(plan, "indexName")


def stages(plan: Any) -> Iterator[str]:
    return found(plan, "stage")


async def test_the_full_indexes_give_way_to_partial_ones_also_with_replicas_starting_together(
    servers: Servers, database: tuple[str, str]
) -> None:
    """A database of an earlier version (the full status_1_* indexes, jobs in it): every
    start drops those and leaves the partial queues, also when three replicas start at the
    same moment (each may see an old index another has just dropped), and again after an
    old replica has put the full indexes back."""
    name, uri = database
    admin = make_client(servers.mongodb_uri)
    replicas = [make_client(uri) for _ in range(3)]
    try:
        jobs = admin[name].jobs
        now = datetime.now(UTC)
        await jobs.insert_many([job(s, now) for s in (PENDING, WAITING, SENDING, SENT) * 5])
        for attempt in range(3):
            for keys in OLD:
                await jobs.create_index(keys)
            assert {f"status_1_{field}_1" for _, field, _ in QUEUES} <= set(
                await jobs.index_information()
            )
            await asyncio.gather(*(NotificationStore(c, name).ensure_indexes() for c in replicas))
            indexes = await jobs.index_information()
            assert set(indexes) == {
                "_id_",
                "participant_id_1_sent_at_1",
                *(index for index, _, _ in QUEUES),
            }, f"attempt {attempt}"
            for index, field, status in QUEUES:
                assert indexes[index]["key"] == [(field, ASCENDING)]
                assert indexes[index]["partialFilterExpression"] == {"status": status}
        assert await jobs.count_documents({}) == 20  # the jobs themselves untouched
    finally:
        for client in (admin, *replicas):
            await client.close()


async def test_the_queue_queries_of_the_store_use_the_partial_indexes(
    servers: Servers, database: tuple[str, str]
) -> None:
    """With many finished jobs beside a few in each queue, the queries the store itself
    sends (caught by the profiler, then explained) read the queue's partial index, none
    scans the collection; and the claims take exactly the jobs they should."""
    name, uri = database
    admin, client = make_client(servers.mongodb_uri), make_client(uri)
    try:
        store = NotificationStore(client, name)
        await store.ensure_indexes()
        now = datetime.now(UTC).replace(microsecond=0)  # as mongod keeps them
        hour = timedelta(hours=1)
        finished = [job(SENT, now - hour, sent_at=now) for _ in range(300)]
        finished += [job(FAILED, now - hour) for _ in range(100)]
        due = [job(PENDING, now - hour) for _ in range(3)]
        later = [job(PENDING, now + hour)]
        waited_out = [job(WAITING, now - 2 * hour, wait_until=now - hour) for _ in range(2)]
        still_waiting = [job(WAITING, now)]
        lapsed = [
            job(SENDING, now - hour, lease_owner="dead", lease_token="t0", lease_until=now - hour)
        ]
        live = [
            job(SENDING, now - hour, lease_owner="live", lease_token="t1", lease_until=now + hour)
        ]
        await store.jobs.insert_many(
            finished + due + later + waited_out + still_waiting + lapsed + live
        )
        profiled = admin[name]
        await profiled.command("profile", 2)
        try:
            first = Lease("me", "t2", now + hour)
            taken = await store.claim_expired_waiting(now, first)
            second = Lease("me", "t3", now + hour)
            claimed = await store.claim_due(now, now, second, limit=10)
            renewed = await store.renew(second.token, now + 2 * hour)
        finally:
            await profiled.command("profile", 0)
        assert sorted(j["_id"] for j in taken) == sorted(j["_id"] for j in waited_out)
        assert sorted(j["_id"] for j in claimed) == sorted(j["_id"] for j in lapsed + due)
        assert renewed == len(lapsed + due)

        ns = f"{name}.jobs"
        operations = await profiled.system.profile.find({"ns": ns}).to_list()
        plans: dict[str, set[str]] = {}
        for operation in operations:
            command = operation["command"]
            if "find" in command and "_id" not in command["filter"]:
                explained = {
                    key: command[key]
                    for key in ("find", "filter", "projection", "sort", "limit", "hint")
                    if key in command
                }
            elif operation["op"] == "update" and "_id" not in command["q"]:
                update = {k: command[k] for k in ("q", "u", "multi", "hint") if k in command}
                explained = {"update": "jobs", "updates": [update]}
            else:
                continue  # by _id: the jobs a claim has chosen
            answer = await profiled.command("explain", explained, verbosity="queryPlanner")
            winning = answer["queryPlanner"]["winningPlan"]
            assert "COLLSCAN" not in set(stages(winning)), (explained, winning)
            query = command.get("filter", command.get("q"))
            key = ",".join(sorted(query))
            plans.setdefault(key, set()).update(index_names(winning))
        assert plans == {
            "status,wait_until": {"waiting_until"},  # claim_expired_waiting
            "lease_until,status": {"sending_lease"},  # claim_due: leases run out
            "not_before,status": {"due_pending"},  # claim_due: due
            "lease_token,status": {"sending_lease"},  # renew
        }
    finally:
        await admin.close()
        await client.close()


async def test_a_batch_with_jobs_already_there_adds_the_new_ones_and_changes_no_other(
    database: tuple[str, str],
) -> None:
    name, uri = database
    client: AsyncMongoClient[Document] = make_client(uri)
    try:
        store = NotificationStore(client, name)
        await store.ensure_indexes()
        now = datetime.now(UTC).replace(microsecond=0)
        existing = [job(PENDING, now) for _ in range(3)]
        assert await store.add_jobs(existing) == 3
        # Meanwhile one was sent and another is being sent: a redelivery must not undo that.
        await store.jobs.update_one(
            {"_id": existing[0]["_id"]}, {"$set": {"status": SENT, "sent_at": now}}
        )
        await store.jobs.update_one(
            {"_id": existing[1]["_id"]}, {"$set": {"status": SENDING, "lease_token": "t"}}
        )
        before = {doc["_id"]: doc async for doc in store.jobs.find()}
        new = [job(PENDING, now + timedelta(minutes=1)) for _ in range(4)]
        redelivered = [{**j, "status": PENDING, "data": {"x": 1}} for j in existing]
        batch = [new[0], redelivered[0], new[1], redelivered[1], new[2], redelivered[2], new[3]]
        assert await store.add_jobs(batch) == 4
        after = {doc["_id"]: doc async for doc in store.jobs.find()}
        assert {i: after[i] for i in before} == before
        assert {j["_id"]: j for j in new} == {j["_id"]: after[j["_id"]] for j in new}
        assert len(after) == 7
        # A batch of redeliveries only (and one job twice in a batch): nothing new.
        assert await store.add_jobs([*redelivered, redelivered[0]]) == 0
        assert await store.jobs.count_documents({}) == 7
    finally:
        await client.close()


async def test_jobs_inserted_leased_by_an_earlier_attempt_get_the_rounds_lease_not_the_old_end(
    database: tuple[str, str],
) -> None:
    """A consumed batch's messages are inserted leased to the round that sends them; an
    attempt cut short by an outage may have inserted them with a lease that has nearly run
    out by the next attempt. What the round holds is renewed to its lease (else another
    dispatcher would take them for a crashed round's and both would send); a job of another
    round, or one already sent, is neither returned nor touched."""
    name, uri = database
    client: AsyncMongoClient[Document] = make_client(uri)
    try:
        store = NotificationStore(client, name)
        await store.ensure_indexes()
        wall = datetime.now(UTC).replace(microsecond=0)
        stale = {"lease_owner": "me", "lease_token": "round", "lease_until": wall}
        mine = [job(SENDING, wall, **stale) for _ in range(2)]
        others = job(SENDING, wall, **{**stale, "lease_token": "another-round"})
        done = job(SENT, wall, sent_at=wall, lease_token="round")
        await store.add_jobs([*mine, others, done])
        lease = Lease("me", "round", wall + timedelta(seconds=90))
        held = await store.held(lease, [j["_id"] for j in (*mine, others, done)])
        assert sorted(j["_id"] for j in held) == sorted(j["_id"] for j in mine)
        assert all(j["lease_until"] == lease.until for j in held)
        # A second later another dispatcher takes what looks crashed: the other round's
        # job, whose lease ended; not this round's, renewed.
        later = wall + timedelta(seconds=1)
        taken = await store.claim_due(wall, later, Lease("x", "y", later), limit=10)
        assert [j["_id"] for j in taken] == [others["_id"]]
    finally:
        await client.close()


async def test_many_participants_due_in_one_round_get_each_message_once_and_in_order(
    servers: Servers, producer: AIOKafkaProducer
) -> None:
    """Quiet hours hold every participant's welcome and then enrolment message until 07:00;
    at 08:00 one round finds them all due at once. Committed in groups (fewer transactions
    than outcomes), each message is delivered and told once, each participant's welcome
    before their enrolment."""
    async with stand_in_providers() as (stand_in, providers_url, smtp_port):
        settings = notification_settings(servers, providers_url, smtp_port)
        clock = Clock()
        clock.now = jakarta(0, 23)
        deferred_to = jakarta(1, 7)
        phones = {str(uuid.uuid4()): new_phone() for _ in range(30)}
        async with serving(create_app(settings, clock), settings.http_port) as url:
            n = await under_test(servers, producer, settings, url, stand_in, providers_url)
            n.clock = clock
            admin = make_client(servers.mongodb_uri)
            jobs = admin[settings.mongodb_database].jobs
            try:

                async def deferred(count: int) -> bool:
                    query = {"status": PENDING, "not_before": deferred_to}
                    return await jobs.count_documents(query) == count

                welcome: dict[str, str] = {}
                for pid, phone in phones.items():
                    welcome[pid] = f"{await n.send(registered(pid, phone))}:{pid}"
                await until(lambda: deferred(len(phones)), what="the welcomes held till 07:00")
                clock.now = jakarta(0, 23, 30)  # the enrolments come later, held as long
                enrolment = {pid: f"{await n.send(enrolled(pid))}:{pid}" for pid in phones}
                await until(lambda: deferred(2 * len(phones)), what="the enrolments held too")
                assert stand_in.received == {}

                committed = await transactions_committed(admin)
                clock.now = jakarta(1, 8)
                await until(
                    lambda: all(len(sent_ids(n, pid)) >= 2 for pid in phones),
                    what="two notification-sent for every participant",
                )
                assert await transactions_committed(admin) - committed < 2 * len(phones)
                await n.events.caught_up()
                assert await jobs.count_documents({"status": SENT}) == 2 * len(phones)
            finally:
                await admin.close()
                await n.events.stop()
        for pid, phone in phones.items():
            told = n.of(NotificationSent, pid)
            assert len({r.partition for r in told}) == 1  # keyed by participant
            templates = [r.json()["template"] for r in sorted(told, key=lambda r: r.offset)]
            assert templates == ["participant-registered", "training-enrolled"], pid
            assert [m["channel"] for m in n.delivered_to(phone)] == ["whatsapp", "whatsapp"]
            assert stand_in.received[welcome[pid]] == stand_in.received[enrolment[pid]] == 1


async def transactions_committed(admin: AsyncMongoClient[Document]) -> int:
    status = await admin.admin.command("serverStatus")
    return int(status["transactions"]["totalCommitted"])


@contextlib.asynccontextmanager
async def kafka_of_its_own(servers: Servers, root: Path) -> AsyncIterator[tuple[Kafka, Servers]]:
    """A Kafka of the test's own, started by the project's launcher with the session's
    security (a SCRAM user per principal, the catalogue's ACLs), beside the session's mongod:
    one a test may pause without stalling the broker every other test uses. Stopped after."""
    kafka = Kafka(root / "kafka", users=PRINCIPALS)
    try:
        await asyncio.to_thread(kafka.start)
        await asyncio.to_thread(kafka.grant, cluster_rules())
        yield kafka, Servers(kafka, servers.mongod)
    finally:
        await asyncio.to_thread(kafka.stop)


def process_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat: T once the process is stopped."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


@contextlib.asynccontextmanager
async def not_answering(kafka: Kafka) -> AsyncIterator[None]:
    """Kafka's process stopped (SIGSTOP): its connections stay open, what clients send it
    waits in its sockets and nothing is answered, until it is continued (SIGCONT) on the
    way out, whatever happened meanwhile."""
    process = kafka.process
    assert process is not None and process.poll() is None, "Kafka is not running"
    process.send_signal(signal.SIGSTOP)
    try:
        await until(lambda: process_state(process.pid) == "T", 10, "Kafka's process stopped")
        yield
    finally:
        process.send_signal(signal.SIGCONT)


async def test_outcomes_commit_while_the_broker_does_not_answer_and_past_a_cancelled_sender(
    servers: Servers, database: tuple[str, str], tmp_path: Path
) -> None:
    """The group commit of a dispatch round (services.notifications.handlers._Round): a
    send's outcome commits even while the previous group's publish waits for a broker that
    does not answer (else a crash then would make that send again); a sender cancelled while
    its group commits (a shutdown) neither keeps the others of its group waiting nor loses
    its own outcome; everything is published afterwards, group after group in commit order.

    The broker is a real Kafka of the test's own, paused (SIGSTOP) while the outcomes
    commit: the round's publishes get no answer until it is continued, well within the
    producer's request timeout (40 s), so they complete then rather than fail."""
    name, uri = database
    async with kafka_of_its_own(servers, tmp_path) as (kafka, own):
        # One partition: the topic's offsets are the order the events were published in.
        settings = await asyncio.to_thread(
            notification_settings,
            own,
            "http://127.0.0.1:9",
            free_port(),
            mongodb_database=name,
            mongodb_uri=uri,
            topic_partitions=1,
        )
        await ensure_topics(settings, [NotificationFailed.name])
        topic = settings.topic(NotificationFailed.name)
        broker = make_broker(settings)
        client = make_client(uri)
        try:
            await broker.connect()
            store = NotificationStore(client, name)
            await store.ensure_indexes()
            outbox = Outbox(store.db, broker)
            now = datetime.now(UTC).replace(microsecond=0)
            deps = Deps(
                settings=settings,
                broker=broker,
                store=store,
                outbox=outbox,
                templates=cast(Any, None),
                providers=cast(Any, None),
                rules=cast(Any, None),
                clock=lambda: now,
                lease=timedelta(seconds=60),
                instance="test",
            )
            jobs = [
                job(
                    PENDING,
                    now - timedelta(minutes=4 - i),
                    cause=new_envelope(
                        type=TrainingEnrolled.ce_type(), source="coaching"
                    ).headers(),
                )
                for i in range(4)
            ]
            await store.add_jobs(jobs)
            round_ = _Round(deps)
            held = await store.claim_due(now, system_clock(), round_.lease, limit=10)
            assert [j["_id"] for j in held] == [j["_id"] for j in jobs]
            first, second, third, fourth = (_failure(deps, j, [NO_CONTACT]) for j in held)

            async def statuses() -> list[str]:
                jobs_in_order = store.jobs.find().sort("not_before", ASCENDING)
                return [d["status"] async for d in jobs_in_order]

            async def unsent() -> list[str]:
                rows = store.db.outbox.find().sort("created_at")
                return [event["_id"] async for row in rows for event in Outbox.events_of(row)]

            async with not_answering(kafka):
                await asyncio.wait_for(round_.record([first]), timeout=30)
                # Its publish waits for the broker; the next outcome commits all the same.
                await asyncio.wait_for(round_.record([second]), timeout=30)
                assert await statuses() == [FAILED, FAILED, SENDING, SENDING]

                cancelled = asyncio.create_task(round_.record([third]))
                waiting = asyncio.create_task(round_.record([fourth]))
                await asyncio.sleep(0)  # both have joined the group to commit next
                cancelled.cancel()
                await asyncio.wait_for(waiting, timeout=30)
                assert cancelled.cancelled()
                assert await statuses() == [FAILED] * 4
                # The broker has acknowledged nothing: every event still waits in the outbox.
                rows = await unsent()
                assert len(rows) == 4

            # The broker answers again: each event's row leaves the outbox once published.
            await asyncio.wait_for(round_.close(), timeout=60)
            assert await unsent() == []
            assert round_.recorded == 4

            events = await Collector(own.kafka, [topic]).start()
            try:
                await events.wait_for(lambda _: True, 4, timeout=30)
                await events.caught_up()
            finally:
                await events.stop()
            published = sorted(events.records, key=lambda r: r.offset)
            # Each outbox row published once, and nothing else.
            assert sorted(r.headers["ce_id"] for r in published) == sorted(rows)
            told = [
                NotificationFailed.model_validate_json(r.value).cause_event_id for r in published
            ]
            assert told == [j["cause"]["ce_id"] for j in jobs]
        finally:
            await broker.stop()
            await client.close()
