"""``decide_batch`` against a real MongoDB and Kafka: one transaction per batch, and a record
that cannot be applied leaves no trace but its DLQ entry, while the rest of its batch commits."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import OperationFailure, PyMongoError

from shared.batch import Fact, Outcome, decide_batch
from shared.contracts import Event, Refusal, TrainingEnrolled
from shared.envelope import Envelope, OutgoingEvent, new_envelope
from shared.kafka import Record
from shared.mongo import NO_SUCH_TRANSACTION, StateCache
from shared.retry import is_transient
from tests.conftest import random_id
from tests.shared.conftest import Tally, World

pytestmark = pytest.mark.asyncio(loop_scope="session")
ENROLLED = TrainingEnrolled.ce_type()


def not_this_one() -> Refusal:
    return Refusal("not-this-one", "refused by the rules")


def record(topic: str, offset: int, participant: str, cohort: str) -> Record:
    envelope = new_envelope(type=ENROLLED, source="test", subject=participant)
    event = TrainingEnrolled(
        participant_id=participant, cohort_id=cohort, sector="kuliner", city="X", session_count=4
    )
    return Record(
        topic, 0, offset, participant.encode(), event.model_dump_json().encode(), envelope.headers()
    )


def read(rec: Record) -> tuple[Envelope, Event]:
    if rec.value == b"unreadable":
        raise Refusal("malformed", "not JSON")
    return Envelope.from_headers(rec.headers), TrainingEnrolled.model_validate_json(rec.value)


async def run(
    world: World,
    records: list[Record],
    unit: type[StateCache[Tally]] = StateCache,
    then: Callable[[AsyncClientSession], Awaitable[None]] | None = None,
) -> None:
    """Decide ``records``; ``then`` runs in each record's transaction after its decision."""

    async def decide(session: AsyncClientSession, states: StateCache[Tally], fact: Fact) -> Outcome:
        event = fact.event
        assert isinstance(event, TrainingEnrolled)
        state = await states.load(event.participant_id)
        state.cohorts.append(event.cohort_id)
        # A write of its own in the batch's transaction, to see it rolled back with a refusal.
        side = states.documents.collection.database.side
        await side.insert_one({"cohort": event.cohort_id}, session=session)
        if event.cohort_id == "refused":
            raise not_this_one()
        if event.cohort_id == "bug":
            raise ZeroDivisionError("a bug")
        states.save(state)
        if then is not None:
            await then(session)
        out = OutgoingEvent.caused_by(
            fact.envelope,
            event,
            topic=world.topic,
            key=event.participant_id,
            source="batch-test",
            subject=event.participant_id,
            time=fact.envelope.time,
        )
        return Outcome([out])

    await decide_batch(
        records,
        read=read,
        begin=lambda session: unit(world.states, session),
        decide=decide,
        outbox=world.outbox,
        service="batch-test",
    )


async def test_refused_records_leave_only_a_dlq_entry_and_the_rest_commits(world: World) -> None:
    t = world.topic
    good = record(t, 0, "p1", "a")
    batch = [
        good,
        record(t, 1, "p1", "refused"),
        record(t, 2, "p2", "b"),
        Record(t, 0, 3, b"p3", b"unreadable", {}),
        record(t, 4, "p2", "bug"),
        record(t, 5, "p1", "c"),
        good,  # the same record twice in one batch
    ]
    await run(world, batch)

    db = world.states.collection.database
    assert await world.states.get("p1") == {"_id": "p1", "cohorts": ["a", "c"]}
    assert await world.states.get("p2") == {"_id": "p2", "cohorts": ["b"]}
    assert sorted(d["cohort"] for d in await db.side.find().to_list()) == ["a", "b", "c"]
    published = await world.published.wait_for(lambda s: True, count=3)
    assert sorted(s.json()["cohort_id"] for s in published) == ["a", "b", "c"]
    # published, so their rows have left the outbox
    assert await db.outbox.count_documents({}) == 0
    dead = await world.dlq.wait_for(lambda s: True, count=3)
    assert {s.headers["dlq_original_offset"]: s.headers["dlq_error_type"] for s in dead} == {
        "1": "not-this-one",
        "3": "malformed",
        "4": "ZeroDivisionError",
    }

    # Redelivered (a crash before the offsets were committed): nothing is decided twice.
    await run(world, [good, batch[2], batch[5]])
    assert await world.states.get("p1") == {"_id": "p1", "cohorts": ["a", "c"]}
    assert await db.side.count_documents({}) == 3
    assert await db.outbox.count_documents({}) == 0
    await world.published.caught_up()
    assert len(world.published.records) == 3


class FailingFlush(StateCache[Tally]):
    """A working set whose bulk write fails while a state holds the cohort "huge" (as a
    state grown past MongoDB's document limit would)."""

    async def flush(self) -> None:
        if any("huge" in doc["cohorts"] for doc in self._dirty.values()):
            raise ValueError("document too large")
        await super().flush()


