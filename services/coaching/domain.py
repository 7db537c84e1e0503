"""Coaching state and rules (P2 pelatihan, P3 pendampingan, P4 perizinan). Pure: no I/O.

One document per participant holds every fact coaching has received about them. Decisions
are derived from the facts, whatever order they came in, and each decision is recorded so it
is made once: a product is certified when its requirement set is first met, and lapses when
it no longer is.

Coaching is the one owner of certificate validity (issued, unexpired, unrevoked): the
marketplace keeps no certificates and acts on the kinds coaching publishes as valid for each
product (:func:`certification_changes`), its export rule included.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from shared.contracts import Finding, Refusal

COMPLETION_ATTENDANCE = 0.75
COMPLETION_SCORE = 70
MENTORING_SESSIONS = 3
EXPIRY_NOTICE = timedelta(days=30)

# Per category: every group must be met by one valid certificate of a kind in the group.
REQUIREMENTS: Mapping[str, Sequence[frozenset[str]]] = {
    "makanan-minuman": (frozenset({"NIB"}), frozenset({"PIRT", "BPOM_MD"}), frozenset({"HALAL"})),
    "kosmetik": (frozenset({"NIB"}), frozenset({"BPOM_NOTIFIKASI"})),
    "fashion": (frozenset({"NIB"}),),
    "kriya": (frozenset({"NIB"}),),
    "jasa": (frozenset({"NIB"}),),
    "lainnya": (frozenset({"NIB"}),),
}


class Profile(BaseModel):
    sector: str
    city: str
    kecamatan: str


class Enrollment(BaseModel):
    cohort_id: str
    session_count: int
    sector: str
    city: str


class Training(BaseModel):
    attendance: dict[str, bool] = Field(default_factory=dict)  # session_no (as text) -> present
    score: int | None = None
    outcome: Literal["completed", "not-completed"] | None = None


class Mentoring(BaseModel):
    mentor_id: str
    centre: str
    sessions: int = 0
    completed: bool = False
    released: bool = False  # the pendamping's load was given back at a stop, before completion


class Product(BaseModel):
    product_id: str
    name: str
    category: str
    certified: bool = False
    # Coaching owns validity: the kinds valid for the product as last published (sorted),
    # and how many times they were (0: never). See :func:`certification_changes`.
    valid_kinds: list[str] = Field(default_factory=list)
    validity_revision: int = 0


class Certificate(BaseModel):
    certificate_id: str
    product_id: str | None
    kind: str
    number: str
    issued_at: datetime
    expires_at: datetime | None
    revoked: bool = False
    expiring_sent: bool = False

    def valid_at(self, now: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > now)


class Coaching(BaseModel):
    """Everything coaching knows of one participant (``_id`` in MongoDB)."""

    participant_id: str
    profile: Profile | None = None
    enrollment: Enrollment | None = None
    training: Training = Field(default_factory=Training)
    mentoring: Mentoring | None = None
    products: list[Product] = Field(default_factory=list)
    certificates: list[Certificate] = Field(default_factory=list)
    next_check_at: datetime | None = None
    # PDP markers, kept for good so that facts arriving later are held to them.
    consent_withdrawn_at: datetime | None = None
    erased_at: datetime | None = None

    def product(self, product_id: str) -> Product | None:
        return next((p for p in self.products if p.product_id == product_id), None)

    def certificate(self, certificate_id: str) -> Certificate | None:
        return next((c for c in self.certificates if c.certificate_id == certificate_id), None)


def record_profile(state: Coaching, profile: Profile) -> None:
    """The registration's sector and region; the first one stands."""
    if state.profile is None:
        state.profile = profile


# ----------------------------------------------------------------------------- P2 training
# Cohorts gather one sector in one city. A seat goes to the oldest cohort with room; when all
# are full the next one opens, numbered after the last, with the configured capacity and
# number of sessions.


@dataclass
class Cohort:
    """A training cohort and the seats taken in it (``size``)."""

    cohort_id: str
    sector: str
    city: str
    seq: int
    capacity: int
    session_count: int
    size: int = 0


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def new_cohort(sector: str, city: str, seq: int, capacity: int, sessions: int) -> Cohort:
    """The ``seq``-th cohort of ``sector`` in ``city``, empty, named after the three."""
    return Cohort(f"{_slug(city)}-{sector}-{seq:04d}", sector, city, seq, capacity, sessions)


