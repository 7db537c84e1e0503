"""Use-cases of the marketplace: each fact is applied to its participant's state, the state
is settled (curation ladder, listing, export, financing referral), and the events caused are
written with the state in one transaction (inbox + outbox). An applied sales report also
settles the business class (naik kelas), once per report, from the state already loaded.

Which certificates are valid is coaching's to say: the marketplace reads it from
``product-certified``, ``product-certification-lapsed`` and ``product-certificates-changed``
(the newest revision wins) and never sees a certificate itself.

Curation reviews and bank decisions name a product or a referral, not a participant: an
index maps them. A review of a product whose certification has not arrived yet is parked
under the product and applied when it does.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaBroker

from services.marketplace import domain
from services.marketplace.domain import (
    LEVELS,
    Curated,
    Delisted,
    Exported,
    Listed,
    Marketplace,
    Rejected,
)
from services.marketplace.store import MarketplaceStore, Session
from shared.batch import Fact, Outcome, decide_batch
from shared.contracts import (
    BusinessClassChanged,
    ConsentWithdrawn,
    CurationReviewed,
    Event,
    ExportFacilitated,
    FinancialReportRecorded,
    FinancingApproved,
    FinancingDecided,
    FinancingDeclined,
    FinancingReferred,
    MentoringCompleted,
    ParticipantDataErased,
    ParticipantErasureRequested,
    ParticipantEvent,
    ParticipantRegistered,
    ProductCertificatesChanged,
    ProductCertificationLapsed,
    ProductCertified,
    ProductCurated,
    ProductCurationRejected,
    ProductDelisted,
    ProductListed,
    Refusal,
    SalesReported,
    TrainingCompleted,
    consumed_by,
    produced_by,
)
from shared.envelope import Envelope, OutgoingEvent
from shared.kafka import Record, read_event
from shared.logging import get_logger
from shared.mongo import Outbox, StateCache
from shared.settings import ServiceSettings

log = get_logger(__name__)

CONSUMES = consumed_by("marketplace")  # the catalogue says who reads what
PRODUCES = produced_by("marketplace")
_BY_TYPE = {event.ce_type(): event for event in CONSUMES}


@dataclass(frozen=True)
class Financing:
    product_name: str
    max_amount_idr: int
    rate_percent: float


@dataclass(frozen=True)
class Deps:
    settings: ServiceSettings
    broker: KafkaBroker
    store: MarketplaceStore
    outbox: Outbox
    financing: Financing
    export_programme: str


def read_fact(record: Record) -> tuple[Envelope, Event]:
    return read_event(record, _BY_TYPE)


_Applier = Callable[["_Decision", Any, Record], Awaitable[None]]


class _Decision:
    """One transaction's work on one participant's state."""

    def __init__(self, deps: Deps, session: Session, state: Marketplace, cause: Envelope):
        self.deps, self.session, self.state, self.cause = deps, session, state, cause
        self.now = datetime.now(UTC)
        self.outcome = Outcome()

    def emit(self, data: Event) -> None:
        pid, settings = self.state.participant_id, self.deps.settings
        self.outcome.events.append(OutgoingEvent.about(self.cause, data, pid, settings, self.now))

    async def apply(self, fact: Event, record: Record) -> None:
        """Put the fact on the state (its applier in :data:`_APPLIERS`); :class:`Refusal`
        when it cannot apply."""
        await _APPLIERS[type(fact)](self, fact, record)

    async def unpark(self, key: str) -> None:
        """Apply what waited for ``key``; what cannot apply goes to the DLQ with its code
        (through the parking, in this transaction: see :meth:`Parking.refuse`)."""
        parking = self.deps.store.parking
        for parked in await parking.take(self.session, key):
            try:
                await self.apply(read_fact(parked)[1], parked)
            except Refusal as exc:
                await parking.refuse(self.session, parked, Refusal(exc.code, str(exc)))

    async def settle(self) -> None:
        state, pid = self.state, self.state.participant_id
        for change in domain.product_changes(state, self.now):
            self.emit(self._product_event(change))
        stages = domain.due_for_referral(state)
        if stages is not None:
            referral_id = str(uuid.uuid4())
            state.referral = domain.Referral(referral_id=referral_id, stages=stages)
            await self.deps.store.index(self.session, "referral", referral_id, pid)
            f = self.deps.financing
            self.emit(
                FinancingReferred(
                    referral_id=referral_id,
                    participant_id=pid,
                    stages=stages,
                    product_name=f.product_name,
                    max_amount_idr=f.max_amount_idr,
                    rate_percent=f.rate_percent,
                )
            )

    def _product_event(self, change: domain.Change) -> Event:
        pid, product = self.state.participant_id, change.product
        if isinstance(change, Rejected):
            return ProductCurationRejected(
                product_id=product.product_id,
                participant_id=pid,
                level=change.level,
                notes=change.notes,
            )
        if isinstance(change, Curated):
            assert product.grade is not None
            return ProductCurated(
                product_id=product.product_id, participant_id=pid, grade=product.grade
            )
        if isinstance(change, Listed):
            assert product.grade is not None
            return ProductListed(
                product_id=product.product_id,
                participant_id=pid,
                grade=product.grade,
                channels=list(change.channels),
            )
        if isinstance(change, Delisted):
            return ProductDelisted(
                product_id=product.product_id, participant_id=pid, reason=change.reason
            )
        assert isinstance(change, Exported)
        return ExportFacilitated(
            product_id=product.product_id,
            participant_id=pid,
            programme=self.deps.export_programme,
            reasons=change.reasons,
        )


# ------------------------------------------------------------------------- facts
# Each puts its fact on the participant's state; :class:`Refusal` when it cannot apply.


async def _registered(d: _Decision, fact: ParticipantRegistered, record: Record) -> None:
    domain.record_registration(d.state, fact.city, fact.kecamatan)


def _passed(stage: domain.Stage) -> _Applier:
    async def apply(d: _Decision, fact: Event, record: Record) -> None:
        domain.record_stage(d.state, stage)

    return apply


async def _certified(d: _Decision, fact: ProductCertified, record: Record) -> None:
    """Reviews of the product that came first waited (parked) for it: they apply now."""
    state = d.state
    domain.record_certified(
        state, fact.product_id, fact.category, fact.validity_revision, fact.valid_kinds
    )
    await d.deps.store.index(d.session, "product", fact.product_id, state.participant_id)
    await d.unpark(f"product:{fact.product_id}")


async def _lapsed(d: _Decision, fact: ProductCertificationLapsed, record: Record) -> None:
    domain.record_lapse(d.state, fact.product_id, fact.validity_revision, fact.valid_kinds)


async def _kinds_changed(d: _Decision, fact: ProductCertificatesChanged, record: Record) -> None:
    domain.record_valid_kinds(
        d.state, fact.product_id, fact.category, fact.validity_revision, fact.valid_kinds
    )


async def _reviewed(d: _Decision, fact: CurationReviewed, record: Record) -> None:
    """A review before its level's turn waits (parked) for the level it awaits; one that is
    recorded lets the next level's, if it waited, apply."""
    review = domain.Review(
        decision=fact.decision, grade=fact.grade, reviewer_id=fact.reviewer_id, notes=fact.notes
    )
    awaited = domain.record_review(d.state, fact.product_id, fact.level, review)
    if awaited is not None:
        await d.deps.store.parking.park(d.session, f"curation:{fact.product_id}:{awaited}", record)
    else:
        await d.unpark(f"curation:{fact.product_id}:{fact.level}")


