"""Use-cases of coaching: each inbound fact is applied to its participant's state, the state
is settled (enrolment, training outcome, pendamping, certification), and the events those
decisions cause are written with the state in one transaction (inbox + outbox).

Facts may come in any order: they are all kept on the participant's state and decisions are
derived from what is there, so the same facts give the same events whatever their order. The
one fact that cannot be placed on arrival, a revocation whose certificate is unknown, is
parked and applied when the certificate arrives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaBroker

from services.coaching import domain
from services.coaching.domain import (
    Certified,
    Coaching,
    Expiring,
    Lapsed,
    ValidityChanged,
)
from services.coaching.store import CoachingStore, Session, Unit
from shared.batch import Fact, Outcome, decide_batch
from shared.contracts import (
    CertificateRef,
    CertificationExpiring,
    CertificationIssued,
    CertificationRevoked,
    ConsentWithdrawn,
    Event,
    MentoringAssigned,
    MentoringCompleted,
    MentoringSessionRecorded,
    ParticipantDataErased,
    ParticipantErasureRequested,
    ParticipantEvent,
    ParticipantRegistered,
    ProductCertificatesChanged,
    ProductCertificationLapsed,
    ProductCertified,
    ProductSubmitted,
    TrainingAssessed,
    TrainingAttendanceRecorded,
    TrainingCompleted,
    TrainingEnrolled,
    TrainingNotCompleted,
    consumed_by,
    produced_by,
)
from shared.envelope import Envelope, OutgoingEvent, new_envelope
from shared.kafka import Record, read_event
from shared.logging import get_logger
from shared.mongo import Outbox, transact
from shared.retry import retry_transient
from shared.settings import ServiceSettings

log = get_logger(__name__)
EXPIRY_CHECK_TYPE = "jakpreneur.coaching-expiry-check.v1"

CONSUMES = consumed_by("coaching")  # the catalogue says who reads what
PRODUCES = produced_by("coaching")
_BY_TYPE = {event.ce_type(): event for event in CONSUMES}


@dataclass(frozen=True)
class Deps:
    settings: ServiceSettings
    broker: KafkaBroker
    store: CoachingStore
    outbox: Outbox
    cohort_capacity: int
    cohort_sessions: int


class _Decision:
    """One cause's work on one participant's state (a fact, or an expiry check): the events
    it leads to, addressed to this deployment's topics."""

    def __init__(
        self, deps: Deps, session: Session, unit: Unit, state: Coaching, cause: Envelope
    ) -> None:
        self.deps, self.session, self.unit, self.state = deps, session, unit, state
        self.cause, self.now = cause, datetime.now(UTC)
        self.events: list[OutgoingEvent] = []

    def emit(self, data: Event) -> None:
        pid, settings = self.state.participant_id, self.deps.settings
        self.events.append(OutgoingEvent.about(self.cause, data, pid, settings, self.now))


def read_fact(record: Record) -> tuple[Envelope, Event]:
    return read_event(record, _BY_TYPE)


_Applier = Callable[[_Decision, Any], Awaitable[None]]  # a fact's, or a step's


# ------------------------------------------------------------------------- facts
# Each puts its fact on the state; :class:`Refusal` when it contradicts it.


async def _registered(d: _Decision, fact: ParticipantRegistered) -> None:
    profile = domain.Profile(sector=fact.sector, city=fact.city, kecamatan=fact.kecamatan)
    domain.record_profile(d.state, profile)


async def _attended(d: _Decision, fact: TrainingAttendanceRecorded) -> None:
    domain.record_attendance(d.state, fact.cohort_id, fact.session_no, fact.present)


async def _assessed(d: _Decision, fact: TrainingAssessed) -> None:
    domain.record_assessment(d.state, fact.cohort_id, fact.score)


async def _mentored(d: _Decision, fact: MentoringSessionRecorded) -> None:
    domain.record_mentoring_session(d.state, fact.mentor_id)


async def _submitted(d: _Decision, fact: ProductSubmitted) -> None:
    product = domain.Product(product_id=fact.product_id, name=fact.name_, category=fact.category)
    domain.submit_product(d.state, product)


async def _issued(d: _Decision, fact: CertificationIssued) -> None:
    """A revocation that came first waited (parked) under the certificate: it applies now."""
    store, session, pid = d.deps.store, d.session, d.state.participant_id
    revoked = bool(await store.parking.take(session, f"certificate:{fact.certificate_id}"))
    domain.issue_certificate(
        d.state,
        domain.Certificate(
            certificate_id=fact.certificate_id,
            product_id=fact.product_id,
            kind=fact.kind,
            number=fact.number,
            issued_at=fact.issued_at,
            expires_at=fact.expires_at,
            revoked=revoked,
        ),
    )
    await store.index_certificate(session, fact.certificate_id, pid)