def cohort_with_room(open_: list[Cohort], capacity: int) -> Cohort | None:
    """The oldest of ``open_`` (a sector's cohorts in a city, oldest first) with a seat free
    under ``capacity``, those before it dropped as full; None when all are: the next opens."""
    while open_ and open_[0].size >= capacity:
        open_.pop(0)
    return open_[0] if open_ else None


def take_seat(cohort: Cohort) -> Enrollment:
    cohort.size += 1
    return Enrollment(
        cohort_id=cohort.cohort_id,
        session_count=cohort.session_count,
        sector=cohort.sector,
        city=cohort.city,
    )


def record_attendance(state: Coaching, cohort_id: str, session_no: int, present: bool) -> None:
    enrollment = _enrolled_in(state, cohort_id)
    if session_no > enrollment.session_count:
        raise Refusal(
            "unknown-session", f"cohort {cohort_id} has {enrollment.session_count} sessions"
        )
    state.training.attendance[str(session_no)] = present


def record_assessment(state: Coaching, cohort_id: str, score: int) -> None:
    _enrolled_in(state, cohort_id)
    state.training.score = score


def _enrolled_in(state: Coaching, cohort_id: str) -> Enrollment:
    if state.enrollment is None or state.enrollment.cohort_id != cohort_id:
        raise Refusal("not-in-cohort", f"the participant is not in cohort {cohort_id}")
    return state.enrollment


@dataclass(frozen=True)
class TrainingDecision:
    completed: bool
    score: int
    attendance_rate: float
    reasons: list[Finding]


def decide_training(state: Coaching) -> TrainingDecision | None:
    """Completed as soon as the rule holds; not completed once everything is in and it fails."""
    enrollment, training = state.enrollment, state.training
    if enrollment is None or training.outcome is not None or training.score is None:
        return None
    rate = round(sum(training.attendance.values()) / enrollment.session_count, 4)
    reasons = []
    if rate < COMPLETION_ATTENDANCE:
        reasons.append(
            Finding(
                code="attendance-below-75",
                message=f"attended {rate:.0%} of sessions; at least 75% is required",
            )
        )
    if training.score < COMPLETION_SCORE:
        reasons.append(
            Finding(
                code="score-below-70",
                message=f"post-test score {training.score}; at least 70 is required",
            )
        )
    if not reasons:
        training.outcome = "completed"
        return TrainingDecision(True, training.score, rate, [])
    if len(training.attendance) < enrollment.session_count:
        return None  # sessions still to come may lift the attendance
    training.outcome = "not-completed"
    return TrainingDecision(False, training.score, rate, reasons)


# --------------------------------------------------------------------------- P3 mentoring


@dataclass(frozen=True)
class Scope:
    """Centres to look among for a pendamping: those sharing the participant's ``shares``
    (profile fields) and having no ``lacks`` (a city's own centre has no kecamatan)."""

    shares: tuple[str, ...]
    lacks: tuple[str, ...] = ()


# Where a pendamping is looked for, in order; the least loaded of the first that has one.
PENDAMPING_SCOPES: Sequence[Scope] = (
    Scope(shares=("kecamatan", "city")),  # the kecamatan's own centre
    Scope(shares=("city",), lacks=("kecamatan",)),  # the city's centre
    Scope(shares=("city",)),  # any centre of the city
)


def pendamping_search(profile: Profile) -> list[dict[str, str | None]]:
    """:data:`PENDAMPING_SCOPES` for ``profile``, in order: the value each field of a centre
    must have (None: none)."""
    return [
        {**dict.fromkeys(scope.lacks), **{f: getattr(profile, f) for f in scope.shares}}
        for scope in PENDAMPING_SCOPES
    ]


def record_mentoring_session(state: Coaching, mentor_id: str) -> None:
    if state.mentoring is None:
        raise Refusal("not-a-mentee", "no pendamping is assigned to this participant")
    if state.mentoring.mentor_id != mentor_id:
        raise Refusal("wrong-mentor", f"the participant's pendamping is not {mentor_id}")
    state.mentoring.sessions += 1


def decide_mentoring_completed(state: Coaching) -> bool:
    m = state.mentoring
    if m is None or m.completed or m.sessions < MENTORING_SESSIONS:
        return False
    m.completed = True
    return True


# ---------------------------------------------------------------------------- P4 licensing


def submit_product(state: Coaching, product: Product) -> None:
    """A product to certify; a repeated submission changes nothing."""
    if state.product(product.product_id) is None:
        state.products.append(product)


