"""Use-cases of coaching: each inbound fact is applied to its participant's state, the state
is settled (enrolment, training outcome, pendamping, certification), and the events those
decisions cause are written with the state in one transaction (inbox + outbox).

Facts may come in any order: they are all kept on the participant's state and decisions are
derived from what is there, so the same facts give the same events whatever their order. The
one fact that cannot be placed on arrival, a revocation whose certificate is unknown, is
parked and applied when the certificate arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from faststream.kafka import KafkaBroker

from services.coaching import domain
from services.coaching.domain import (
    CertificationChange,
    Certified,
    Coaching,
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


class _Emitter:
    """Collects the events one cause leads to, addressed to this deployment's topics."""

    def __init__(self, deps: Deps, cause: Envelope, participant_id: str, now: datetime) -> None:
        self.deps, self.cause, self.participant_id, self.now = deps, cause, participant_id, now
        self.events: list[OutgoingEvent] = []

    def __call__(self, data: Event) -> None:
        self.events.append(
            OutgoingEvent.about(self.cause, data, self.participant_id, self.deps.settings, self.now)
        )


def read_fact(record: Record) -> tuple[Envelope, Event]:
    return read_event(record, _BY_TYPE)


async def _apply(deps: Deps, session: Session, state: Coaching, fact: Event) -> None:
    """Put the fact on the state; :class:`Refusal` when it contradicts it."""
    store = deps.store
    if isinstance(fact, ParticipantRegistered):
        if state.profile is None:
            state.profile = domain.Profile(
                sector=fact.sector, city=fact.city, kecamatan=fact.kecamatan
            )
    elif isinstance(fact, TrainingAttendanceRecorded):
        domain.record_attendance(state, fact.cohort_id, fact.session_no, fact.present)
    elif isinstance(fact, TrainingAssessed):
        domain.record_assessment(state, fact.cohort_id, fact.score)
    elif isinstance(fact, MentoringSessionRecorded):
        domain.record_mentoring_session(state, fact.mentor_id)
    elif isinstance(fact, ProductSubmitted):
        if state.product(fact.product_id) is None:
            state.products.append(
                domain.Product(product_id=fact.product_id, name=fact.name_, category=fact.category)
            )
    elif isinstance(fact, CertificationIssued):
        revoked = bool(await store.parking.take(session, f"certificate:{fact.certificate_id}"))
        domain.issue_certificate(
            state,
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
        await store.index_certificate(session, fact.certificate_id, state.participant_id)
    elif isinstance(fact, CertificationRevoked):
        cert = state.certificate(fact.certificate_id)
        assert cert is not None, "the certificate index named this participant"
        cert.revoked = True


async def _settle(
    deps: Deps, session: Session, unit: Unit, state: Coaching, emit: _Emitter, now: datetime
) -> None:
    """Every decision the state now allows, each made once."""
    pid = state.participant_id
    profile = state.profile
    stopped = domain.stopped(state)
    if profile is not None and state.enrollment is None and not stopped:
        state.enrollment = await unit.seats.take(profile.sector, profile.city)
        e = state.enrollment
        emit(
            TrainingEnrolled(
                participant_id=pid,
                cohort_id=e.cohort_id,
                sector=e.sector,
                city=e.city,
                session_count=e.session_count,
            )
        )
    decision = domain.decide_training(state)
    if decision is not None and state.enrollment is not None:
        cohort_id = state.enrollment.cohort_id
        emit(
            TrainingCompleted(
                participant_id=pid,
                cohort_id=cohort_id,
                score=decision.score,
                attendance_rate=decision.attendance_rate,
            )
            if decision.completed
            else TrainingNotCompleted(
                participant_id=pid,
                cohort_id=cohort_id,
                score=decision.score,
                attendance_rate=decision.attendance_rate,
                reasons=decision.reasons,
            )
        )
    if (
        state.training.outcome == "completed"
        and state.mentoring is None
        and profile
        and not stopped
    ):
        found = await deps.store.assign_mentor(session, profile.kecamatan, profile.city)
        if found is None:
            log.warning("no pendamping for this kecamatan or city", participant_id=pid)
        else:
            state.mentoring = domain.Mentoring(mentor_id=found[0], centre=found[1])
            emit(MentoringAssigned(participant_id=pid, mentor_id=found[0], centre=found[1]))
    if domain.decide_mentoring_completed(state) and state.mentoring is not None:
        if not state.mentoring.released:
            await deps.store.release_mentor(session, state.mentoring.mentor_id)
        emit(
            MentoringCompleted(
                participant_id=pid,
                mentor_id=state.mentoring.mentor_id,
                sessions=state.mentoring.sessions,
            )
        )
    if (mentor_id := domain.release_mentor(state)) is not None:
        await deps.store.release_mentor(session, mentor_id)
    for change in domain.certification_changes(state, now):
        emit(_certification_event(pid, change))


def _certification_event(pid: str, change: CertificationChange) -> Event:
    if isinstance(change, Certified):
        return ProductCertified(
            product_id=change.product.product_id,
            participant_id=pid,
            category=change.product.category,
            certificates=[
                CertificateRef(
                    certificate_id=c.certificate_id,
                    kind=c.kind,
                    number=c.number,
                    expires_at=c.expires_at,
                )
                for c in change.certificates
            ],
            valid_until=change.valid_until,
            valid_kinds=change.product.valid_kinds,
            validity_revision=change.product.validity_revision,
        )
    if isinstance(change, Lapsed):
        return ProductCertificationLapsed(
            product_id=change.product.product_id,
            participant_id=pid,
            category=change.product.category,
            reasons=change.reasons,
            valid_kinds=change.product.valid_kinds,
            validity_revision=change.product.validity_revision,
        )
    if isinstance(change, ValidityChanged):
        return ProductCertificatesChanged(
            product_id=change.product.product_id,
            participant_id=pid,
            category=change.product.category,
            valid_kinds=change.product.valid_kinds,
            validity_revision=change.product.validity_revision,
        )
    cert = change.certificate
    assert cert.expires_at is not None
    return CertificationExpiring(
        certificate_id=cert.certificate_id,
        participant_id=pid,
        product_id=cert.product_id,
        kind=cert.kind,
        number=cert.number,
        expires_at=cert.expires_at,
    )


async def _decide(deps: Deps, session: Session, unit: Unit, fact: Fact) -> Outcome:
    store, event = deps.store, fact.event
    if isinstance(event, CertificationRevoked):
        holder = await store.holder_of(session, event.certificate_id)
        if holder is None:  # its certificate has not arrived yet
            await store.parking.park(session, f"certificate:{event.certificate_id}", fact.record)
            return Outcome()
        participant_id = holder
    else:
        participant_id = getattr(event, "participant_id")  # noqa: B009 - every other fact has it
    now = datetime.now(UTC)
    state = await unit.states.load(participant_id)
    emit = _Emitter(deps, fact.envelope, participant_id, now)
    if isinstance(event, ConsentWithdrawn):
        domain.withdraw_consent(state, now)
    elif isinstance(event, ParticipantErasureRequested):
        await _erase(deps, session, state, emit, now)
    else:
        await _apply(deps, session, state, event)
    domain.scrub(state)  # a fact after an erasure keeps nothing personal either
    await _settle(deps, session, unit, state, emit, now)
    unit.states.save(state)
    return Outcome(emit.events)


async def _erase(
    deps: Deps, session: Session, state: Coaching, emit: _Emitter, now: datetime
) -> None:
    """Erase in this transaction (with the inbox claim) and confirm through the outbox. A
    redelivery finds its claim; a repeated request (another event) changes nothing and
    confirms again with the same ``erased_at`` and categories, so the registry can close
    whichever request it tracks. The outbox holds none of the participant's published
    events (their values carry certificate numbers): a row is deleted when its event is
    published, and one still to be sent when it goes out."""
    erased_at = domain.erase(state, now)
    emit(
        ParticipantDataErased(
            participant_id=state.participant_id,
            service=deps.settings.service_name,
            erased_at=erased_at,
            categories=list(domain.ERASED_CATEGORIES),
        )
    )


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
        client=deps.store.client,
        db=deps.store.db,
        outbox=deps.outbox,
        broker=deps.broker,
        service=deps.settings.service_name,
    )


def _unit(deps: Deps, session: Session) -> Unit:
    return Unit(deps.store, session, deps.cohort_capacity, deps.cohort_sessions)


async def _recheck(deps: Deps, session: Session, participant_id: str) -> list[OutgoingEvent]:
    now = datetime.now(UTC)
    unit = _unit(deps, session)
    state = await unit.states.load(participant_id)
    cause = new_envelope(
        type=EXPIRY_CHECK_TYPE, source=deps.settings.service_name, subject=participant_id
    )
    emit = _Emitter(deps, cause, participant_id, now)
    await _settle(deps, session, unit, state, emit, now)
    unit.states.save(state)
    await unit.flush()
    await deps.outbox.add(session, emit.events)
    return emit.events


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