async def _revoked(d: _Decision, fact: CertificationRevoked) -> None:
    domain.revoke_certificate(d.state, fact.certificate_id)


async def _consent_withdrawn(d: _Decision, fact: ConsentWithdrawn) -> None:
    domain.withdraw_consent(d.state, d.now)


async def _erasure_requested(d: _Decision, fact: ParticipantErasureRequested) -> None:
    """Erase in this transaction (with the inbox claim) and confirm through the outbox. A
    redelivery finds its claim; a repeated request (another event) changes nothing and
    confirms again with the same ``erased_at`` and categories, so the registry can close
    whichever request it tracks. The outbox holds none of the participant's published
    events (their values carry certificate numbers): a row is deleted when its event is
    published, and one still to be sent when it goes out."""
    erased_at = domain.erase(d.state, d.now)
    d.emit(
        ParticipantDataErased(
            participant_id=d.state.participant_id,
            service=d.deps.settings.service_name,
            erased_at=erased_at,
            categories=list(domain.ERASED_CATEGORIES),
        )
    )


_APPLIERS: Mapping[type[Event], _Applier] = {
    ParticipantRegistered: _registered,
    TrainingAttendanceRecorded: _attended,
    TrainingAssessed: _assessed,
    MentoringSessionRecorded: _mentored,
    ProductSubmitted: _submitted,
    CertificationIssued: _issued,
    CertificationRevoked: _revoked,
    ConsentWithdrawn: _consent_withdrawn,
    ParticipantErasureRequested: _erasure_requested,
}
assert set(_APPLIERS) == set(CONSUMES), "an applier for every fact coaching reads"


# ------------------------------------------------------------------------- steps
# Each does one of the steps :func:`domain.next_steps` says the state calls for.


async def _enrol(d: _Decision, step: domain.Enrol) -> None:
    e = d.state.enrollment = await d.unit.seats.take(step.sector, step.city)
    d.emit(
        TrainingEnrolled(
            participant_id=d.state.participant_id,
            cohort_id=e.cohort_id,
            sector=e.sector,
            city=e.city,
            session_count=e.session_count,
        )
    )


async def _trained(d: _Decision, step: domain.TrainingDecision) -> None:
    assert d.state.enrollment is not None, "training is decided for someone enrolled"
    pid, cohort_id = d.state.participant_id, d.state.enrollment.cohort_id
    d.emit(
        TrainingCompleted(
            participant_id=pid,
            cohort_id=cohort_id,
            score=step.score,
            attendance_rate=step.attendance_rate,
        )
        if step.completed
        else TrainingNotCompleted(
            participant_id=pid,
            cohort_id=cohort_id,
            score=step.score,
            attendance_rate=step.attendance_rate,
            reasons=step.reasons,
        )
    )


async def _assign(d: _Decision, step: domain.AssignPendamping) -> None:
    pid = d.state.participant_id
    found = await d.deps.store.assign_mentor(d.session, step.search)
    if found is None:
        log.warning("no pendamping for this kecamatan or city", participant_id=pid)
        return
    d.state.mentoring = domain.Mentoring(mentor_id=found[0], centre=found[1])
    d.emit(MentoringAssigned(participant_id=pid, mentor_id=found[0], centre=found[1]))


async def _mentoring_done(d: _Decision, step: domain.MentoringDone) -> None:
    mentoring = step.mentoring
    if step.release:
        await d.deps.store.release_mentor(d.session, mentoring.mentor_id)
    d.emit(
        MentoringCompleted(
            participant_id=d.state.participant_id,
            mentor_id=mentoring.mentor_id,
            sessions=mentoring.sessions,
        )
    )


async def _release(d: _Decision, step: domain.ReleasePendamping) -> None:
    await d.deps.store.release_mentor(d.session, step.mentor_id)


def _validity(d: _Decision, product: domain.Product) -> dict[str, Any]:
    """What each of the product's certification events says of it: the product, and the
    kinds valid for it now with the revision of that statement (coaching owns validity)."""
    return {
        "product_id": product.product_id,
        "participant_id": d.state.participant_id,
        "category": product.category,
        "valid_kinds": product.valid_kinds,
        "validity_revision": product.validity_revision,
    }