def issue_certificate(state: Coaching, certificate: Certificate) -> None:
    """Add or replace (a re-issue keeps a revocation that was already known)."""
    old = state.certificate(certificate.certificate_id)
    if old is not None:
        certificate = certificate.model_copy(
            update={
                "revoked": old.revoked or certificate.revoked,
                "expiring_sent": old.expiring_sent,
            }
        )
        state.certificates.remove(old)
    state.certificates.append(certificate)


def revoke_certificate(state: Coaching, certificate_id: str) -> None:
    cert = state.certificate(certificate_id)
    assert cert is not None, "the certificate index named this participant"
    cert.revoked = True


@dataclass(frozen=True)
class Certified:
    product: Product
    certificates: list[Certificate]
    valid_until: datetime | None


@dataclass(frozen=True)
class Lapsed:
    product: Product
    reasons: list[Finding]


@dataclass(frozen=True)
class ValidityChanged:
    """A certified product's valid kinds changed, its certification did not."""

    product: Product


@dataclass(frozen=True)
class Expiring:
    certificate: Certificate


CertificationChange = Certified | Lapsed | ValidityChanged | Expiring


def check_requirements(
    product: Product, certificates: Sequence[Certificate], now: datetime
) -> tuple[list[Certificate], list[frozenset[str]]]:
    """For each requirement group, the valid certificate that lasts longest; and the groups
    no valid certificate meets. Business-level certificates (no product) count for all."""
    chosen, unmet = [], []
    for group in REQUIREMENTS.get(product.category, (frozenset({"NIB"}),)):
        candidates = [
            c
            for c in certificates
            if c.kind in group and c.product_id in (None, product.product_id) and c.valid_at(now)
        ]
        if candidates:
            chosen.append(
                max(
                    candidates,
                    key=lambda c: c.expires_at or datetime.max.replace(tzinfo=now.tzinfo),
                )
            )
        else:
            unmet.append(group)
    return chosen, unmet


def valid_kinds(product: Product, certificates: Sequence[Certificate], now: datetime) -> list[str]:
    """The kinds with a valid certificate for ``product`` at ``now``, its own or the
    business's, sorted: what the marketplace's export rule reads (it keeps no certificates)."""
    return sorted(
        {
            c.kind
            for c in certificates
            if c.product_id in (None, product.product_id) and c.valid_at(now)
        }
    )


def _publish_validity(product: Product, kinds: list[str]) -> None:
    product.valid_kinds = kinds
    product.validity_revision += 1


def certification_changes(state: Coaching, now: datetime) -> list[CertificationChange]:
    """What changed at ``now``: products newly certified or lapsed, certified products whose
    valid kinds changed, certificates entering the 30-day notice window. Records each so it
    is reported once; sets ``next_check_at``.

    Validity is published from a product's first certification on: the certification, a
    lapse and every change of the valid kinds in between carry the kinds and a revision one
    higher than the last, so the marketplace keeps the newest whatever order the topics
    deliver them in. While a product is lapsed nothing is published (the marketplace neither
    lists nor exports it); its next certification carries the kinds of then. A product
    certified before revisions existed (revision 0, certified) publishes at its first
    change."""
    changes: list[CertificationChange] = []
    for product in state.products:
        chosen, unmet = check_requirements(product, state.certificates, now)
        if not unmet and not product.certified:
            product.certified = True
            _publish_validity(product, valid_kinds(product, state.certificates, now))
            expiries = [c.expires_at for c in chosen if c.expires_at is not None]
            changes.append(Certified(product, chosen, min(expiries) if expiries else None))
        elif unmet and product.certified:
            product.certified = False
            _publish_validity(product, valid_kinds(product, state.certificates, now))
            reasons = [
                Finding(
                    code="requirement-unmet",
                    message=f"no valid {' or '.join(sorted(group))} certificate "
                    "(revoked, expired or missing)",
                )
                for group in unmet
            ]
            changes.append(Lapsed(product, reasons))
        elif product.certified:  # the kinds are not worked out for an uncertified one
            kinds = valid_kinds(product, state.certificates, now)
            if kinds != product.valid_kinds:
                _publish_validity(product, kinds)
                changes.append(ValidityChanged(product))
    for cert in state.certificates:
        if cert.expiring_sent or cert.expires_at is None or not cert.valid_at(now):
            continue
        if cert.expires_at - EXPIRY_NOTICE <= now:
            cert.expiring_sent = True
            changes.append(Expiring(cert))
    state.next_check_at = _next_check(state, now)
    return changes