async def _sales_reported(d: _Decision, fact: SalesReported, record: Record) -> None:
    """Recorded in the ledger (a month reported again replaced), then naik kelas."""
    sale = domain.Sale(
        period=fact.period,
        revenue_idr=fact.revenue_idr,
        transactions=fact.transactions,
        channel=fact.channel,
        source_ref=fact.source_ref,
    )
    result = domain.record_sale(d.state, sale, d.cause.occurred_at)
    if result == "duplicate":
        return
    pid = d.state.participant_id
    d.emit(
        FinancialReportRecorded(
            participant_id=pid,
            period=sale.period,
            revenue_idr=sale.revenue_idr,
            transactions=sale.transactions,
            channel=sale.channel,
            replaced=result == "replaced",
        )
    )
    _business_class(d)


def _business_class(d: _Decision) -> None:
    """Naik kelas: the ledger's class, announced when it differs from the last one."""
    change = domain.class_change(d.state)
    if change is None:
        return
    assessment = change.assessment
    d.emit(
        BusinessClassChanged(
            participant_id=d.state.participant_id,
            from_class=change.from_class,
            to_class=assessment.business_class,
            annual_sales_idr=assessment.annual_sales_idr,
            basis_months=assessment.basis_months,
            annualised=assessment.annualised,
            assessed_at=assessment.assessed_at,
        )
    )