async def test_a_batch_whose_writes_fail_is_decided_record_by_record(world: World) -> None:
    t = world.topic
    batch = [record(t, 10, "q1", "a"), record(t, 11, "q2", "huge"), record(t, 12, "q3", "b")]

    await run(world, batch, unit=FailingFlush)
    assert await world.states.get("q1") == {"_id": "q1", "cohorts": ["a"]}
    assert await world.states.get("q3") == {"_id": "q3", "cohorts": ["b"]}
    assert await world.states.get("q2") is None
    [dead] = await world.dlq.wait_for(lambda s: s.headers["dlq_original_offset"] == "11")
    assert dead.headers["dlq_error_type"] == "ValueError"


async def test_a_state_two_transactions_both_read_as_absent_is_inserted_once_and_the_loser_retries(
    world: World,
) -> None:
    """A state read as absent is inserted, not upserted: when another transaction inserted it
    after this one read, this one fails as a conflict (transient: decided again, never
    dead-lettered), and its retry finds the state and adds to it."""
    client = world.states.collection.database.client
    pid = random_id("p-")
    first, second = client.start_session(), client.start_session()
    try:
        await first.start_transaction()
        await second.start_transaction()
        mine, theirs = StateCache(world.states, first), StateCache(world.states, second)
        for cache, cohort in ((mine, "a"), (theirs, "b")):
            state = await cache.load(pid)
            assert state.cohorts == []  # both read it as absent
            state.cohorts.append(cohort)
            cache.save(state)
        await mine.flush()
        await first.commit_transaction()
        with pytest.raises(PyMongoError) as lost:
            await theirs.flush()
            await second.commit_transaction()
        assert is_transient(lost.value), lost.value
        await second.abort_transaction()
        async with await second.start_transaction():
            again = StateCache(world.states, second)
            state = await again.load(pid)
            state.cohorts.append("b")
            again.save(state)
            await again.flush()
    finally:
        await first.end_session()
        await second.end_session()
    stored = await world.states.collection.find_one({"_id": pid})
    assert stored is not None and stored["cohorts"] == ["a", "b"]


LIFETIME = "transactionLifetimeLimitSeconds"


@pytest_asyncio.fixture(loop_scope="session")
async def short_transaction_lifetime(world: World) -> AsyncIterator[None]:
    """The server aborts a transaction after one second (its floor) instead of ten."""
    admin = world.states.collection.database.client.admin
    was = (await admin.command({"getParameter": 1, LIFETIME: 1}))[LIFETIME]
    await admin.command({"setParameter": 1, LIFETIME: 1})
    try:
        yield
    finally:
        await admin.command({"setParameter": 1, LIFETIME: was})


async def test_a_batch_whose_transaction_outlives_the_servers_limit_is_decided_in_halves(
    world: World, short_transaction_lifetime: None
) -> None:
    """A transaction that outlives ``transactionLifetimeLimitSeconds`` (a slow mongod, a large
    batch) is aborted by the server, and would be again if decided whole again: the batch
    stalled for ever. Here any transaction that decides a second record outlives it; the
    batch is decided in halves, in order, down to one record each, and every record once."""
    t, pids = world.topic, [random_id("h-") for _ in range(3)]
    # per transaction (its session, weakly: an id could be a later session's): records decided
    decided: weakref.WeakKeyDictionary[AsyncClientSession, int] = weakref.WeakKeyDictionary()
    aborts = 0

    async def outlive_the_limit_from_the_second(session: AsyncClientSession) -> None:
        """From a transaction's second record on, wait until the server aborts it."""
        nonlocal aborts
        decided[session] = decided.get(session, 0) + 1
        while decided[session] > 1:
            try:
                await world.states.collection.find_one({}, session=session)
            except OperationFailure as exc:
                aborts += exc.code == NO_SUCH_TRANSACTION
                raise
            await asyncio.sleep(0.05)  # polling the condition, not a fixed wait

    batch = [record(t, 20 + n, pid, f"c{n}") for n, pid in enumerate(pids)]
    async with asyncio.timeout(60):  # decided whole again and again, it never ends
        await run(world, batch, then=outlive_the_limit_from_the_second)
    assert aborts == 2  # the three together, then the last two together
    for n, pid in enumerate(pids):
        assert await world.states.get(pid) == {"_id": pid, "cohorts": [f"c{n}"]}
    mine = [pid.encode() for pid in pids]
    published = await world.published.wait_for(lambda s: s.key in mine, count=3)
    assert [s.json()["cohort_id"] for s in published] == ["c0", "c1", "c2"]
    await world.dlq.caught_up()
    assert not world.dlq.matching(lambda s: s.key in mine)
