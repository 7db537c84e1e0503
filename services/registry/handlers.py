"""Use-cases of the registry: a submission in, exactly one outcome event out.

Exactly one per ``submission_id``, however often it is delivered: the submission id is
claimed in the inbox, and the participant (if any) and the outcome event are written to the
outbox in the same transaction. Only then is the event published and the offset committed.

A consumed batch is decided on the kernel's machinery (:func:`shared.batch.decide_batch`),
like every service's: one transaction with a few bulk reads and writes
(:class:`Registrations`), not a round trip per record; a record that cannot be decided is
dead-lettered alone while the rest of its batch is answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from faststream.kafka import KafkaBroker
from pydantic import TypeAdapter, ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession

from services.registry import domain, erasure, journey
from services.registry.fields import validate_fields
from services.registry.store import RegistryStore
from shared.batch import Item, Outcome, decide_batch
from shared.contracts import (
    Id,
    ParticipantContact,
    ParticipantRegistered,
    Reason,
    Refusal,
    RegistrationRejected,
    RegistrationSubmitted,
    consumed_by,
)
from shared.envelope import Envelope, OutgoingEvent
from shared.kafka import (
    Record,
    read_envelope,
    read_event,
    read_object,
    readable,
)
from shared.logging import get_logger
from shared.mongo import Outbox
from shared.retry import retry_transient
from shared.settings import ServiceSettings

log = get_logger(__name__)
JAKARTA = ZoneInfo("Asia/Jakarta")
_SUBMISSION_ID: TypeAdapter[str] = TypeAdapter(Id)


@dataclass(frozen=True)
class Deps:
    settings: ServiceSettings
    broker: KafkaBroker
    store: RegistryStore
    outbox: Outbox


@dataclass(frozen=True)
class Submission:
    """What the registry reads of a submission: the fields that passed the schema, and the
    reasons seen so far to reject it (wrong fields are answered, not dead-lettered)."""

    submission_id: str
    values: dict[str, Any]
    reasons: list[Reason]

    @property
    def claim(self) -> str:
        """Its inbox claim: answered once, whichever event ids it came with."""
        return f"{RegistrationSubmitted.name}:{self.submission_id}"

    @property
    def nik(self) -> str | None:
        nik: str | None = self.values.get("nik")
        return nik


def read_submission(record: Record, received: datetime) -> tuple[Envelope, Submission]:
    """Parse and check a record; raise :class:`Refusal` when it cannot be answered at all.

    Age is judged on the day the registry ``received`` the record, never on the producer's
    ``ce_time``: a clock set ahead must not let a minor register."""
    envelope = read_envelope(record, RegistrationSubmitted)
    raw = read_object(record, RegistrationSubmitted.max_bytes)
    submission_id = raw.get("submission_id")
    if not isinstance(submission_id, str) or not submission_id:
        raise Refusal("missing-submission-id", "no submission_id string in the value")
    try:  # the answer repeats it: one that no answer can carry cannot be answered
        _SUBMISSION_ID.validate_python(submission_id, strict=True)
    except ValidationError:
        raise Refusal("invalid-submission-id", "submission_id too long or not text") from None
    values, errors = validate_fields(RegistrationSubmitted, raw)
    today = received.astimezone(JAKARTA).date()
    reasons = domain.schema_reasons(errors) + domain.assess(values, today)
    return envelope, Submission(submission_id, values, reasons)


class Registrations:
    """One transaction's working set (a :class:`shared.batch.Unit`): who holds its
    submissions' NIKs, read in one query before they are decided; the participants,
    rejections and journeys they make, written in one bulk write each after them."""

    def __init__(self, store: RegistryStore, session: AsyncClientSession) -> None:
        self.store, self.session = store, session
        self.now = datetime.now(UTC)
        # Keyed by the current hash key's hash, found under any key of the ring (a roll of
        # the hash key loses no duplicate); a NIK registered in this batch is added.
        self.owners: dict[str, str] = {}
        self.participants: list[dict[str, Any]] = []
        self.rejections: list[dict[str, Any]] = []

    async def prefetch(self, niks: Iterable[str]) -> None:
        self.owners.update(await self.store.participants_by_nik(self.session, set(niks)))

    async def flush(self) -> None:
        store, session = self.store, self.session
        await store.insert_participants(session, self.participants)
        await store.record_rejections(session, self.rejections)
        await store.start_journeys(session, [journey.opening(p) for p in self.participants])


def answer(deps: Deps, unit: Registrations, item: Item[Submission]) -> list[OutgoingEvent]:
    """Register the submission, or reject it with every reason seen: the events it causes.
    Two handlers racing on one submission or one NIK: the loser's transaction aborts on the
    unique index, and deciding again answers accordingly."""
    sub, cause, now, settings = item.event, item.envelope, unit.now, deps.settings
    nik_hash = deps.store.vault.lookup_hash(sub.nik) if sub.nik is not None else None
    existing = unit.owners.get(nik_hash) if nik_hash is not None else None
    reasons = sub.reasons if existing is None else [*sub.reasons, domain.ALREADY_REGISTERED]
    if reasons:
        # Whose NIK it is stays here, for ops (GET /submissions/{id}); the event goes back
        # to the submitter's system, which must not learn it.
        unit.rejections.append(
            {
                "_id": sub.submission_id,
                "rejected_at": now,
                "reasons": [r.model_dump(mode="json") for r in reasons],
                "existing_participant_id": existing,
            }
        )
        rejected = RegistrationRejected(
            submission_id=sub.submission_id, rejected_at=now, reasons=reasons
        )
        return [  # about a submission, not a participant: keyed by its id, no subject
            OutgoingEvent.caused_by(
                cause,
                rejected,
                topic=settings.topic(rejected.name),
                key=sub.submission_id,
                source=settings.service_name,
                subject=None,
                time=now,
            )
        ]
    assert nik_hash is not None  # a valid submission has a NIK
    registered, contact, participant = _register(sub, cause, now)
    pid = registered.participant_id
    unit.owners[nik_hash] = pid
    unit.participants.append(participant)
    return [  # the contact first: notifications has it before it greets
        OutgoingEvent.about(cause, contact, pid, settings, now),
        OutgoingEvent.about(cause, registered, pid, settings, now),
    ]


def _register(
    sub: Submission, cause: Envelope, now: datetime
) -> tuple[ParticipantRegistered, ParticipantContact, dict[str, Any]]:
    """The event of a new participant (nothing personal in it), their contact (for
    notifications only), and the document the store keeps of them."""
    v = sub.values
    participant_id = str(uuid.uuid4())
    phone = domain.normalise_phone(v["phone"])
    assert phone is not None  # assess() rejected it otherwise
    registered = ParticipantRegistered(
        participant_id=participant_id,
        submission_id=sub.submission_id,
        registered_at=now,
        city=v["city"],
        kecamatan=v["kecamatan"],
        sector=v["sector"],
        has_business=v["has_business"],
        gender=v["gender"],
        birth_year=v["birth_date"].year,
    )
    contact = ParticipantContact(
        participant_id=participant_id,
        display_name=domain.first_name(v["full_name"]),
        phone=phone,
        email=v["email"],
        updated_at=now,
    )
    participant = {
        "_id": participant_id,
        **registered.model_dump(mode="json", exclude={"participant_id"}),
        "kelurahan": v["kelurahan"],
        "display_name": contact.display_name,
        "contact": {"phone": phone, "email": v["email"]},
        "registered_at": now,
        # When the submission happened in the programme's calendar (its business time):
        # the journey's registration and month (shared.envelope).
        "registered_business_at": cause.occurred_at,
        "full_name": v["full_name"],
        "birth_date": v["birth_date"].isoformat(),
        "business_name": v["business_name"],
        "nib": v["nib"],
        "channel": v["channel"],
        "nik": v["nik"],  # the store keeps only its hash and ciphertext
        "kk": v["kk"],
    }
    return registered, contact, participant


async def handle_submissions(records: list[Record], deps: Deps) -> None:
    """Answer a batch of ``registration-submitted`` records, then publish the outcomes.

    Returning is what lets the framework commit the batch's offsets. Outages are waited out
    (nothing is acknowledged meanwhile); a record that cannot be read, or cannot be decided
    even apart from the others, goes to the DLQ with its reason, so it neither crashes the
    service nor blocks the partition, and an operator can replay it once the cause is fixed.
    """
    received = datetime.now(UTC)

    async def decide(
        session: AsyncClientSession, unit: Registrations, item: Item[Submission]
    ) -> Outcome:
        return Outcome(answer(deps, unit, item))

    outcome = await decide_batch(
        records,
        read=lambda record: read_submission(record, received),
        begin=lambda session: Registrations(deps.store, session),
        decide=decide,
        claim=lambda item: item.event.claim,
        prefetch=lambda item: item.event.nik,
        outbox=deps.outbox,
        service=deps.settings.service_name,
    )
    for event in outcome.events:  # one line per answer costs a tenth of the throughput: DEBUG
        log.debug(
            "submission answered",
            event_id=event.envelope.id,
            correlation_id=event.envelope.correlation_id,
            outcome=event.envelope.type,
            participant_id=event.envelope.subject,
        )


# The other services' events that move a participant along the journey, or add to it.
JOURNEY_EVENTS = tuple(
    e
    for e in consumed_by("registry")
    if e.name in journey.STAGE_OF_EVENT or e.name == journey.CLASS_EVENT
)
_JOURNEY_BY_TYPE = {event.ce_type(): event for event in JOURNEY_EVENTS}


async def record_journeys(records: list[Record], deps: Deps) -> None:
    """Each event's part of the journey at the event's business time, in one merged update
    per participant for the batch; the first time a stage is reached wins and what an event
    adds is added once, so redelivered or replayed events change nothing (which is why
    these need neither an inbox claim nor a transaction)."""

    def read(record: Record) -> journey.Fact:
        envelope, event = read_event(record, _JOURNEY_BY_TYPE, strict=False)
        return journey.fact_of(event, envelope.id, envelope.occurred_at)

    facts = await readable(records, read, deps.broker, deps.settings.service_name)
    updates = journey.merged_updates(fact for _, fact in facts)
    await retry_transient(lambda: deps.store.update_journeys(updates))


Handler = Callable[[list[Record], Deps], Awaitable[None]]

# The handler of each event the registry consumes, in the order they take a batch's
# records: submissions answered; erasure requests, confirmations and withdrawals of consent
# decided (services.registry.erasure); the other services' events recorded on the journeys.
HANDLERS: Mapping[str, Handler] = {
    RegistrationSubmitted.name: handle_submissions,
    **{event.name: erasure.handle for event in erasure.EVENTS},
    **{event.name: record_journeys for event in JOURNEY_EVENTS},
}


async def handle_batch(records: list[Record], deps: Deps) -> None:
    """Each handler (:data:`HANDLERS`) gets its records of the batch, in their order; a
    record on no handler's topic goes with the journeys', which dead-letter its type."""
    handler_of = {deps.settings.topic(name): handler for name, handler in HANDLERS.items()}
    taken: dict[Handler, list[Record]] = {handler: [] for handler in HANDLERS.values()}
    for record in records:
        taken[handler_of.get(record.topic, record_journeys)].append(record)
    for handler, mine in taken.items():
        if mine:
            await handler(mine, deps)