async def _financing_decided(d: _Decision, fact: FinancingDecided, record: Record) -> None:
    pid, maximum = d.state.participant_id, d.deps.financing.max_amount_idr
    approved = fact.decision == "approved"
    domain.decide_financing(d.state, fact.referral_id, approved, fact.amount_idr, maximum)
    d.emit(
        FinancingApproved(
            referral_id=fact.referral_id,
            participant_id=pid,
            amount_idr=fact.amount_idr,
            bank_ref=fact.bank_ref,
        )
        if approved
        else FinancingDeclined(
            referral_id=fact.referral_id, participant_id=pid, bank_ref=fact.bank_ref
        )
    )


async def _consent_withdrawn(d: _Decision, fact: ConsentWithdrawn, record: Record) -> None:
    domain.withdraw_consent(d.state, d.now)


async def _erasure_requested(
    d: _Decision, fact: ParticipantErasureRequested, record: Record
) -> None:
    """Erase in this transaction (with the inbox claim) and confirm through the outbox.
    A redelivery finds its claim; a repeated request (another event) changes nothing
    and confirms again with the same ``erased_at`` and categories. The outbox holds
    none of the participant's published events (a rejection carries the reviewer's
    notes): a row is deleted when its event is published, and one still to be sent when
    it goes out."""
    state, store = d.state, d.deps.store
    erased_at = domain.erase(state, d.now)
    keys = [f"product:{p.product_id}" for p in state.products]
    keys += [f"curation:{p.product_id}:{level}" for p in state.products for level in LEVELS]
    await store.rewrite_parked(d.session, keys, _without_notes)
    d.emit(
        ParticipantDataErased(
            participant_id=state.participant_id,
            service=d.deps.settings.service_name,
            erased_at=erased_at,
            categories=list(domain.ERASED_CATEGORIES),
        )
    )


_APPLIERS: Mapping[type[Event], _Applier] = {
    ParticipantRegistered: _registered,
    TrainingCompleted: _passed("training-completed"),
    MentoringCompleted: _passed("mentoring-completed"),
    ProductCertified: _certified,
    ProductCertificationLapsed: _lapsed,
    ProductCertificatesChanged: _kinds_changed,
    CurationReviewed: _reviewed,
    SalesReported: _sales_reported,
    FinancingDecided: _financing_decided,
    ConsentWithdrawn: _consent_withdrawn,
    ParticipantErasureRequested: _erasure_requested,
}
assert set(_APPLIERS) == set(CONSUMES), "an applier for every fact the marketplace reads"


async def _decide(
    deps: Deps, session: Session, states: StateCache[Marketplace], fact: Fact
) -> Outcome:
    store, event = deps.store, fact.event
    if isinstance(event, CurationReviewed):
        holder = await store.holder(session, "product", event.product_id)
        if holder is None:  # its product's certification has not arrived yet
            await store.parking.park(session, f"product:{event.product_id}", fact.record)
            return Outcome()
        participant_id = holder
    elif isinstance(event, FinancingDecided):
        holder = await store.holder(session, "referral", event.referral_id)
        if holder is None:
            raise Refusal("unknown-referral", f"no referral {event.referral_id} was made")
        participant_id = holder
    else:
        assert isinstance(event, ParticipantEvent), event.name  # the others name one
        participant_id = event.participant_id
    state = await states.load(participant_id)
    decision = _Decision(deps, session, state, fact.envelope)
    await decision.apply(event, fact.record)
    domain.scrub(state)  # a fact after an erasure keeps nothing personal either
    await decision.settle()
    states.save(state)
    return decision.outcome


def _without_notes(value: bytes) -> bytes:
    """A parked review, its reviewer's notes blanked (it is applied as it was otherwise)."""
    review = CurationReviewed.model_validate_json(value)
    return review.model_copy(update={"notes": ""}).model_dump_json().encode()


async def handle_facts(records: list[Record], deps: Deps) -> None:
    """A batch decided in one transaction (:func:`shared.batch.decide_batch`), then
    published. What cannot be applied goes to the DLQ."""

    async def decide(session: Session, states: StateCache[Marketplace], fact: Fact) -> Outcome:
        return await _decide(deps, session, states, fact)

    await decide_batch(
        records,
        read=read_fact,
        begin=lambda session: StateCache(deps.store.states, session),
        decide=decide,
        outbox=deps.outbox,
        service=deps.settings.service_name,
    )
