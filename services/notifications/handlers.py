"""Use-cases of notifications: events in become message jobs; a dispatcher sends due jobs.

An event becomes one job per (event, participant), so a redelivery adds nothing. The
dispatcher applies quiet hours and the daily limit (deferring, never dropping), renders the
template, and tries the participant's channels in order; the outcome, `notification-sent`
or `notification-failed`, is written with the job's final state (outbox).

Exactly one message per job, whatever crashes, rests on two things:

- A round *leases* the jobs it takes (store.py): no other dispatcher, in this replica or
  another, takes them until the lease runs out, and the round keeps renewing it while it
  works. A crashed replica's jobs are taken again once its lease runs out, never sooner.
- Each outcome is committed as soon as it is known, job and outcome event in one
  transaction that holds only while the round still holds the job; then it is published.
  Outcomes known while a commit is under way gather and commit together next (group
  commit: one transaction for as many sends as finished meanwhile), and a sender goes on
  to the participant's next message only once its outcome has committed. A crash can only
  cut short the sends in flight and the group committing, which the next holder sends
  again with the same idempotency key (the provider's de-duplication covers those; SMTP
  has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from faststream.kafka import KafkaBroker
from pymongo.asynchronous.client_session import AsyncClientSession

from services.notifications import domain
from services.notifications.channels import PermanentFailure, Providers, TransientFailure
from services.notifications.store import (
    CANCELLED,
    FAILED,
    SENDING,
    SENT,
    WAITING,
    Lease,
    NotificationStore,
)
from services.notifications.templates import Templates
from shared.contracts import (
    ConsentWithdrawn,
    DeliveryProblem,
    Event,
    NotificationFailed,
    NotificationSent,
    ParticipantContact,
    ParticipantDataErased,
    ParticipantErasureRequested,
    ParticipantEvent,
    consumed_by,
    is_plain,
    produced_by,
)
from shared.envelope import Envelope, OutgoingEvent
from shared.kafka import Record, read_event, readable
from shared.logging import get_logger
from shared.mongo import Document, Outbox, claim_many, in_transaction, inbox_key, transact
from shared.retry import is_transient, retry_transient
from shared.settings import ServiceSettings
from shared.tracing import processing

log = get_logger(__name__)

# Every participant-facing event; a new one is a template file plus a line here.
CONSUMES = consumed_by("notifications")  # the catalogue says who reads what
PRODUCES = produced_by("notifications")
_BY_TYPE = {event.ce_type(): event for event in CONSUMES}
# The events that become a message (a template each); a contact is kept, not told, and a
# withdrawal of consent or an erasure request stops the participant's messages.
STOPS = (ParticipantErasureRequested, ConsentWithdrawn)
MESSAGES = {event.name: event for event in CONSUMES if event not in (ParticipantContact, *STOPS)}

# A round renews its lease every quarter of the lease's length. It starts a channel's send
# only while the lease it last wrote outlasts that send's worst case, so the lease must be
# longer than the worst case by at least a renewal interval (NotificationSettings checks).
RENEW_FRACTION = 0.25
# How long a round's commits wait for the previous group's publish (milliseconds, normally).
PUBLISH_WAIT_S = 1.0
NO_CONTACT = DeliveryProblem(
    code="no-contact", channel=None, message="no participant-contact arrived in time"
)


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
    lease: timedelta
    instance: str  # this replica's name, as the owner of the leases it takes


def read_fact(record: Record) -> tuple[Envelope, Event]:
    """Events of our own services, read as JSON types (not strictly)."""
    return read_event(record, _BY_TYPE, strict=False)


def forgotten(record: Record, contact_topic: str) -> str | None:
    """The participant whose contact a tombstone forgets, if ``record`` is one: a record on
    ``participant-contact`` keyed by a participant id, with no value (Record.value is b""
    for a null value), and no ce_source but the topic's producer's. Only there: an empty
    record on any other topic (or this one without a usable key) still goes to the DLQ."""
    if record.topic != contact_topic or record.value or not record.key:
        return None
    source = record.headers.get("ce_source")
    if source is not None and source not in ParticipantContact.producers:
        return None
    try:
        participant_id = record.key.decode()
    except UnicodeDecodeError:
        return None
    return participant_id if len(participant_id) <= 100 and is_plain(participant_id) else None


async def handle_events(records: list[Record], deps: Deps) -> None:
    """Turn a batch of participant-facing events into message jobs (a few bulk writes for the
    whole batch); then send what is due. Withdrawals of consent and erasures are applied
    first, so whatever else the batch holds for the same participant is held to them."""
    store, settings, now = deps.store, deps.settings, deps.clock()
    contact_topic = settings.topic(ParticipantContact.name)
    tombstones = {id(r): pid for r in records if (pid := forgotten(r, contact_topic))}
    others = [r for r in records if id(r) not in tombstones]
    read = {  # by the record's identity: a Record (its headers a dict) is not hashable
        id(record): fact
        for record, fact in await readable(others, read_fact, deps.broker, settings.service_name)
    }
    latest: dict[str, dict[str, Any] | None] = {}  # a contact, or None: forget it
    for record in records:  # in order: the latest of each participant's counts (per key)
        if id(record) in tombstones:
            latest[tombstones[id(record)]] = None
        elif id(record) in read and isinstance(fact := read[id(record)][1], ParticipantContact):
            latest[fact.participant_id] = {
                "display_name": fact.display_name,
                "phone": fact.phone,
                "email": fact.email,
            }
    facts = list(read.values())
    await _stop(deps, [(e, f) for e, f in facts if isinstance(f, STOPS)])
    facts = [(envelope, fact) for envelope, fact in facts if fact.name in MESSAGES]

    async def accept() -> None:
        markers = await store.markers_of([*latest, *(_participant(f) for _, f in facts)])
        erased = {pid for pid, marker in markers.items() if domain.erased(marker)}
        stopped = {pid for pid, marker in markers.items() if domain.stopped(marker)}
        forget = [pid for pid, c in latest.items() if c is None or pid in erased]
        contacts = {pid: c for pid, c in latest.items() if c is not None and pid not in erased}
        if forget and (gone := await store.forget_contacts(forget)):
            log.info("contacts forgotten", count=gone)
        # Contacts first, so that this batch's own messages to them are pending at once.
        await store.save_contacts(contacts)
        if contacts and (released := await store.release_waiting(contacts, now)):
            log.info("contacts arrived; waiting messages released", count=released)
        known = await store.contacts_of(_participant(fact) for _, fact in facts)

        # A message that can go now is inserted leased to the round that sends it next,
        # as if claimed (no second write to claim it); the lease is fresh at each attempt.
        lease = round_.renewed()

        def status(pid: str) -> dict[str, Any]:
            if pid in stopped:
                return {"status": CANCELLED}
            if pid not in known:
                return {"status": WAITING}
            return {
                "status": SENDING,
                "lease_owner": lease.owner,
                "lease_token": lease.token,
                "lease_until": lease.until,
            }

        jobs = [
            {
                "_id": f"{envelope.id}:{_participant(fact)}",
                "participant_id": _participant(fact),
                "template": fact.name,
                "data": {} if _participant(fact) in erased else fact.model_dump(mode="json"),
                "cause": envelope.headers(),
                **status(_participant(fact)),
                "not_before": now,
                "wait_until": now + deps.rules.contact_wait,
                "created_at": now,
            }
            for envelope, fact in facts
        ]
        inserted = await store.insert_new(jobs)
        # What the round holds: those inserted now (as built: not read back), or by an
        # earlier attempt of this batch (same token), read only if an insert was refused; a
        # redelivered event's job, already there, is not among them.
        sending = [job for job in inserted if job["status"] == SENDING]
        new = {job["_id"] for job in inserted}
        refused = [j["_id"] for j in jobs if j["status"] == SENDING and j["_id"] not in new]
        taken[:] = [*sending, *await store.held(lease, refused)]
        ready.update((pid, known[pid]) for pid in {job["participant_id"] for job in taken})

    round_, taken, ready = _Round(deps), list[Document](), dict[str, Document]()
    await retry_transient(accept)
    # The envelopes of the jobs this batch inserted (not of an earlier delivery's job that
    # the round may claim with the same id: that one keeps the cause it stored).
    held = {job["_id"] for job in taken}
    causes = {
        job_id: envelope
        for envelope, fact in facts
        if (job_id := f"{envelope.id}:{_participant(fact)}") in held
    }
    try:  # the events are accepted: a failing round must not send them to the DLQ
        await dispatch_due(deps, round_, taken, causes=causes, contacts=ready)
    except Exception:
        # What it still holds is taken again when its lease runs out: released now, a job
        # whose send is still under way (another participant's task) could go out twice.
        log.exception("dispatch round failed; its jobs are taken again when its lease ends")


async def _stop(deps: Deps, facts: list[tuple[Envelope, Event]]) -> None:
    """Withdrawals of consent and erasure requests, in one transaction with their inbox
    claims and the ``participant-data-erased`` each erasure confirms (outbox). Either
    cancels the participant's unsent messages and leaves a marker that holds every later
    fact to it. An erasure also deletes the contact and strips the delivery log. A
    redelivery finds its claim; a repeated request changes nothing and confirms again with
    the same ``erased_at`` and categories (so the registry can close whichever request it
    tracks)."""
    if not facts:
        return
    store, settings = deps.store, deps.settings

    async def work(session: AsyncClientSession) -> list[OutgoingEvent]:
        keys = [inbox_key(envelope.type, envelope.id) for envelope, _ in facts]
        new = await claim_many(store.db, session, list(dict.fromkeys(keys)))
        events: list[OutgoingEvent] = []
        for key, (envelope, fact) in zip(keys, facts, strict=True):
            if key not in new:
                continue  # a redelivery, or a repeat within this batch
            new.discard(key)
            pid, at = _participant(fact), system_clock()
            marker = await store.marker(session, pid)
            await store.cancel_unsent(session, pid, at)
            if isinstance(fact, ConsentWithdrawn):
                since = domain.first_time(marker.get("consent_withdrawn_at"), at)
                await store.mark(session, pid, {"consent_withdrawn_at": since})
                continue
            erased_at = domain.first_time(marker.get("erased_at"), at)
            await store.erase(session, pid)
            await store.mark(session, pid, {"erased_at": erased_at})
            erased = ParticipantDataErased(
                participant_id=pid,
                service=settings.service_name,
                erased_at=erased_at,
                categories=list(domain.ERASED_CATEGORIES),
            )
            events.append(OutgoingEvent.about(envelope, erased, pid, deps.settings, at))
        await deps.outbox.add(session, events)
        return events

    events = await transact(store.client, work)
    await retry_transient(lambda: deps.outbox.publish(events))
    log.info("consent withdrawals and erasures applied", count=len(facts), erased=len(events))


def _participant(fact: Event) -> str:
    assert isinstance(fact, ParticipantEvent), fact.name  # every consumed event names one
    return fact.participant_id


def _outcome_event(deps: Deps, outcome: _Outcome, now: datetime) -> OutgoingEvent:
    cause = outcome.cause or Envelope.from_headers(outcome.job["cause"])
    pid = outcome.job["participant_id"]
    return OutgoingEvent.about(cause, outcome.event, pid, deps.settings, now)


@dataclass(frozen=True)
class _Outcome:
    job: Document
    fields: dict[str, object]
    event: Event
    cause: Envelope | None = None  # the job's cause, if the sender has read it already


def _failure(
    deps: Deps, job: Document, problems: list[DeliveryProblem], cause: Envelope | None = None
) -> _Outcome:
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
    return _Outcome(job, fields, failed, cause)


class _Round:
    """One dispatch round: the jobs it leased, kept leased while it works. Outcomes are
    committed as they happen, in groups: a send's outcome joins the group being gathered
    while the previous one commits (one transaction, one outbox insert, one publish for
    all), and its sender goes on once its group has committed. Only deferrals (no message
    went out) wait for the round's end. Leases are measured in real time, never the rules'
    clock (which tests move by hours)."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.lease = Lease(deps.instance, uuid.uuid4().hex, system_clock() + deps.lease)
        self.later: dict[str, datetime] = {}
        self.recorded = 0
        self._gathering: list[_Queued] = []
        self._committer: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None  # the last committed group's
        # The round's context for its committer, not the first sender's (its event, trace).
        self._context = contextvars.copy_context()

    def renewed(self) -> Lease:
        """The round's lease, from now (before it holds anything: for jobs about to be
        inserted leased to it)."""
        self.lease = Lease(self.lease.owner, self.lease.token, system_clock() + self.deps.lease)
        return self.lease

    def covers_a_send(self) -> bool:
        """Whether a channel's send started now ends, worst case, before the lease does.
        False only when renewals have failed for a while (the database is unreachable)."""
        left = (self.lease.until - system_clock()).total_seconds()
        return left > self.deps.providers.config.worst_case_s

    async def keep_leased(self) -> None:
        """Renew the lease until cancelled. A renewal that fails is logged and tried again;
        meanwhile :meth:`covers_a_send` stops new sends before the lease could run out."""
        interval = self.deps.lease.total_seconds() * RENEW_FRACTION
        while True:
            await asyncio.sleep(interval)
            until = system_clock() + self.deps.lease
            try:
                await self.deps.store.renew(self.lease.token, until)
            except Exception as exc:  # an outage, usually; sends stop before the lease ends
                log.warning("could not renew a dispatch lease", error_type=type(exc).__name__)
                continue
            self.lease = Lease(self.lease.owner, self.lease.token, until)

    async def record(self, outcomes: list[_Outcome]) -> None:
        """Commit each job's final state with its outcome event, for the jobs this round
        still holds, and return once committed (published soon after, in the same order). A
        job whose lease was lost (it ran out and another dispatcher took the job) is left to
        its new holder, which sends it again with the same idempotency key. The events are
        built here, in the sender's span, so a fault in one stays with its sender."""
        now = self.deps.clock()
        loop = asyncio.get_running_loop()
        queued = [
            _Queued(o, _outcome_event(self.deps, o, now), loop.create_future()) for o in outcomes
        ]
        self._gathering += queued
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(
                self._commit_gathered(), context=self._context.copy()
            )
        held = await asyncio.gather(*(q.done for q in queued), return_exceptions=True)
        for result in held:
            if isinstance(result, BaseException):
                raise result
        if not all(held):
            log.warning(
                "lease lost before an outcome was recorded; the job's new holder sends it",
                count=held.count(False),
            )

    async def _commit_gathered(self) -> None:
        """Commit what has gathered, then publish it, until nothing more gathers. A group
        that fails for a reason other than an outage is committed again one outcome at a
        time, so only the outcome that makes it fail fails (its sender handles that)."""
        while self._gathering:
            group, self._gathering = self._gathering, []
            try:
                committed = await self._commit(group)
            except Exception as exc:
                if len(group) == 1 or is_transient(exc):
                    for q in group:
                        _settle(q.done, exc)
                    continue
                committed = []
                for q in group:
                    try:
                        committed += await self._commit([q])
                    except Exception as alone:
                        _settle(q.done, alone)
            if committed:
                # Published in commit order, each group after the one before. The next group
                # gathers while this one is published too, but for a while only: while the
                # broker does not answer, the outcomes of the sends made meanwhile commit all
                # the same (a crash would make those sends again).
                self._publisher = asyncio.create_task(self._publish(committed, self._publisher))
                await asyncio.wait([self._publisher], timeout=PUBLISH_WAIT_S)

    async def _publish(self, events: list[OutgoingEvent], after: asyncio.Task[None] | None) -> None:
        if after is not None:
            await asyncio.wait([after])
        try:
            await retry_transient(functools.partial(self.deps.outbox.publish, events))
        except Exception:  # committed, so not lost: the outbox relay sends them
            log.exception("publishing recorded outcomes failed; the relay sends them")

    async def _commit(self, group: list[_Queued]) -> list[OutgoingEvent]:
        deps = self.deps
        fields = {q.outcome.job["_id"]: q.outcome.fields for q in group}

        async def work(session: AsyncClientSession) -> list[OutgoingEvent]:
            held = await deps.store.finish(session, self.lease.token, fields)
            mine = [q.event for q in group if q.outcome.job["_id"] in held]
            await deps.outbox.add(session, mine)
            return mine

        mine = await retry_transient(lambda: in_transaction(deps.store.client, work))
        ids = {event.envelope.id for event in mine}
        for q in group:
            _settle(q.done, q.event.envelope.id in ids)
        self.recorded += len(mine)
        return mine

    async def close(self) -> None:
        """Wait for the last group to commit and be published."""
        while self._committer is not None and not self._committer.done():
            await asyncio.shield(self._committer)
        if self._publisher is not None:
            await asyncio.shield(self._publisher)


