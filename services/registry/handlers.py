"""Use-cases of the registry: a submission in, exactly one outcome event out.

Exactly one per ``submission_id``, however often it is delivered: the submission id is
claimed in the inbox, and the participant (if any) and the outcome event are written to the
outbox in the same transaction. Only then is the event published and the offset committed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from faststream.kafka import KafkaBroker
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from services.registry import domain
from services.registry.store import RegistryStore
from shared.contracts import (
    Contact,
    Event,
    ParticipantRegistered,
    Reason,
    RegistrationRejected,
    RegistrationSubmitted,
    validate_fields,
)
from shared.envelope import Envelope, EnvelopeError, OutgoingEvent
from shared.kafka import Record, send_to_dlq
from shared.logging import get_logger
from shared.mongo import Outbox, claim, retry_transient
from shared.settings import ServiceSettings

log = get_logger(__name__)
JAKARTA = ZoneInfo("Asia/Jakarta")


class Unreadable(Exception):
    """A record no rule can even be applied to; it goes to the dead-letter queue."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


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


def read_submission(record: Record) -> Submission:
    """Parse and check a record; raise :class:`Unreadable` when it cannot be answered at all."""
    try:
        envelope = Envelope.from_headers(record.headers)
    except EnvelopeError as exc:
        raise Unreadable("invalid-envelope", str(exc)) from None
    if envelope.type != RegistrationSubmitted.ce_type():
        raise Unreadable("unknown-event-type", f"ce_type {envelope.type!r} is not handled here")
    try:
        raw = json.loads(record.value)
    except ValueError as exc:
        raise Unreadable("invalid-json", f"value is not JSON: {exc.__class__.__name__}") from None
    if not isinstance(raw, dict):
        raise Unreadable("invalid-json", "value is not a JSON object")
    submission_id = raw.get("submission_id")
    if not isinstance(submission_id, str) or not submission_id:
        raise Unreadable("missing-submission-id", "no submission_id string in the value")
    values, errors = validate_fields(RegistrationSubmitted, raw)
    today = envelope.time.astimezone(JAKARTA).date()
    reasons = domain.schema_reasons(errors) + domain.assess(values, today)
    return Submission(envelope, submission_id, values, reasons)


def _event(
    deps: Deps, data: Event, *, key: str, subject: str | None, cause: Envelope, now: datetime
) -> OutgoingEvent:
    envelope = cause.caused(
        type=data.ce_type(), source=deps.settings.service_name, subject=subject, time=now
    )
    return OutgoingEvent.of(data, topic=deps.settings.topic(data.name), key=key, envelope=envelope)


async def _decide(deps: Deps, sub: Submission, session: AsyncClientSession) -> list[OutgoingEvent]:
    """One transaction: claim the submission, register or reject, and queue the outcome."""
    if not await claim(deps.store.db, session, f"registration-submitted:{sub.submission_id}"):
        return []  # answered before: a redelivery or a resend
    now = datetime.now(UTC)
    reasons = list(sub.reasons)
    existing = None
    if "nik" in sub.values:
        existing = await deps.store.participant_by_nik(session, sub.values["nik"])
        if existing is not None:
            reasons.append(domain.ALREADY_REGISTERED)
    if reasons:
        rejected = RegistrationRejected(
            submission_id=sub.submission_id,
            rejected_at=now,
            reasons=reasons,
            participant_id=existing,
        )
        events = [
            _event(deps, rejected, key=sub.submission_id, subject=None, cause=sub.envelope, now=now)
        ]
    else:
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
            kelurahan=v["kelurahan"],
            sector=v["sector"],
            has_business=v["has_business"],
            gender=v["gender"],
            birth_year=v["birth_date"].year,
            display_name=domain.first_name(v["full_name"]),
            contact=Contact(phone=phone, email=v["email"]),
        )
        profile = registered.model_dump(mode="json", exclude={"participant_id"})
        await deps.store.insert_participant(
            session,
            {
                "_id": participant_id,
                **profile,
                "registered_at": now,
                "full_name": v["full_name"],
                "birth_date": v["birth_date"].isoformat(),
                "business_name": v["business_name"],
                "nib": v["nib"],
                "channel": v["channel"],
            },
            nik=v["nik"],
            kk=v["kk"],
        )
        events = [
            _event(
                deps,
                registered,
                key=participant_id,
                subject=participant_id,
                cause=sub.envelope,
                now=now,
            )
        ]
    await deps.outbox.add(session, events)
    return events


async def decide(deps: Deps, sub: Submission) -> list[OutgoingEvent]:
    """Store the outcome, waiting out outages. A race lost on a unique key (the same
    submission claimed, or the same NIK registered, by a concurrent handler) aborts the
    transaction; deciding again then sees the winner's write and answers accordingly."""
    while True:
        try:
            return await retry_transient(
                lambda: deps.store.in_transaction(lambda session: _decide(deps, sub, session))
            )
        except DuplicateKeyError:
            log.info("lost a race on a unique key; deciding again")


async def handle_submission(record: Record, deps: Deps) -> None:
    """Answer one ``registration-submitted`` record: an outcome event, or a DLQ entry.

    Outages are waited out (the record is not acknowledged meanwhile); anything else that
    goes wrong with this one record sends it to the DLQ, so it can neither crash the service
    nor block the partition, and an operator can replay it once the cause is fixed.
    """
    try:
        sub = read_submission(record)
        events = await decide(deps, sub)
        if events:
            await retry_transient(lambda: deps.outbox.publish(events))
    except Unreadable as exc:
        await _dead_letter(deps, record, exc.code, str(exc))
        return
    except Exception as exc:
        log.exception("unexpected failure; record sent to the DLQ", offset=record.offset)
        await _dead_letter(deps, record, type(exc).__name__, str(exc))
        return
    log.info(
        "submission answered" if events else "submission already answered",
        event_id=sub.envelope.id,
        correlation_id=sub.envelope.correlation_id or sub.envelope.id,
        outcome=events[0].envelope.type if events else None,
        participant_id=events[0].envelope.subject if events else None,
    )


async def _dead_letter(deps: Deps, record: Record, code: str, message: str) -> None:
    await retry_transient(
        lambda: send_to_dlq(
            deps.broker,
            record,
            error_type=code,
            error_message=message,
            service=deps.settings.service_name,
        )
    )
