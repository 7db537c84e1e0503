"""Use-cases of notifications: events in become message jobs; a dispatcher sends due jobs.

An event becomes one job per (event, participant), so a redelivery adds nothing. The
dispatcher applies quiet hours and the daily limit (deferring, never dropping), renders the
template, and tries the participant's channels in order; the outcome, `notification-sent`
or `notification-failed`, is written with the job's final state (outbox).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from faststream.kafka import KafkaBroker
from pymongo.asynchronous.client_session import AsyncClientSession

from services.notifications import domain
from services.notifications.channels import PermanentFailure, Providers, TransientFailure
from services.notifications.store import FAILED, PENDING, SENT, WAITING, NotificationStore
from services.notifications.templates import Templates
from shared.contracts import (
    CertificationExpiring,
    DeliveryProblem,
    Event,
    ExportFacilitated,
    FinancingApproved,
    FinancingDeclined,
    FinancingReferred,
    MentoringAssigned,
    NotificationFailed,
    NotificationSent,
    ParticipantRegistered,
    ProductCertificationLapsed,
    ProductCertified,
    ProductCurationRejected,
    ProductListed,
    TrainingCompleted,
    TrainingEnrolled,
    TrainingNotCompleted,
)
from shared.envelope import Envelope, OutgoingEvent
from shared.kafka import DeadLetter, Record, dead_letter, read_event
from shared.logging import get_logger
from shared.mongo import Document, Outbox, in_transaction
from shared.retry import retry_transient
from shared.settings import ServiceSettings

log = get_logger(__name__)

# Every participant-facing event; a new one is a template file plus a line here.
CONSUMES: tuple[type[Event], ...] = (
    ParticipantRegistered,
    TrainingEnrolled,
    TrainingCompleted,
    TrainingNotCompleted,
    MentoringAssigned,
    ProductCertified,
    ProductCertificationLapsed,
    CertificationExpiring,
    ProductCurationRejected,
    ProductListed,
    ExportFacilitated,
    FinancingReferred,
    FinancingApproved,
    FinancingDeclined,
)
PRODUCES: tuple[type[Event], ...] = (NotificationSent, NotificationFailed)
_BY_TYPE = {event.ce_type(): event for event in CONSUMES}


@dataclass(frozen=True)
class Rules:
    daily_limit: int
    quiet_start_hour: int
    quiet_end_hour: int
    contact_wait: timedelta


@dataclass(frozen=True)
class Deps:
    settings: ServiceSettings
    broker: KafkaBroker
    store: NotificationStore
    outbox: Outbox
    templates: Templates
    providers: Providers
    rules: Rules
    clock: Callable[[], datetime]


def read_fact(record: Record) -> tuple[Envelope, Event]:
    """Events of our own services, read as JSON types (not strictly)."""
    return read_event(record, _BY_TYPE, strict=False)


async def _accept(deps: Deps, envelope: Envelope, fact: Event) -> None:
    store, now = deps.store, deps.clock()
    pid: str = getattr(fact, "participant_id")  # noqa: B009 - every consumed event has it
    if isinstance(fact, ParticipantRegistered):
        await store.save_contact(
            pid,
            {
                "display_name": fact.display_name,
                "phone": fact.contact.phone,
                "email": fact.contact.email,
            },
        )
        released = await store.release_waiting(pid, now)
        if released:
            log.info("contact arrived; waiting messages released", participant_id=pid)
    known = await store.contact(pid) is not None
    await store.add_job(
        {
            "_id": f"{envelope.id}:{pid}",
            "participant_id": pid,
            "template": fact.name,
            "data": fact.model_dump(mode="json"),
            "cause": envelope.headers(),
            "status": PENDING if known else WAITING,
            "not_before": now,
            "wait_until": now + deps.rules.contact_wait,
            "created_at": now,
        }
    )


async def handle_events(records: list[Record], deps: Deps) -> None:
    """Turn a batch of participant-facing events into message jobs; then send what is due."""
    for record in records:
        try:
            envelope, fact = read_fact(record)

            async def accept(e: Envelope = envelope, f: Event = fact) -> None:
                await _accept(deps, e, f)

            await retry_transient(accept)
        except DeadLetter as exc:
            await dead_letter(deps.broker, record, exc, deps.settings.service_name)
    await dispatch_due(deps)


def _outcome_event(deps: Deps, job: Document, data: Event, now: datetime) -> OutgoingEvent:
    settings, pid = deps.settings, job["participant_id"]
    return OutgoingEvent.caused_by(
        Envelope.from_headers(job["cause"]),
        data,
        topic=settings.topic(data.name),
        key=pid,
        source=settings.service_name,
        subject=pid,
        time=now,
    )


async def _finish(
    deps: Deps, job: Document, fields: dict[str, object], data: Event
) -> OutgoingEvent:
    event = _outcome_event(deps, job, data, deps.clock())

    async def work(session: AsyncClientSession) -> None:
        await deps.store.finish(session, job["_id"], fields)
        await deps.outbox.add(session, [event])

    await retry_transient(lambda: in_transaction(deps.store.client, work))
    return event


async def _send(deps: Deps, job: Document) -> OutgoingEvent | None:
    store, rules, now, pid = deps.store, deps.rules, deps.clock(), job["participant_id"]
    contact = await store.contact(pid)
    if contact is None:  # cannot happen for a pending job; keep it waiting all the same
        await store.reschedule(job["_id"], now + timedelta(minutes=1))
        return None
    start, end = domain.day_window(now)
    later = domain.defer_until(
        now,
        await store.sent_between(pid, start, end),
        rules.daily_limit,
        rules.quiet_start_hour,
        rules.quiet_end_hour,
    )
    if later is not None:
        await store.reschedule(job["_id"], later)
        log.info("message deferred", participant_id=pid, until=later.isoformat())
        return None
    subject, body = deps.templates.render(job["template"], contact["display_name"], job["data"])
    problems: list[DeliveryProblem] = []
    for channel in domain.channels_for(contact.get("phone"), contact.get("email")):
        to = contact["email"] if channel == "email" else contact["phone"]
        try:
            message_id = await deps.providers.send(channel, to, subject, body, job["_id"])
        except PermanentFailure as exc:
            problems.append(
                DeliveryProblem(code="provider-rejected", channel=channel, message=str(exc))
            )
            continue
        except TransientFailure as exc:
            problems.append(
                DeliveryProblem(
                    code="provider-unavailable", channel=channel, message=f"{exc} (after retries)"
                )
            )
            continue
        sent = NotificationSent(
            participant_id=pid,
            channel=channel,
            template=job["template"],
            provider_message_id=message_id,
            cause_event_id=job["cause"]["ce_id"],
        )
        fields = {
            "status": SENT,
            "channel": channel,
            "provider_message_id": message_id,
            "sent_at": now,
            "problems": [p.model_dump() for p in problems],
        }
        return await _finish(deps, job, fields, sent)
    if not problems:
        problems.append(
            DeliveryProblem(
                code="no-channel", channel=None, message="the contact has neither phone nor e-mail"
            )
        )
    return await _fail(deps, job, problems)


async def _fail(deps: Deps, job: Document, problems: list[DeliveryProblem]) -> OutgoingEvent:
    failed = NotificationFailed(
        participant_id=job["participant_id"],
        template=job["template"],
        cause_event_id=job["cause"]["ce_id"],
        reasons=problems,
    )
    fields = {
        "status": FAILED,
        "failed_at": deps.clock(),
        "problems": [p.model_dump() for p in problems],
    }
    return await _finish(deps, job, fields, failed)


async def dispatch_due(deps: Deps, limit: int = 200) -> int:
    """Send every job that is due (and give up on those that waited too long for a contact)."""
    store, now = deps.store, deps.clock()
    events: list[OutgoingEvent] = []
    for job in await store.expired_waiting(now):
        if await store.claim(job["_id"], from_status=WAITING) is not None:
            reason = DeliveryProblem(
                code="no-contact", channel=None, message="no participant-registered arrived in time"
            )
            events.append(await _fail(deps, job, [reason]))
    by_participant: dict[str, list[Document]] = {}
    for job in await store.due(now, limit):
        by_participant.setdefault(job["participant_id"], []).append(job)

    async def in_turn(jobs: list[Document]) -> None:
        """One participant's jobs one after another (the daily limit counts them)."""
        for job in jobs:
            claimed = await store.claim(job["_id"])
            if claimed is not None and (outcome := await _send(deps, claimed)) is not None:
                events.append(outcome)

    # Participants concurrently: a provider's round trip no longer paces the whole queue.
    await asyncio.gather(*(in_turn(jobs) for jobs in by_participant.values()))
    if events:
        await retry_transient(lambda: deps.outbox.publish(events))
    return len(events)


def system_clock() -> datetime:
    return datetime.now(UTC)