def _settle(done: asyncio.Future[bool], result: bool | Exception) -> None:
    """Tell a sender its outcome, unless it no longer waits (cancelled, e.g. by a shutdown):
    its outcome is committed all the same, and the other outcomes of its group are told."""
    if done.done():
        return
    if isinstance(result, Exception):
        done.set_exception(result)
    else:
        done.set_result(result)


@dataclass(frozen=True)
class _Queued:
    outcome: _Outcome
    event: OutgoingEvent
    done: asyncio.Future[bool]  # True: committed; False: the lease was lost


async def _send(
    deps: Deps,
    round_: _Round,
    job: Document,
    cause: Envelope,
    contact: Document | None,
    sent_today: int,
) -> bool:
    """Send one job (or defer it) and record what happened; True if it was sent."""
    rules, now, pid = deps.rules, deps.clock(), job["participant_id"]
    if contact is None:  # e.g. taken over from a crashed round that had it waiting
        if job["wait_until"] <= now:
            await round_.record([_failure(deps, job, [NO_CONTACT], cause)])
        else:
            round_.later[job["_id"]] = now + timedelta(minutes=1)
        return False
    later = domain.defer_until(
        now, sent_today, rules.daily_limit, rules.quiet_start_hour, rules.quiet_end_hour
    )
    if later is not None:
        round_.later[job["_id"]] = later
        # DEBUG: quiet hours defer every pending message, tens of thousands of lines a night.
        log.debug("message deferred", participant_id=pid, until=later.isoformat())
        return False
    subject, body = deps.templates.render(job["template"], contact["display_name"], job["data"])
    problems: list[DeliveryProblem] = []
    for channel in domain.channels_for(contact.get("phone"), contact.get("email")):
        if not round_.covers_a_send():  # the job stays leased until the lease runs out
            log.warning("dispatch lease too close to its end to start a send; left for later")
            return False
        to = contact["email"] if channel == "email" else contact["phone"]
        try:
            accepted = await deps.providers.send(channel, to, subject, body, job["_id"])
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
        if accepted.note is not None:
            log.warning("provider accepted a message with an unreadable answer", channel=channel)
            problems.append(
                DeliveryProblem(code="unreadable-answer", channel=channel, message=accepted.note)
            )
        sent = NotificationSent(
            participant_id=pid,
            channel=channel,
            template=job["template"],
            provider_message_id=accepted.message_id,
            cause_event_id=job["cause"]["ce_id"],
        )
        fields = {
            "status": SENT,
            "channel": channel,
            "provider_message_id": accepted.message_id,
            "sent_at": now,
            "problems": [p.model_dump() for p in problems],
        }
        await round_.record([_Outcome(job, fields, sent, cause)])
        return True
    if not problems:
        problems.append(
            DeliveryProblem(
                code="no-channel", channel=None, message="the contact has neither phone nor e-mail"
            )
        )
    await round_.record([_failure(deps, job, problems, cause)])
    return False