async def _certified(d: _Decision, step: Certified) -> None:
    refs = [
        CertificateRef(
            certificate_id=c.certificate_id, kind=c.kind, number=c.number, expires_at=c.expires_at
        )
        for c in step.certificates
    ]
    d.emit(
        ProductCertified(
            **_validity(d, step.product), certificates=refs, valid_until=step.valid_until
        )
    )


async def _lapsed(d: _Decision, step: Lapsed) -> None:
    d.emit(ProductCertificationLapsed(**_validity(d, step.product), reasons=step.reasons))


async def _validity_changed(d: _Decision, step: ValidityChanged) -> None:
    d.emit(ProductCertificatesChanged(**_validity(d, step.product)))


async def _expiring(d: _Decision, step: Expiring) -> None:
    cert = step.certificate
    assert cert.expires_at is not None
    d.emit(
        CertificationExpiring(
            certificate_id=cert.certificate_id,
            participant_id=d.state.participant_id,
            product_id=cert.product_id,
            kind=cert.kind,
            number=cert.number,
            expires_at=cert.expires_at,
        )
    )


_STEPS: Mapping[type[domain.Step], _Applier] = {
    domain.Enrol: _enrol,
    domain.TrainingDecision: _trained,
    domain.AssignPendamping: _assign,
    domain.MentoringDone: _mentoring_done,
    domain.ReleasePendamping: _release,
    Certified: _certified,
    Lapsed: _lapsed,
    ValidityChanged: _validity_changed,
    Expiring: _expiring,
}


async def _settle(d: _Decision) -> None:
    """Every decision the state now allows, each made once (:func:`domain.next_steps`)."""
    for step in domain.next_steps(d.state, d.now):
        await _STEPS[type(step)](d, step)


async def _decide(deps: Deps, session: Session, unit: Unit, fact: Fact) -> Outcome:
    store, event = deps.store, fact.event
    if isinstance(event, CertificationRevoked):
        holder = await store.holder_of(session, event.certificate_id)
        if holder is None:  # its certificate has not arrived yet
            await store.parking.park(session, f"certificate:{event.certificate_id}", fact.record)
            return Outcome()
        participant_id = holder
    else:
        assert isinstance(event, ParticipantEvent), event.name  # every other fact names one
        participant_id = event.participant_id
    state = await unit.states.load(participant_id)
    decision = _Decision(deps, session, unit, state, fact.envelope)
    await _APPLIERS[type(event)](decision, event)
    domain.scrub(state)  # a fact after an erasure keeps nothing personal either
    await _settle(decision)
    unit.states.save(state)
    return Outcome(decision.events)


async def handle_facts(records: list[Record], deps: Deps) -> None:
    """A batch decided in one transaction (:func:`shared.batch.decide_batch`). A record that
    cannot be read, contradicts the state (attendance for someone not in the cohort, say) or
    cannot be decided goes to the DLQ with its reason; outages are waited out."""

    async def decide(session: Session, unit: Unit, fact: Fact) -> Outcome:
        return await _decide(deps, session, unit, fact)

    await decide_batch(
        records,
        read=read_fact,
        begin=lambda session: _unit(deps, session),
        decide=decide,
        outbox=deps.outbox,
        service=deps.settings.service_name,
    )


def _unit(deps: Deps, session: Session) -> Unit:
    return Unit(deps.store, session, deps.cohort_capacity, deps.cohort_sessions)


async def _recheck(deps: Deps, session: Session, participant_id: str) -> list[OutgoingEvent]:
    unit = _unit(deps, session)
    state = await unit.states.load(participant_id)
    cause = new_envelope(
        type=EXPIRY_CHECK_TYPE, source=deps.settings.service_name, subject=participant_id
    )
    decision = _Decision(deps, session, unit, state, cause)
    await _settle(decision)
    unit.states.save(state)
    await unit.flush()
    await deps.outbox.add(session, decision.events)
    return decision.events


async def check_expiries(deps: Deps) -> int:
    """The periodic scan: participants whose certificates enter their 30-day notice window
    or expire now are settled again (``certification-expiring``, lapses)."""
    events: list[OutgoingEvent] = []
    for participant_id in await deps.store.due_for_check(datetime.now(UTC)):

        async def work(session: Session, pid: str = participant_id) -> list[OutgoingEvent]:
            return await _recheck(deps, session, pid)

        events += await transact(deps.store.client, work)
    if events:
        await retry_transient(lambda: deps.outbox.publish(events))
    return len(events)
