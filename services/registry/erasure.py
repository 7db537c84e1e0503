"""Erasure and withdrawal of consent in the registry (UU 27/2022).

A ``participant-erasure-requested`` (from the portal, or from ``POST
/participants/{participant_id}/erasure`` through the registry's own outbox) is decided in one
transaction with its inbox claim: the participant's document is deleted (see
:meth:`RegistryStore.erase_participant` for what goes and why the NIK's keyed hash goes
too), a rejection that named them as a NIK's owner forgets them, the outbox's copies of
their contact are deleted, and the outbox gets a tombstone for ``participant-contact``
(their key with no value: the compacted topic forgets their contact, notifications forgets
it too) and the registry's ``participant-data-erased``. The journey stays: it is what the
funnel counts, and it holds nothing that identifies the person.

Idempotent and order-proof: a request is decided once (its inbox claim), a repeated request
for an erased participant is recorded but erases and publishes nothing more, and a fact
arriving afterwards finds nothing personal to add to: a redelivered submission finds its
claim, a journey fact only adds a stage time to the anonymous journey.

The registry tracks every request until each service that consumes the request
(:data:`EXPECTED`) has answered with ``participant-data-erased``; ``GET
/participants/{participant_id}/erasure`` says where it stands, and a periodic check flags a
request not complete within ``erasure_deadline_s`` (a gauge and a log line, ids only).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from faststream.asgi import AsgiResponse
from prometheus_client import Gauge
from pydantic import ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession

from shared.access import SERVICES
from shared.batch import Fact, Outcome, decide_batch
from shared.contracts import (
    ConsentWithdrawn,
    Event,
    ParticipantContact,
    ParticipantDataErased,
    ParticipantErasureRequested,
    Refusal,
)
from shared.envelope import Envelope, OutgoingEvent, new_envelope
from shared.http import Request, json_response
from shared.kafka import METRICS, Record, read_event
from shared.logging import get_logger
from shared.mongo import Document, transact

if TYPE_CHECKING:
    from services.registry.handlers import Deps

log = get_logger(__name__)

SERVICE = "registry"
# "Every service": those of this repository that consume the request (the catalogue says).
EXPECTED: tuple[str, ...] = tuple(s for s in SERVICES if s in ParticipantErasureRequested.consumers)
EVENTS: tuple[type[Event], ...] = (
    ParticipantErasureRequested,
    ParticipantDataErased,
    ConsentWithdrawn,
)
_BY_TYPE = {event.ce_type(): event for event in EVENTS}
OVERDUE = Gauge(
    "jakpreneur_erasures_overdue",
    "Erasure requests not confirmed by every service within the deadline.",
    ["service"],
    registry=METRICS,  # process-wide, served on every /metrics
)


def _read(record: Record) -> tuple[Envelope, Event]:
    envelope, event = read_event(record, _BY_TYPE, strict=False)
    if isinstance(event, ParticipantDataErased) and event.service != envelope.source:
        # a service answers for itself only
        raise Refusal("service-mismatch", "service is not the event's ce_source")
    return envelope, event


class _Transaction:
    """The working set of a batch of requests (a :class:`shared.batch.Unit`): nothing read
    ahead, nothing held back; each decision reads and writes in the transaction itself
    (erasures are rare, and one touches several collections)."""

    def __init__(self, session: AsyncClientSession) -> None:
        self.session = session
        self.now = datetime.now(UTC)

    async def prefetch(self, participant_ids: Iterable[str]) -> None:
        pass

    async def flush(self) -> None:
        pass


async def handle(records: list[Record], deps: Deps) -> None:
    """Requests, confirmations and withdrawals decided in one transaction with their inbox
    claims (:func:`shared.batch.decide_batch`), each by its applier (:data:`APPLIERS`)."""

    async def decide(session: AsyncClientSession, unit: _Transaction, fact: Fact) -> Outcome:
        return Outcome(await APPLIERS[fact.event.name](deps, unit, fact.envelope, fact.event))

    await decide_batch(
        records,
        read=_read,
        begin=_Transaction,
        decide=decide,
        outbox=deps.outbox,
        service=deps.settings.service_name,
    )


async def _erase(
    deps: Deps, unit: _Transaction, cause: Envelope, event: ParticipantErasureRequested
) -> list[OutgoingEvent]:
    store, session, now, pid = deps.store, unit.session, unit.now, event.participant_id
    tracked = await store.record_erasure_request(session, pid, cause.id, now)
    if SERVICE in tracked.get("confirmed", {}):
        return []  # erased before: a repeated request changes nothing here
    categories = await store.erase_participant(session, pid)
    contact_topic = deps.settings.topic(ParticipantContact.name)
    copies = await deps.outbox.forget(session, topic=contact_topic, key=pid)
    if copies and "contact" not in categories:
        categories.append("contact")
    await store.record_confirmation(session, pid, SERVICE, now, EXPECTED)
    erased = ParticipantDataErased(
        participant_id=pid, service=SERVICE, erased_at=now, categories=categories
    )
    log.info("participant erased", participant_id=pid, categories=categories)
    source = deps.settings.service_name
    return [
        OutgoingEvent.tombstone(
            cause, ParticipantContact, topic=contact_topic, key=pid, source=source, time=now
        ),
        OutgoingEvent.about(cause, erased, pid, deps.settings, now),
    ]


async def _withdraw(
    deps: Deps, unit: _Transaction, cause: Envelope, event: ConsentWithdrawn
) -> list[OutgoingEvent]:
    """Marked (the first time counts); nothing if already erased."""
    await deps.store.withdraw_consent(unit.session, event.participant_id, event.withdrawn_at)
    return []


async def _confirm(
    deps: Deps, unit: _Transaction, cause: Envelope, confirmed: ParticipantDataErased
) -> list[OutgoingEvent]:
    """A service's confirmation (the registry's own is recorded as it erases)."""
    doc = await deps.store.record_confirmation(
        unit.session, confirmed.participant_id, confirmed.service, confirmed.erased_at, EXPECTED
    )
    log.info(
        "erasure confirmed",
        participant_id=confirmed.participant_id,
        by=confirmed.service,
        complete="completed_at" in doc,
    )
    return []


Applier = Callable[["Deps", _Transaction, Envelope, Any], Awaitable[list[OutgoingEvent]]]
# Each event's applier, by event name.
APPLIERS: Mapping[str, Applier] = {
    ParticipantErasureRequested.name: _erase,
    ConsentWithdrawn.name: _withdraw,
    ParticipantDataErased.name: _confirm,
}


def status_of(doc: Document, now: datetime, deadline: timedelta) -> dict[str, Any]:
    """``pending``, ``complete`` or ``overdue`` (pending past the deadline), and who has
    and has not confirmed (the services expected now; one that confirmed as well is
    listed among the confirmed)."""
    confirmed = doc.get("confirmed", {})
    waiting = [s for s in EXPECTED if s not in confirmed]
    requested_at: datetime | None = doc.get("requested_at")
    if not waiting:
        status = "complete"
    elif requested_at is not None and now - requested_at > deadline:
        status = "overdue"
    else:
        status = "pending"
    return {
        "status": status,
        "confirmed": sorted(confirmed),
        "waiting_for": waiting,
        "requested_at": requested_at,
        "requests": len(doc.get("requests", [])),
    }


async def request_erasure(deps: Deps, deadline: timedelta, request: Request) -> AsgiResponse:
    """``POST /participants/{participant_id}/erasure`` (body ``{"reason": "..."}``): the
    request goes out through the outbox, as the portal's would; 202 with its status."""
    pid = request.params["participant_id"]
    if not await deps.store.knows(pid):
        return json_response({"error": "participant not found"}, 404)
    principal = request.principal
    # The participant themself, or the officer (role and subject: their id at the issuer).
    requested_by = (
        "participant"
        if principal.role.scope == "self"
        else f"{principal.role_name}:{principal.subject}"[:200]
    )
    now = datetime.now(UTC)
    try:
        event = ParticipantErasureRequested.model_validate(
            {
                "participant_id": pid,
                "requested_by": requested_by,
                "reason": request.body.get("reason", ""),
                "requested_at": now,
            },
            strict=True,
        )
    except ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
        return json_response({"error": f"invalid fields: {', '.join(fields)}"}, 400)
    settings = deps.settings
    envelope = new_envelope(type=event.ce_type(), source=settings.service_name, subject=pid)
    out = OutgoingEvent.of(event, topic=settings.topic(event.name), key=pid, envelope=envelope)

    async def record(session: AsyncClientSession) -> None:
        await deps.store.record_erasure_request(session, pid, envelope.id, now)
        await deps.outbox.add(session, [out])

    await transact(deps.store.client, record)
    try:
        await deps.outbox.publish([out])
    except Exception as exc:  # stored: the outbox relay sends it
        log.warning("erasure request left to the outbox relay", error_type=type(exc).__name__)
    log.info("erasure requested", participant_id=pid, role=principal.role_name)
    doc = await deps.store.erasure(pid) or {}
    body = {"participant_id": pid, "request_id": envelope.id, **status_of(doc, now, deadline)}
    return json_response(body, 202)


async def erasure_status(deps: Deps, deadline: timedelta, request: Request) -> AsgiResponse:
    """``GET /participants/{participant_id}/erasure``."""
    pid = request.params["participant_id"]
    doc = await deps.store.erasure(pid)
    if doc is None or "requested_at" not in doc:
        return json_response({"error": "no erasure requested"}, 404)
    return json_response({"participant_id": pid, **status_of(doc, datetime.now(UTC), deadline)})


async def check_overdue(deps: Deps, deadline: timedelta) -> int:
    """The periodic check: the gauge says how many requests are overdue now; a log line
    names those newly overdue (participant ids only). Returns how many are overdue."""
    now = datetime.now(UTC)
    overdue = await deps.store.overdue_erasures(now - deadline, EXPECTED)
    OVERDUE.labels(deps.settings.service_name).set(len(overdue))
    new = [str(d["_id"]) for d in overdue if "overdue_flagged_at" not in d]
    if new:
        log.warning(
            "erasure requests overdue",
            overdue=len(overdue),
            newly_overdue=new[:50],
            deadline_hours=round(deadline.total_seconds() / 3600, 1),
        )
        await deps.store.flag_overdue(new, now)
    return len(overdue)