def _next_check(state: Coaching, now: datetime) -> datetime | None:
    """When time alone will change something: a notice window opens or a certificate expires."""
    moments = []
    for cert in state.certificates:
        if cert.revoked or cert.expires_at is None or cert.expires_at <= now:
            continue
        moments.append(cert.expires_at)
        if not cert.expiring_sent:
            moments.append(cert.expires_at - EXPIRY_NOTICE)
    future = [m for m in moments if m > now]
    return min(future) if future else None


# ------------------------------------------------------------------------- next steps


@dataclass(frozen=True)
class Enrol:
    """Seat the participant in a cohort of their sector and city (:func:`cohort_with_room`)."""

    sector: str
    city: str


@dataclass(frozen=True)
class AssignPendamping:
    """Give the participant the least-loaded pendamping of the first centres of ``search``
    (:func:`pendamping_search`) that have one."""

    search: list[dict[str, str | None]]


@dataclass(frozen=True)
class MentoringDone:
    """Mentoring completed; ``release``: the pendamping's load is still to be given back."""

    mentoring: Mentoring
    release: bool


@dataclass(frozen=True)
class ReleasePendamping:
    """Give the pendamping's load back (a stop while mentoring was under way)."""

    mentor_id: str


Step = (
    Enrol
    | TrainingDecision
    | AssignPendamping
    | MentoringDone
    | ReleasePendamping
    | CertificationChange
)


def next_steps(state: Coaching, now: datetime) -> list[Step]:
    """Every decision the state now allows, in programme order, each recorded so it is made
    once. The caller does what needs the world: a seat (:class:`Enrol`), a pendamping
    (:class:`AssignPendamping`), a pendamping's load given back. No later rule here waits
    for those: a participant just seated has no post-test yet, one just given a pendamping
    no session. Nothing new starts after a stop (:func:`stopped`)."""
    steps: list[Step] = []
    profile, stop = state.profile, stopped(state)
    if profile is not None and state.enrollment is None and not stop:
        steps.append(Enrol(profile.sector, profile.city))
    if (training := decide_training(state)) is not None:
        steps.append(training)
    if (
        profile is not None
        and state.training.outcome == "completed"
        and state.mentoring is None
        and not stop
    ):
        steps.append(AssignPendamping(pendamping_search(profile)))
    if decide_mentoring_completed(state) and state.mentoring is not None:
        steps.append(MentoringDone(state.mentoring, release=not state.mentoring.released))
    if (mentor_id := release_mentor(state)) is not None:
        steps.append(ReleasePendamping(mentor_id))
    steps += certification_changes(state, now)
    return steps


# ------------------------------------------------------------------- PDP (UU 27/2022)
# What coaching holds that is personal: product names (often the business's brand) and
# certificate numbers (an NIB identifies a sole trader): the "business-id" category. What the
# funnel needs stays: cohort, training outcome, mentoring, product categories, which products
# were certified, the profile's sector, city and kecamatan (none of them identifies anyone).

ERASED_CATEGORIES = ("business-id",)


def stopped(state: Coaching) -> bool:
    """Consent withdrawn or data erased: nothing new starts for the participant (no
    enrolment, no pendamping); outcomes of what they already did are still decided."""
    return state.consent_withdrawn_at is not None or state.erased_at is not None


def release_mentor(state: Coaching) -> str | None:
    """The pendamping whose load to give back at a stop while mentoring is still under way,
    once (completion gives it back otherwise, unless this already did)."""
    m = state.mentoring
    if m is None or m.completed or m.released or not stopped(state):
        return None
    m.released = True
    return m.mentor_id


def withdraw_consent(state: Coaching, at: datetime) -> None:
    if state.consent_withdrawn_at is None:
        state.consent_withdrawn_at = at


def erase(state: Coaching, at: datetime) -> datetime:
    """Erase what is personal; returns when it was first erased (a repeat changes nothing
    and reports the same moment)."""
    if state.erased_at is None:  # at MongoDB's precision, so a repeat reports it unchanged
        state.erased_at = at.replace(microsecond=at.microsecond // 1000 * 1000)
    scrub(state)
    return state.erased_at


def scrub(state: Coaching) -> None:
    """After an erasure, whatever a fact just added is blanked too (order-proof)."""
    if state.erased_at is None:
        return
    for product in state.products:
        product.name = ""
    for cert in state.certificates:
        cert.number = ""
