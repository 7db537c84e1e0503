"""Deciding a consumed batch in one transaction, record by record.

A batch is claimed in the inbox, its participants' states are read in bulk, each record is
decided in order against those states in memory, and the states, the inbox claims and every
event caused are written in ONE transaction; then the events are published. That is a handful
of round trips per batch instead of several per record, with the same guarantees: a
redelivered record finds its claim and adds nothing; state and events commit together.

A record that cannot be applied (a refusal with a reason code, or a bug) must not take the
others down with it, and MongoDB has no savepoints: the transaction is aborted, the records
before it and those after it are decided again (each part in its own transaction), and it
goes to the DLQ. A batch whose writes fail (not a record's decision) is decided again record
by record, so only the record that causes the failure is dead-lettered. Outages and write
conflicts are not the records' fault: they are waited out and the batch is decided again. A
transaction the server aborts (one that outlived ``transactionLifetimeLimitSeconds`` under a
slow mongod would again, whole) is decided again in halves, in order, down to one record.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from shared.contracts import Event, ParticipantEvent, Refusal
from shared.envelope import Envelope, OutgoingEvent
from shared.kafka import Record, dead_letter, readable
from shared.logging import get_logger
from shared.mongo import AbortedByServer, Outbox, claim_many, inbox_key, transact
from shared.retry import is_transient, retry_transient
from shared.tracing import processing

log = get_logger(__name__)


class Unit(Protocol):
    """One transaction's working set (e.g. a :class:`shared.mongo.StateCache`): read in bulk
    before the batch's records are decided (what they read: by default the participants
    they name), written back in bulk after them."""

    async def prefetch(self, participant_ids: Iterable[str]) -> None: ...

    async def flush(self) -> None: ...


U = TypeVar("U", bound=Unit)
E = TypeVar("E")


@dataclass(frozen=True)
class Item(Generic[E]):
    """A record that could be read: its envelope and what was read of it (its event, or
    what a service reads itself, such as the registry's submissions)."""

    record: Record
    envelope: Envelope
    event: E

    @property
    def key(self) -> str:
        """Its inbox claim by default: its event's type and id."""
        return inbox_key(self.envelope.type, self.envelope.id)


# A record read as its event: what the services decide.
Fact = Item[Event]


@dataclass
class Outcome:
    """What deciding records caused: the events to publish."""

    events: list[OutgoingEvent] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        self.events += other.events


Decide = Callable[[AsyncClientSession, U, Item[E]], Awaitable[Outcome]]


class _Refused(Exception):
    """Aborts the batch's transaction: the fact at ``index`` could not be applied."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(f"record {index} refused: {error!r}")
        self.index, self.error = index, error


async def decide_batch(
    records: list[Record],
    *,
    read: Callable[[Record], tuple[Envelope, E]],
    begin: Callable[[AsyncClientSession], U],
    decide: Decide[U, E],
    outbox: Outbox,
    service: str,
    claim: Callable[[Item[E]], str] = lambda item: item.key,
    prefetch: Callable[[Item[E]], str | None] = lambda item: _participant(item),
) -> Outcome:
    """Decide ``records`` in order in one transaction (see the module's docstring), each
    transaction with a fresh working set from ``begin``; publish what they caused, and
    dead-letter what could not be read or applied, with its reason code when it has one (an
    expected refusal) or a logged traceback when not (a bug). A record is decided once per
    ``claim`` (by default its event's type and id); ``prefetch`` names what its decision
    reads, which the working set reads in bulk for the transaction (by default the
    participant it names). The outbox's database holds the inbox and the working set, and
    its broker takes the dead letters. Returns what was published."""
    broker, db = outbox.broker, outbox.collection.database
    facts = [Item(record, *fact) for record, fact in await readable(records, read, broker, service)]
    claims = [claim(fact) for fact in facts]
    refused: dict[int, Exception] = {}

    async def work(session: AsyncClientSession, segment: list[int]) -> Outcome:
        new = await claim_many(db, session, list(dict.fromkeys(claims[i] for i in segment)))
        unit = begin(session)
        await unit.prefetch(key for i in segment if (key := prefetch(facts[i])))
        outcome = Outcome()
        for index in segment:
            fact = facts[index]
            if claims[index] not in new:
                continue  # a redelivery, or a repeat within this batch
            new.discard(claims[index])
            try:
                with processing(fact.envelope, fact.record.topic, _participant(fact)):
                    outcome.add(await decide(session, unit, fact))
            except DuplicateKeyError:
                raise  # a race with another instance: transact() decides again
            except Exception as exc:
                if is_transient(exc):
                    raise
                raise _Refused(index, exc) from exc
        await unit.flush()
        await outbox.add(session, outcome.events)
        return outcome

    # A refusal splits its segment: what came before it and what comes after are decided
    # again, in order, each in its own transaction; so N refusals cost N more transactions.
    outcome = Outcome()
    segments = [list(range(len(facts)))] if facts else []
    while segments:
        segment = segments.pop(0)
        try:
            decided = functools.partial(work, segment=segment)
            outcome.add(await transact(db.client, decided, splittable=len(segment) > 1))
        except AbortedByServer:
            # Most often the transaction outlived the server's limit (a slow mongod): the
            # same segment would again, for ever. Its halves are decided in turn, in order.
            log.warning(
                "transaction aborted by the server; deciding it in halves", records=len(segment)
            )
            half = len(segment) // 2
            segments[:0] = [segment[:half], segment[half:]]
        except _Refused as refusal:
            refused[refusal.index] = refusal.error
            at = segment.index(refusal.index)
            segments[:0] = [part for part in (segment[:at], segment[at + 1 :]) if part]
        except Exception as exc:  # the writes failed: find the record that makes them fail
            if is_transient(exc):
                raise  # an outage: consume() waits it out and the batch is decided again
            if len(segment) == 1:
                refused[segment[0]] = exc
            else:
                segments[:0] = [[index] for index in segment]
    dead = [(facts[i].record, error) for i, error in sorted(refused.items())]
    for record, error in dead:
        if not isinstance(error, Refusal):
            log.error(
                "record could not be applied; sent to the DLQ",
                topic=record.topic,
                offset=record.offset,
                exc_info=error,
            )
        await dead_letter(broker, record, error, service)
    if outcome.events:
        await retry_transient(lambda: outbox.publish(outcome.events))
    dead_count = len(records) - len(facts) + len(refused)
    log.info("batch applied", records=len(records), events=len(outcome.events), dead=dead_count)
    return outcome


def _participant(fact: Item[Any]) -> str | None:
    """The participant the fact names, if it names one (a revocation names a certificate)."""
    return fact.event.participant_id if isinstance(fact.event, ParticipantEvent) else None
