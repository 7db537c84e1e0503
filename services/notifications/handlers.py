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
from shared.kafka import Record, read_event, readable
from shared.logging import get_logger
from shared.mongo import Document, Outbox, in_transaction
from shared.retry import retry_transient
from shared.settings import ServiceSettings
from shared.tracing import processing

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


async def handle_events(records: list[Record], deps: Deps) -> None:
    """Turn a batch of participant-facing events into message jobs (a few bulk writes for the
    whole batch); then send what is due."""
    store, now = deps.store, deps.clock()
    read = await readable(records, read_fact, deps.broker, deps.settings.service_name)
    facts = [fact for _, fact in read]
    contacts = {
        fact.participant_id: {
            "display_name": fact.display_name,
            "phone": fact.contact.phone,
            "email": fact.contact.email,
        }
        for _, fact in facts
        if isinstance(fact, ParticipantRegistered)
    }

    async def accept() -> None:
        # Contacts first, so that this batch's own messages to them are pending at once.
        await store.save_contacts(contacts)
        if contacts and (released := await store.release_waiting(contacts, now)):
            log.info("contacts arrived; waiting messages released", count=released)
        known = await store.contacts_of(_participant(fact) for _, fact in facts)
        await store.add_jobs(
            [
                {
                    "_id": f"{envelope.id}:{_participant(fact)}",
                    "participant_id": _participant(fact),
                    "template": fact.name,
                    "data": fact.model_dump(mode="json"),
                    "cause": envelope.headers(),
                    "status": PENDING if _participant(fact) in known else WAITING,
                    "not_before": now,
                    "wait_until": now + deps.rules.contact_wait,
                    "created_at": now,
                }
                for envelope, fact in facts
            ]
        )

    await retry_transient(accept)
    await dispatch_due(deps)


def _participant(fact: Event) -> str:
    return str(getattr(fact, "participant_id"))  # noqa: B009 - every consumed event has it


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


class _Round:
    """One dispatch round: what happened to each claimed job, written together at the end
    (every job's final state and its outcome event in one transaction)."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.finished: dict[str, dict[str, object]] = {}
        self.events: list[OutgoingEvent] = []
        self.later: dict[str, datetime] = {}

    def finish(self, job: Document, fields: dict[str, object], data: Event) -> None:
        self.finished[job["_id"]] = fields
        self.events.append(_outcome_event(self.deps, job, data, self.deps.clock()))

    def fail(self, job: Document, problems: list[DeliveryProblem]) -> None:
        failed = NotificationFailed(
            participant_id=job["participant_id"],
            template=job["template"],
            cause_event_id=job["cause"]["ce_id"],
            reasons=problems,
        )
        fields = {
            "status": FAILED,
            "failed_at": self.deps.clock(),
            "problems": [p.model_dump() for p in problems],
        }
        self.finish(job, fields, failed)

    async def commit(self) -> int:
        deps = self.deps

        async def work(session: AsyncClientSession) -> None:
            await deps.store.finish(session, self.finished)
            await deps.outbox.add(session, self.events)

        await retry_transient(lambda: deps.store.reschedule(self.later))
        if self.finished:
            await retry_transient(lambda: in_transaction(deps.store.client, work))
            await retry_transient(lambda: deps.outbox.publish(self.events))
        return len(self.events)


async def _send(
    deps: Deps, round_: _Round, job: Document, contact: Document | None, sent_today: int
) -> bool:
    """Send one job (or defer it); True if it was sent."""
    rules, now, pid = deps.rules, deps.clock(), job["participant_id"]
    if contact is None:  # cannot happen for a pending job; keep it waiting all the same
        round_.later[job["_id"]] = now + timedelta(minutes=1)
        return False
    later = domain.defer_until(
        now, sent_today, rules.daily_limit, rules.quiet_start_hour, rules.quiet_end_hour
    )
    if later is not None:
        round_.later[job["_id"]] = later
        log.info("message deferred", participant_id=pid, until=later.isoformat())
        return False
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
        round_.finish(job, fields, sent)
        return True
    if not problems:
        problems.append(
            DeliveryProblem(
                code="no-channel", channel=None, message="the contact has neither phone nor e-mail"
            )
        )
    round_.fail(job, problems)
    return False


async def dispatch_due(deps: Deps, limit: int = 500) -> int:
    """Send every job that is due (and give up on those that waited too long for a contact).

    One round: claim the due jobs, read their contacts and today's counts in bulk, send
    (participants concurrently, each one's messages in turn, since the daily limit counts
    them), then write every outcome in one transaction and publish."""
    store, now = deps.store, deps.clock()
    round_ = _Round(deps)
    no_contact = DeliveryProblem(
        code="no-contact", channel=None, message="no participant-registered arrived in time"
    )
    for job in await store.claim(await store.expired_waiting(now), from_status=WAITING):
        round_.fail(job, [no_contact])
    by_participant: dict[str, list[Document]] = {}
    for job in await store.claim(await store.due(now, limit)):
        by_participant.setdefault(job["participant_id"], []).append(job)
    if by_participant:
        contacts = await store.contacts_of(by_participant)
        start, end = domain.day_window(now)
        counts = await store.sent_between(by_participant, start, end)

        async def in_turn(pid: str, jobs: list[Document]) -> None:
            sent = counts.get(pid, 0)
            for job in jobs:
                cause = Envelope.from_headers(job["cause"])
                with processing(cause, deps.settings.topic(job["template"]), pid, name="send"):
                    sent += await _send(deps, round_, job, contacts.get(pid), sent)

        # Participants concurrently: a provider's round trip does not pace the whole queue.
        await asyncio.gather(*(in_turn(pid, jobs) for pid, jobs in by_participant.items()))
    return await round_.commit()


def system_clock() -> datetime:
    return datetime.now(UTC)