async def _failed_by(deps: Deps, round_: _Round, job: Document, exc: Exception) -> None:
    """An outage leaves the job leased: it is taken again when the lease runs out. A bug
    tripped by this job would trip again on every lease, for ever (and e-mail, which has no
    idempotency key, would go out each time): it ends the job as notification-failed with
    ``internal-error``, the traceback logged, and the job stays visible in the delivery log."""
    if is_transient(exc):
        log.warning("sending a message waits for infrastructure", error_type=type(exc).__name__)
        return
    log.error("sending a message failed; recorded as notification-failed", exc_info=exc)
    problem = DeliveryProblem(code="internal-error", channel=None, message=type(exc).__name__)
    try:
        await round_.record([_failure(deps, job, [problem])])
    except Exception:  # even the failure event cannot be made: end the job without one
        log.exception("no outcome event for the job; it ends failed without one")
        fields = {"status": FAILED, "failed_at": deps.clock(), "problems": [problem.model_dump()]}

        async def end(session: AsyncClientSession) -> set[str]:
            return await deps.store.finish(session, round_.lease.token, {job["_id"]: fields})

        await retry_transient(lambda: in_transaction(deps.store.client, end))


async def dispatch_due(
    deps: Deps,
    round_: _Round | None = None,
    taken: list[Document] | None = None,
    limit: int = 500,
    causes: dict[str, Envelope] | None = None,
    contacts: dict[str, Document] | None = None,
) -> int:
    """Send every job that is due (and give up on those that waited too long for a contact);
    returns how many outcomes this round recorded. ``round_`` and ``taken``: a round that
    already holds jobs (a consumed batch's, inserted leased to it), with what the batch read
    already: ``causes`` (their events' envelopes, by job id) and ``contacts`` (by
    participant), not read again.

    One round: lease the due jobs (and those a crashed dispatcher left), read their contacts
    and today's counts in bulk, then send, participants concurrently and each one's messages
    in turn (oldest first; the daily limit counts them), recording outcomes as they happen.
    The deferrals are written at the end: they sent nothing, so a crash before then only
    means the jobs are looked at again when the lease runs out."""
    store, now = deps.store, deps.clock()
    round_ = round_ or _Round(deps)
    taken = taken or []
    waited_out = await retry_transient(lambda: store.claim_expired_waiting(now, round_.lease))
    if waited_out:  # no message went out for these: one transaction for them all is safe
        await round_.record([_failure(deps, job, [NO_CONTACT]) for job in waited_out])
    room = max(0, limit - len(taken))
    claimed = (
        await retry_transient(lambda: store.claim_due(now, system_clock(), round_.lease, room))
        if room
        else []
    )
    jobs = [*taken, *claimed]
    if not jobs:
        await round_.close()
        return round_.recorded
    by_participant: dict[str, list[Document]] = {}
    for job in sorted(jobs, key=lambda job: (job["not_before"], job["created_at"])):
        by_participant.setdefault(job["participant_id"], []).append(job)
    keeper = asyncio.create_task(round_.keep_leased())
    try:
        known = contacts or {}
        missing = [pid for pid in by_participant if pid not in known]
        read = await retry_transient(lambda: store.contacts_of(missing)) if missing else {}
        contacts = {**known, **read}
        causes = causes or {}
        start, end = domain.day_window(now)
        counts = await retry_transient(lambda: store.sent_between(by_participant, start, end))

        async def in_turn(pid: str, jobs: list[Document]) -> None:
            sent = counts.get(pid, 0)
            for job in jobs:
                cause = causes.get(job["_id"]) or Envelope.from_headers(job["cause"])
                with processing(cause, deps.settings.topic(job["template"]), pid, name="send"):
                    try:
                        sent += await _send(deps, round_, job, cause, contacts.get(pid), sent)
                    except Exception as exc:  # the other participants' messages still go
                        await _failed_by(deps, round_, job, exc)

        # Participants concurrently: a provider's round trip does not pace the whole queue.
        await asyncio.gather(*(in_turn(pid, jobs) for pid, jobs in by_participant.items()))
        await round_.close()
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
    await retry_transient(lambda: store.reschedule(round_.lease.token, round_.later))
    return round_.recorded


def system_clock() -> datetime:
    return datetime.now(UTC)
