"""MongoDB helpers: the client factory, the inbox, the outbox and its relay, and retries.

Inbox and outbox are what make at-least-once delivery produce every effect once: a handler
claims the message's idempotency key and writes its state change and the events it causes in
one transaction (one outbox document for all the events of a write); once the broker
acknowledges them, the document leaves the outbox, and a relay publishes whatever the outbox
still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient, InsertOne, ReplaceOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from shared.contracts import Refusal
from shared.envelope import OutgoingEvent
from shared.kafka import Record, dead_letter, publish
from shared.logging import get_logger
from shared.retry import TOO_LARGE_ERRORS, is_transient, retry_transient

log = get_logger(__name__)

Document = dict[str, Any]
T = TypeVar("T")


def make_client(uri: str) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000)


async def in_transaction(
    client: AsyncMongoClient[Document], work: Callable[[AsyncClientSession], Awaitable[T]]
) -> T:
    """Run ``work`` in one majority-committed snapshot transaction.

    Not ``with_transaction``: it retries a transient error silently for up to 120 s, so an
    outage would hide behind it. Here any error aborts and propagates at once, and
    ``retry_transient`` (the callers') backs off, shows the outage on ``/readyz`` and runs
    ``work`` again; a commit whose result is unknown is run again too, which the inbox
    makes harmless (the second run finds its claims and adds nothing)."""
    async with client.start_session() as session:
        async with await session.start_transaction(
            read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority")
        ):
            result = await work(session)
        return result


NO_SUCH_TRANSACTION = 251  # MongoDB's code for a transaction the server has aborted


class AbortedByServer(Exception):
    """The server aborted the transaction under way (``NoSuchTransaction``): most often it
    outlived ``transactionLifetimeLimitSeconds`` (60 s by default, 10 s locally), which the
    same work, run again whole, would outlive again. Not transient, so the caller that
    asked for it (``transact(..., splittable=True)``) can split the work instead."""


async def transact(
    client: AsyncMongoClient[Document],
    work: Callable[[AsyncClientSession], Awaitable[T]],
    attempts: int = 10,
    *,
    splittable: bool = False,
) -> T:
    """Run a decision in a transaction until it commits: outages are waited out, and a race
    lost on a unique key (a concurrent handler claimed the same key first) aborts the
    transaction, so deciding again sees the winner's write. Still losing after ``attempts``
    is not a race but a bug: the error propagates (and the record goes to the DLQ).
    ``splittable``: a transaction the server aborted raises :class:`AbortedByServer`
    instead of being run again whole (the caller decides its work in smaller parts)."""

    async def once() -> T:
        try:
            return await in_transaction(client, work)
        except OperationFailure as exc:
            if splittable and exc.code == NO_SUCH_TRANSACTION:
                raise AbortedByServer(str(exc)) from exc
            raise

    for _attempt in range(attempts - 1):
        try:
            return await retry_transient(once)
        except DuplicateKeyError:
            log.info("lost a race on a unique key; deciding again")
    return await retry_transient(once)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def inbox_key(ce_type: str, ce_id: str) -> str:
    """A record is decided once however often it is delivered: its inbox claim."""
    return f"{ce_type}:{ce_id}"


async def claim_many(
    db: AsyncDatabase[Document], session: AsyncClientSession, keys: list[str]
) -> set[str]:
    """Record ``keys`` in the inbox inside the caller's transaction; returns those that were
    not there yet, i.e. whose effects are this transaction's to write.

    A write error aborts a MongoDB transaction, so the keys are looked up first rather than
    caught as duplicates. A concurrent claim of the same key makes the insert raise
    DuplicateKeyError (or a transient write conflict): the caller runs its transaction again
    and then finds the key.
    """
    seen = {
        doc["_id"]
        async for doc in db.inbox.find({"_id": {"$in": keys}}, {"_id": 1}, session=session)
    }
    new = [key for key in keys if key not in seen]
    if new:
        now = datetime.now(UTC)
        await db.inbox.insert_many([{"_id": key, "at": now} for key in new], session=session)
    return set(new)


class ParticipantState(Protocol):
    """What a service's state of one participant is to the stores: a pydantic model that
    carries its participant's id, stored under that id (``_id``) and without it."""

    @property
    def participant_id(self) -> str: ...

    @classmethod
    def model_validate(cls, obj: Any) -> Self: ...

    def model_dump(self, *, exclude: set[str]) -> dict[str, Any]: ...


M = TypeVar("M", bound=ParticipantState)


class StateDocuments(Generic[M]):
    """One pydantic state document per participant; ``_id`` is the participant id."""

    def __init__(self, collection: AsyncCollection[Document], model: type[M]) -> None:
        self.collection = collection
        self.model = model

    async def get(self, participant_id: str) -> Document | None:
        return await self.collection.find_one({"_id": participant_id})


class StateCache(Generic[M]):
    """One batch's view of state documents inside its transaction: read in bulk, changed in
    memory, written back with one bulk write. Each :meth:`load` returns a fresh model, so a
    decision that fails half-way leaves the cached state as it was."""

    def __init__(self, documents: StateDocuments[M], session: AsyncClientSession) -> None:
        self.documents, self.session = documents, session
        self._docs: dict[str, Document | None] = {}
        self._dirty: dict[str, Document] = {}
        self._absent: set[str] = set()  # read and not there: inserted, not upserted

    async def prefetch(self, participant_ids: Iterable[str]) -> None:
        wanted = {pid for pid in participant_ids if pid not in self._docs}
        if not wanted:
            return
        self._docs.update(dict.fromkeys(wanted))
        self._absent |= wanted
        cursor = self.documents.collection.find(
            {"_id": {"$in": list(wanted)}}, session=self.session
        )
        async for doc in cursor:
            pid = str(doc.pop("_id"))
            self._docs[pid] = doc
            self._absent.discard(pid)

    async def load(self, participant_id: str) -> M:
        await self.prefetch([participant_id])
        doc = self._docs[participant_id] or {}
        return self.documents.model.model_validate({**doc, "participant_id": participant_id})

    def save(self, state: M) -> None:
        doc = state.model_dump(exclude={"participant_id"})
        self._docs[state.participant_id] = self._dirty[state.participant_id] = doc

    async def flush(self) -> None:
        """A state read as absent is inserted (a quarter of an upsert's cost to MongoDB: a new
        participant's, nearly always); one inserted meanwhile by another transaction makes
        this one conflict and decide again. The others are replaced."""
        writes: list[InsertOne[Document] | ReplaceOne[Document]] = [
            InsertOne({"_id": pid, **doc})
            if pid in self._absent
            else ReplaceOne({"_id": pid}, doc, upsert=True)
            for pid, doc in self._dirty.items()
        ]
        if writes:
            await self.documents.collection.bulk_write(writes, ordered=False, session=self.session)
        self._absent -= self._dirty.keys()
        self._dirty.clear()


UNREAD_BEFORE: Document = {"sent_at": False}  # see Outbox.PENDING
HEADERS_ALLOWANCE = 2048  # an event's headers and fields, counted with its value


class Outbox:
    """Events written with the state change that caused them, published afterwards.

    One document holds the events of one write (a batch's, in order), named after its first
    event: ``{_id, events: [...], created_at}`` — one insert per transaction however many
    events it caused, and one delete once the broker has acknowledged them all (the events'
    values, contacts among them, leave MongoDB at once). So the outbox holds only what is
    still to be sent, and, as a row of its own with its reason, what the broker refused for
    its size. A row of one event without ``events`` (an earlier version's, or a refused one)
    is read alike.

    Two paths publish: the handler right after its commit (fast), and a relay for whatever
    a crash left behind. So that they do not both send one event, the relay leaves alone the
    documents this process still means to send itself (registered by :meth:`add`, for at
    most ``IN_FLIGHT_TTL``). Another instance's relay can still send an event twice when that
    instance stalls past the relay's age cut-off, or when a relay read a row just before
    the other path published and deleted it: consumers drop a repeated ``ce_id``.

    Both paths hand :meth:`publish` whole documents' events (a write's, or several writes'),
    so deleting the documents named after the events acknowledged (and those the relay read)
    deletes exactly the documents whose every event was acknowledged.
    """

    IN_FLIGHT_TTL = timedelta(minutes=5)
    # A document's events' values, at most (one event larger than this is a document alone):
    # far under MongoDB's 16 MB, headers and all.
    DOCUMENT_BYTES = 4 * 1024 * 1024
    RELAY_CHUNK = 500  # events published together by the relay (whole documents)

    def __init__(self, db: AsyncDatabase[Document], broker: KafkaBroker) -> None:
        self.collection = db.outbox
        self.broker = broker
        self._in_flight: dict[str, datetime] = {}
        self.upgrading = False  # set by ensure_indexes when an earlier version's are there

    # An earlier version marked a published row sent (``sent_at``) and kept it until a TTL
    # index purged it; the relay read the unsent ones through the other index, and an
    # erasure found a participant's sent rows by ``key`` (none are kept now).
    LEGACY_INDEXES = ("sent_at_ttl", "sent_at_1_created_at_1", "key_1")
    LEGACY_SENT: ClassVar[Document] = {"sent_at": {"$type": "date"}}

    async def ensure_indexes(self) -> None:
        """The relay's index (oldest first). Where an earlier version's indexes are still
        there, the rows it published and kept are deleted (they hold the events' values,
        contacts among them), then its indexes are dropped. A row such a version's replica
        marks sent later still (a rolling upgrade) is never relayed (PENDING) and this
        process's relay deletes it."""
        indexes = await self.collection.index_information()
        legacy = [name for name in self.LEGACY_INDEXES if name in indexes]
        # Replicas of that version may still run (a rolling upgrade): while this process
        # runs, its relay deletes the rows they mark sent (no TTL index purges them now).
        self.upgrading = self.upgrading or bool(legacy)
        if legacy:
            await self.collection.delete_many(self.LEGACY_SENT)
        await self.collection.create_index([("created_at", 1)])
        for name in legacy:
            with contextlib.suppress(OperationFailure):  # another replica dropped it first
                await self.collection.drop_index(name)

    # Publishable: an event the broker refused for its size stays, and is not retried.
    # ``sent_at`` null or missing: a row an earlier version's replica marked sent during a
    # rolling upgrade was published already (the relay deletes it, never sends it again).
    # A document of several events carries ``sent_at: false``, which that version's relay
    # (``sent_at: null``) does not match: it cannot read one, and leaves it to this one.
    PENDING: ClassVar[Document] = {"sent_at": {"$in": [None, False]}, "failed": {"$exists": False}}

    @staticmethod
    def events_of(doc: Document) -> list[Document]:
        """The events a row holds, in order: a write's, or the row's own."""
        events: list[Document] = doc.get("events", [doc])
        return events

    @classmethod
    def holding(cls, **fields: Any) -> Document:
        """The filter of rows holding an event with ``fields`` (e.g. ``key=pid``)."""
        return {"$or": [fields, {"events": {"$elemMatch": fields}}]}

    async def add(self, session: AsyncClientSession, events: Iterable[OutgoingEvent]) -> None:
        now = datetime.now(UTC)
        docs: list[Document] = []
        size = 0
        for event in events:
            row = event.to_document()
            value = len(event.value or b"") + HEADERS_ALLOWANCE
            if not docs or size + value > self.DOCUMENT_BYTES:
                docs.append({"_id": row["_id"], "events": [], "created_at": now, **UNREAD_BEFORE})
                size = 0
            docs[-1]["events"].append(row)
            size += value
        if docs:
            await self.collection.insert_many(docs, session=session)
            self._in_flight.update((doc["_id"], now) for doc in docs)

    async def publish(self, events: Iterable[OutgoingEvent], rows: Iterable[str] = ()) -> None:
        """Fast path right after the commit; anything it misses the relay sends later.

        Every event is handed to the producer in order (a key's events keep their order on
        its partition), the acknowledgements are awaited together, and one write deletes
        the documents they fill (one another path published and deleted first is simply
        not there): those named after an event sent, and ``rows`` (the relay's, read with
        the events). ``events`` are whole documents' (see the class).
        """
        events, rows = list(events), list(rows)
        if not events and not rows:
            return
        refused: dict[str, BaseException] = {}
        acknowledged: list[tuple[OutgoingEvent, asyncio.Future[Any]]] = []
        failure: BaseException | None = None
        for event in events:
            try:
                acknowledged.append((event, await publish(self.broker, event)))
            except TOO_LARGE_ERRORS as exc:  # the producer measures a record as it takes it
                refused[event.envelope.id] = exc
            except Exception as exc:  # not handed over: neither are the events after it
                failure = exc
                break
        answers = await asyncio.gather(*(f for _, f in acknowledged), return_exceptions=True)
        for (event, _), answer in zip(acknowledged, answers, strict=True):
            if isinstance(answer, TOO_LARGE_ERRORS):  # the broker refused it for its size
                refused[event.envelope.id] = answer
            elif isinstance(answer, BaseException):
                failure = failure or answer
        if failure is not None:  # e.g. the broker is down: the caller retries them all
            raise failure  # (a refusal is met again then, and recorded once all is sent)
        for event in events:
            if event.envelope.id in refused:
                await self._refused(event, refused[event.envelope.id])
        sent = [e.envelope.id for e in events if e.envelope.id not in refused]
        done = [doc_id for doc_id in dict.fromkeys(sent + rows) if doc_id not in refused]
        if done:
            await self.collection.delete_many({"_id": {"$in": done}})
        for event in events:
            self._in_flight.pop(event.envelope.id, None)

    async def _refused(self, event: OutgoingEvent, exc: BaseException) -> None:
        """An event the broker refuses for its size is refused on every retry: it is a
        permanent failure, kept in the outbox as a row of its own with its reason (never
        relayed again; the document it came in, the rest of which was sent, goes) and put
        on its topic's DLQ (without the value that does not fit) for an operator."""
        value = event.value or b""  # a tombstone is never too large; typed as one anyway
        reason = f"{type(exc).__name__}: {len(value)} bytes"
        log.error("event too large to publish", topic=event.topic, event_id=event.envelope.id)
        record = Record(event.topic, -1, -1, event.key.encode(), value, event.envelope.headers())
        await dead_letter(self.broker, record, Refusal("too-large", reason), event.envelope.source)
        now = datetime.now(UTC)
        row = {**event.to_document(), "created_at": now, "failed": reason, "failed_at": now}
        await self.collection.replace_one({"_id": event.envelope.id}, row, upsert=True)

    async def forget(self, session: AsyncClientSession, **fields: Any) -> int:
        """Delete, in the caller's transaction, every event still held with ``fields``
        (a participant's contact, at erasure); returns how many rows held one."""
        alone = await self.collection.delete_many(fields, session=session)
        pulled = await self.collection.update_many(
            {"events": {"$elemMatch": fields}}, {"$pull": {"events": fields}}, session=session
        )
        if pulled.modified_count:
            await self.collection.delete_many({"events": {"$size": 0}}, session=session)
        return alone.deleted_count + pulled.modified_count

    async def relay_pending(self, older_than: timedelta = timedelta(0)) -> int:
        """Publish, oldest first, every event still in the outbox (but those refused) that
        this process is not about to send itself; returns how many it sent."""
        now = datetime.now(UTC)
        for doc_id, since in list(self._in_flight.items()):  # e.g. a transaction aborted
            if now - since > self.IN_FLIGHT_TTL:
                del self._in_flight[doc_id]
        if self.upgrading:  # rows an earlier version's replica marked sent: see PENDING
            await self.collection.delete_many(self.LEGACY_SENT)
        sent = 0
        cursor = self.collection.find(
            {**self.PENDING, "created_at": {"$lte": now - older_than}}
        ).sort("created_at", 1)
        # Whole documents, by their ids: an erasure may have taken out the event one is
        # named after (Outbox.forget).
        chunk: list[OutgoingEvent] = []
        rows: list[str] = []
        async for doc in cursor:
            if doc["_id"] in self._in_flight:
                continue
            rows.append(doc["_id"])
            chunk += (OutgoingEvent.from_document(event) for event in self.events_of(doc))
            if len(chunk) >= self.RELAY_CHUNK:  # whole documents, so possibly a few more
                await self.publish(chunk, rows)
                sent, chunk, rows = sent + len(chunk), [], []
        await self.publish(chunk, rows)
        sent += len(chunk)
        if sent:
            log.info("outbox relay published pending events", count=sent)
        return sent

    async def backlog(self) -> int:
        """Events written and not yet published (refused ones left out)."""
        size = {"$cond": [{"$isArray": "$events"}, {"$size": "$events"}, 1]}
        pipeline = [{"$match": self.PENDING}, {"$group": {"_id": None, "n": {"$sum": size}}}]
        async for row in await self.collection.aggregate(pipeline):
            return int(row["n"])
        return 0

    async def run_relay(self, interval_s: float) -> None:
        """Background loop; on a crash between commit and publish this is what sends."""
        while True:
            try:
                await self.relay_pending(older_than=timedelta(seconds=interval_s * 5))
            except Exception as exc:  # the relay must outlive anything: it tries again
                if is_transient(exc):
                    log.warning(
                        "outbox relay waiting for infrastructure", error_type=type(exc).__name__
                    )
                else:
                    log.exception("outbox relay failed; it tries again")
            await asyncio.sleep(interval_s)


class Parking:
    """Facts that name something not known yet (a revocation before its certificate, a
    review before its product) wait here, in the deciding transaction, until it arrives.

    A fact parked longer than the service's ``parked_ttl_s`` will not be completed by what
    comes later: :meth:`expire` sends it to its DLQ as ``parked-expired`` and releases its
    inbox claim, so an operator's ``jakpreneur dlq replay`` decides it afresh.

    Parking and taking one key both write that key's marker document: a fact parked while
    another replica's transaction takes the key conflicts with it and is decided again
    (then finding what it waited for), instead of both committing and the fact waiting its
    whole TTL.
    """

    def __init__(self, client: AsyncMongoClient[Document], db: AsyncDatabase[Document]) -> None:
        self.client, self.db = client, db
        self.collection = db.parked
        self.keys = db.parked_keys
        self.refused_since_expiry = False  # set by refuse(): worth an expiry after the batch
        self._expiring = asyncio.Lock()  # after a batch and periodically: one at a time

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("key", 1), ("parked_at", 1)])
        await self.collection.create_index([("parked_at", 1)])

    async def park(self, session: AsyncClientSession, key: str, record: Record) -> None:
        """Keep ``record`` (already claimed in the inbox) under ``key``, what it waits for."""
        await self._touch(session, key)
        await self._insert(session, key, record, datetime.now(UTC))

    async def refuse(self, session: AsyncClientSession, record: Record, problem: Refusal) -> None:
        """A parked record that cannot apply now that what it waited for came: kept, with
        its reason, in the same transaction that took it, for :meth:`expire` to dead-letter
        on its next run (and release its claim). Dead-lettering it after the commit instead
        would lose it to a crash in between."""
        await self._insert(
            session, f"refused:{problem.code}", record, EPOCH, problem.code, str(problem)
        )
        self.refused_since_expiry = True

    async def _touch(self, session: AsyncClientSession, key: str) -> None:
        await self.keys.update_one({"_id": key}, {"$inc": {"n": 1}}, upsert=True, session=session)

    async def _insert(
        self,
        session: AsyncClientSession,
        key: str,
        record: Record,
        at: datetime,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        await self.collection.insert_one(
            {
                "key": key,
                "code": code,
                "message": message,
                "claim": inbox_key(record.headers["ce_type"], record.headers["ce_id"]),
                "parked_at": at,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "record_key": record.key,
                "value": record.value,
                "headers": dict(record.headers),
            },
            session=session,
        )

    async def take(self, session: AsyncClientSession, key: str) -> list[Record]:
        """The records waiting for ``key``, oldest first; they leave the parking."""
        await self._touch(session, key)
        docs = (
            await self.collection.find({"key": key}, session=session).sort("parked_at", 1).to_list()
        )
        if docs:
            await self.collection.delete_many(
                {"_id": {"$in": [d["_id"] for d in docs]}}, session=session
            )
        return [_parked_record(d) for d in docs]

    async def expire(
        self, broker: KafkaBroker, service: str, ttl: timedelta, limit: int = 500
    ) -> int:
        """Dead-letter what waited longer than ``ttl``; returns how many. The DLQ entry is
        written before the record leaves the parking: a crash between the two writes it
        twice (a replay of the second finds the first's inbox claim), never loses it."""
        async with self._expiring:  # else both would dead-letter the same record
            return await self._expire(broker, service, ttl, limit)

    async def _expire(self, broker: KafkaBroker, service: str, ttl: timedelta, limit: int) -> int:
        self.refused_since_expiry = False
        cutoff = datetime.now(UTC) - ttl
        docs = await self.collection.find({"parked_at": {"$lte": cutoff}}).limit(limit).to_list()
        for doc in docs:
            problem = Refusal(
                doc.get("code") or "parked-expired",
                doc.get("message") or f"waited more than {ttl} for {doc['key']}",
            )
            await dead_letter(broker, _parked_record(doc), problem, service)

            release = functools.partial(self._release, doc)
            await retry_transient(functools.partial(in_transaction, self.client, release))
        if docs:
            log.warning("parked records expired to the DLQ", count=len(docs))
        return len(docs)

    async def _release(self, doc: Document, session: AsyncClientSession) -> None:
        gone = await self.collection.delete_one({"_id": doc["_id"]}, session=session)
        if gone.deleted_count:  # else what it waited for came meanwhile and took it
            await self.db.inbox.delete_one({"_id": doc["claim"]}, session=session)


def _parked_record(doc: Document) -> Record:
    return Record(
        doc["topic"],
        doc["partition"],
        doc["offset"],
        doc["record_key"],
        bytes(doc["value"]),
        doc["headers"],
    )
