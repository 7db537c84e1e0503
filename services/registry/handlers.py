"""Use-cases of the registry: a submission in, exactly one outcome event out.

Exactly one per ``submission_id``, however often it is delivered: the submission id is
claimed in the inbox, and the participant (if any) and the outcome event are written to the
outbox in the same transaction. Only then is the event published and the offset committed.

A consumed batch is decided in one transaction with a few bulk reads and writes, not a
round trip per record; a record the batch cannot be decided with is retried alone and, if it
still fails, dead-lettered alone.
"""

from __future__ import annotations

import uuid
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
from shared.contracts import (
    Event,
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
from shared.mongo import Outbox, claim_many, transact
from shared.retry import retry_transient
from shared.settings import ServiceSettings
from shared.tracing import processing

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
    envelope: Envelope
    submission_id: str
    values: dict[str, Any]
    reasons: list[Reason]


def read_submission(record: Record, received: datetime) -> Submission:
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
    return Submission(envelope, submission_id, values, reasons)


def _event(
    deps: Deps, data: Event, *, key: str, subject: str | None, cause: Envelope, now: datetime
) -> OutgoingEvent:
    settings = deps.settings
    return OutgoingEvent.caused_by(
        cause,
        data,
        topic=settings.topic(data.name),
        key=key,
        source=settings.service_name,
        subject=subject,
        time=now,
    )


async def _decide(
    deps: Deps, subs: list[Submission], session: AsyncClientSession
) -> list[OutgoingEvent]:
    """One transaction: claim the submissions, register or reject each, queue the outcomes."""
    by_key: dict[str, Submission] = {}
    for sub in subs:  # a submission delivered twice in one batch is decided once
        by_key.setdefault(f"{RegistrationSubmitted.name}:{sub.submission_id}", sub)
    claimed = await claim_many(deps.store.db, session, list(by_key))
    todo = [sub for key, sub in by_key.items() if key in claimed]  # others: answered before
    vault = deps.store.vault
    hashes = {
        s.submission_id: vault.lookup_hash(s.values["nik"]) for s in todo if "nik" in s.values
    }
    # Keyed by the current hash key's hash, found under any key of the ring (a roll of the
    # hash key loses no duplicate).
    niks = {s.values["nik"] for s in todo if "nik" in s.values}
    registered_by_hash = await deps.store.participants_by_nik(session, niks)
    now = datetime.now(UTC)
    events: list[OutgoingEvent] = []
    participants: list[dict[str, Any]] = []
    rejections: list[dict[str, Any]] = []
    submitted_topic = deps.settings.topic(RegistrationSubmitted.name)
    for sub in todo:
        with processing(sub.envelope, submitted_topic, None):
            reasons = list(sub.reasons)
            nik_hash = hashes.get(sub.submission_id)
            existing = registered_by_hash.get(nik_hash) if nik_hash else None
            if existing is not None:
                reasons.append(domain.ALREADY_REGISTERED)
            if reasons:
                # Whose NIK it is stays here, for ops (GET /submissions/{id}); the event
                # goes back to the submitter's system, which must not learn it.
                rejected = RegistrationRejected(
                    submission_id=sub.submission_id, rejected_at=now, reasons=reasons
                )
                rejections.append(
                    {
                        "_id": sub.submission_id,
                        "rejected_at": now,
                        "reasons": [r.model_dump(mode="json") for r in reasons],
                        "existing_participant_id": existing,
                    }
                )
                events.append(
                    _event(
                        deps,
                        rejected,
                        key=sub.submission_id,
                        subject=None,
                        cause=sub.envelope,
                        now=now,
                    )
                )
                continue
            registered, contact, participant = _register(sub, now)
            assert nik_hash is not None  # a valid submission has a NIK
            registered_by_hash[nik_hash] = registered.participant_id
            participants.append(participant)
            pid = registered.participant_id
            events += [  # the contact first: notifications has it before it greets
                _event(deps, contact, key=pid, subject=pid, cause=sub.envelope, now=now),
                _event(deps, registered, key=pid, subject=pid, cause=sub.envelope, now=now),
            ]
    await deps.store.insert_participants(session, participants)
    await deps.store.record_rejections(session, rejections)
    await deps.store.start_journeys(
        session,
        [
            {
                "_id": p["_id"],
                "registered_at": p["registered_business_at"],
                "profile": {
                    "city": p["city"],
                    "kecamatan": p["kecamatan"],
                    "sector": p["sector"],
                    "has_business": p["has_business"],
                    "registered_month": p["registered_business_at"]
                    .astimezone(JAKARTA)
                    .strftime("%Y-%m"),
                },
            }
            for p in participants
        ],
    )
    await deps.outbox.add(session, events)
    return events


def _register(
    sub: Submission, now: datetime
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
        "registered_business_at": sub.envelope.occurred_at,
        "full_name": v["full_name"],
        "birth_date": v["birth_date"].isoformat(),
        "business_name": v["business_name"],
        "nib": v["nib"],
        "channel": v["channel"],
        "nik": v["nik"],  # the store keeps only its hash and ciphertext
        "kk": v["kk"],
    }
    return registered, contact, participant


async def decide(deps: Deps, subs: list[Submission]) -> list[OutgoingEvent]:
    """Store the outcomes. Two handlers racing on one submission or one NIK: the loser's
    transaction aborts on the unique index, and deciding again answers accordingly."""
    return await transact(deps.store.client, lambda session: _decide(deps, subs, session))


async def handle_submissions(records: list[Record], deps: Deps) -> None:
    """Answer a batch of ``registration-submitted`` records, then publish the outcomes.

    Returning is what lets the framework commit the batch's offsets. Outages are waited out
    (nothing is acknowledged meanwhile); a record that cannot be read goes to the DLQ here,
    one that cannot be decided even on its own goes there through the kernel's failure path,
    so it neither crashes the service nor blocks the partition, and an operator can replay
    it once the cause is fixed.
    """
    received = datetime.now(UTC)
    subs = await readable(
        records, lambda r: read_submission(r, received), deps.broker, deps.settings.service_name
    )
    if not subs:
        return
    # A bug that trips on one record escapes to the kernel's one failure path
    # (shared.service.consume), which decides the records one by one and dead-letters it.
    events = await decide(deps, [sub for _, sub in subs])
    if events:
        await retry_transient(lambda: deps.outbox.publish(events))
    for event in events:  # one line per answer costs a tenth of the throughput: DEBUG
        log.debug(
            "submission answered",
            event_id=event.envelope.id,
            correlation_id=event.envelope.correlation_id,
            outcome=event.envelope.type,
            participant_id=event.envelope.subject,
        )
    log.info(
        "batch answered",
        records=len(records),
        outcomes=len(events),
        answered_before=len(subs) - len(events),
        dead_lettered=len(records) - len(subs),
    )


# The other services' events that move a participant along the journey, or add to it.
JOURNEY_EVENTS = tuple(
    e
    for e in consumed_by("registry")
    if e.name in journey.STAGE_OF_EVENT or e.name == journey.CLASS_EVENT
)
_JOURNEY_BY_TYPE = {event.ce_type(): event for event in JOURNEY_EVENTS}


async def handle_batch(records: list[Record], deps: Deps) -> None:
    """Submissions are answered; erasure requests, confirmations and withdrawals of
    consent decided (services.registry.erasure); the other services' events update the
    journeys."""
    submitted = deps.settings.topic(RegistrationSubmitted.name)
    pdp = {deps.settings.topic(e.name) for e in erasure.EVENTS}
    await handle_submissions([r for r in records if r.topic == submitted], deps)
    await erasure.handle([r for r in records if r.topic in pdp], deps)
    await record_journeys([r for r in records if r.topic not in pdp | {submitted}], deps)


async def record_journeys(records: list[Record], deps: Deps) -> None:
    """Each event's part of the journey at the event's business time, in one merged update
    per participant for the batch; the first time a stage is reached wins and what an event
    adds is added once, so redelivered or replayed events change nothing."""

    def read(record: Record) -> journey.Fact:
        envelope, event = read_event(record, _JOURNEY_BY_TYPE, strict=False)
        return journey.fact_of(event, envelope.id, envelope.occurred_at)

    facts = await readable(records, read, deps.broker, deps.settings.service_name)
    updates = journey.merged_updates(fact for _, fact in facts)
    await retry_transient(lambda: deps.store.update_journeys(updates))
