"""Marketplace state and rules (P5 pemasaran, P6 pelaporan keuangan, P7 permodalan). Pure.

As in coaching, one document per participant keeps every fact; decisions are derived from
what is there and recorded so each is made once. Curation reviews are kept by level and the
ladder is walked in order, so a review that comes before its level's turn simply waits
(is parked) until the levels below it have approved.

Certificates are coaching's: whether one is valid (issued, unexpired, unrevoked) is decided
there alone, and a product here holds only the kinds coaching last said are valid for it
(:func:`apply_validity`). The business class (naik kelas) is derived from the sales ledger
here (:func:`class_change`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

from pydantic import BaseModel, Field

from shared.contracts import MAX_RUPIAH, BusinessClass, Finding, Refusal

LEVELS: Sequence[str] = ("pendamping", "kecamatan", "dinas", "curator")
CHANNELS: Mapping[str, Sequence[str]] = {
    "A": ("e-order", "retail", "mall", "online", "export-candidate"),
    "B": ("e-order", "online"),
    "C": ("online", "bazaar"),
}
EXPORT_GRADE = "A"
EXPORT_SALES_MONTHS = 3  # of the last EXPORT_WINDOW_MONTHS
EXPORT_WINDOW_MONTHS = 6
# The kinds a product needs valid for export, by category; valid as coaching says.
EXPORT_CERTIFICATES: Mapping[str | None, Sequence[str]] = {
    None: ("HKI_MEREK",),  # every category
    "makanan-minuman": ("HKI_MEREK", "HALAL"),
}
FINANCING_SALES_MONTHS = 3
Stage = Literal[
    "registered",
    "training-completed",
    "mentoring-completed",
    "product-certified",
    "product-listed",
    "sales-reported-3-months",
]
STAGES: Sequence[Stage] = get_args(Stage)  # in the order the referral lists them
FINANCING_STAGES_NEEDED = 6  # of 7; the seventh is financing itself

# Business class by annual sales, PP 7/2021: each class with the most annual sales
# it allows (inclusive), in rupiah; the last has no ceiling.
CLASS_CEILINGS: Sequence[tuple[BusinessClass, int | None]] = (
    ("mikro", 2_000_000_000),
    ("kecil", 15_000_000_000),
    ("menengah", 50_000_000_000),
    ("besar", None),
)
CLASS_WINDOW_MONTHS = 12  # the year ending at the latest reported month
CLASS_MIN_MONTHS = 3  # fewer reported months in the window: no class yet
# The months the ledger takes: those that begin and end inside the contracts' instants
# [2000, 2100) (a class is dated at the end of its latest month; 2099-12 ends at 2100).
FIRST_PERIOD, LAST_PERIOD = "2000-01", "2099-11"


class Review(BaseModel):
    decision: Literal["approve", "reject"]
    grade: str | None
    reviewer_id: str
    notes: str


class Product(BaseModel):
    product_id: str
    category: str | None = None
    certified: bool = False
    reviews: dict[str, Review] = Field(default_factory=dict)  # by level
    outcome: Literal["rejected", "curated"] | None = None
    grade: str | None = None
    listed: bool = False
    export_facilitated: bool = False
    # What coaching, the owner of validity, last said: the kinds valid for the product, and
    # the revision of that statement (0: none yet).
    valid_kinds: list[str] = Field(default_factory=list)
    validity_revision: int = 0


class Sale(BaseModel):
    period: str
    revenue_idr: int
    transactions: int
    channel: str
    source_ref: str


class Referral(BaseModel):
    referral_id: str
    stages: list[str]
    status: Literal["referred", "approved", "declined"] = "referred"


class Marketplace(BaseModel):
    participant_id: str
    # From participant-registered: whose region the participant is in, for the HTTP scope of
    # the kota and kecamatan offices (shared.auth). None until it arrived.
    city: str | None = None
    kecamatan: str | None = None
    stages: list[str] = Field(default_factory=list)  # those reported by other services
    products: list[Product] = Field(default_factory=list)
    sales: list[Sale] = Field(default_factory=list)  # one per month, by period
    source_refs: list[str] = Field(default_factory=list)
    business_class: BusinessClass | None = None  # the last one announced
    referral: Referral | None = None
    # PDP markers, kept for good so that facts arriving later are held to them.
    consent_withdrawn_at: datetime | None = None
    erased_at: datetime | None = None

    def product(self, product_id: str) -> Product:
        found = next((p for p in self.products if p.product_id == product_id), None)
        if found is None:
            found = Product(product_id=product_id)
            self.products.append(found)
        return found

    def mark(self, stage: str) -> None:
        if stage not in self.stages:
            self.stages.append(stage)


# ------------------------------------------------------------------------------ facts


def record_registration(state: Marketplace, city: str, kecamatan: str) -> None:
    """Registered, and where: the region the kota and kecamatan offices' scope reads."""
    state.mark("registered")
    state.city, state.kecamatan = city, kecamatan


def record_stage(state: Marketplace, stage: Stage) -> None:
    """Another service says the participant passed ``stage`` (counted for the referral)."""
    state.mark(stage)


def apply_validity(
    product: Product, revision: int, kinds: Sequence[str], certified: bool | None = None
) -> bool:
    """Coaching's word on a product: the kinds valid for it and whether it is certified
    (a certification or a change of the kinds says it is, a lapse that it is not). Taken
    only when newer than what is held (a higher revision), so the three topics that carry
    it may deliver in any order and a replayed old one changes nothing; whether it was
    taken. Revision 0 (a coaching that predates revisions) sets the certification only, as
    before, and leaves the kinds."""
    if revision:
        if revision <= product.validity_revision:
            return False
        product.validity_revision, product.valid_kinds = revision, sorted(kinds)
    if certified is not None:
        product.certified = certified
    return True


def record_certified(
    state: Marketplace, product_id: str, category: str, revision: int, kinds: Sequence[str]
) -> None:
    """Coaching certified the product: its category and valid kinds (as
    :func:`record_valid_kinds`); the stage is passed, whatever came after."""
    record_valid_kinds(state, product_id, category, revision, kinds)
    state.mark("product-certified")


def record_lapse(state: Marketplace, product_id: str, revision: int, kinds: Sequence[str]) -> None:
    """Coaching says the product's certification lapsed (:func:`apply_validity`)."""
    apply_validity(state.product(product_id), revision, kinds, certified=False)


def record_valid_kinds(
    state: Marketplace, product_id: str, category: str, revision: int, kinds: Sequence[str]
) -> None:
    """Coaching says a certified product's valid kinds changed. Only sent while the product
    is certified, so it says that too, should it come before the product-certified of a
    lower revision (another topic)."""
    product = state.product(product_id)
    product.category = category
    apply_validity(product, revision, kinds, certified=True)


def record_review(state: Marketplace, product_id: str, level: str, review: Review) -> str | None:
    """Record the review, or say which earlier level it waits for (its caller keeps it
    until then, for a limited time); :class:`Refusal` when it can never apply."""
    product = state.product(product_id)
    if product.outcome is not None:
        raise Refusal("curation-closed", f"curation of {product_id} already ended")
    if level in product.reviews:
        raise Refusal("already-reviewed", f"level {level} already reviewed {product_id}")
    if level == "curator" and review.decision == "approve" and review.grade not in CHANNELS:
        raise Refusal("grade-required", "a curator's approval must carry grade A, B or C")
    awaited = [
        earlier for earlier in LEVELS[: LEVELS.index(level)] if earlier not in product.reviews
    ]
    if awaited:
        return awaited[0]
    product.reviews[level] = review
    return None


def record_sale(
    state: Marketplace, sale: Sale, at: datetime | None = None
) -> Literal["recorded", "replaced", "duplicate"]:
    """A month's report; a later one for the same month replaces it; a source_ref seen
    before changes nothing. A month outside [FIRST_PERIOD, LAST_PERIOD] is refused, and
    one after the month of ``at`` (when the report was made: the handler gives the fact's
    business time): a month cannot be reported before it began, and a mistyped year (2052
    for 2025) would otherwise anchor the class's window for good (nothing removes a month)."""
    if sale.source_ref in state.source_refs:
        return "duplicate"
    if not FIRST_PERIOD <= sale.period <= LAST_PERIOD:
        raise Refusal("period-out-of-range", f"the ledger takes {FIRST_PERIOD} to {LAST_PERIOD}")
    if at is not None and sale.period > f"{at.year:04d}-{at.month:02d}":
        raise Refusal("period-in-future", f"{sale.period} had not begun when it was reported")
    state.source_refs.append(sale.source_ref)
    earlier = next((s for s in state.sales if s.period == sale.period), None)
    if earlier is not None:
        state.sales.remove(earlier)
    state.sales.append(sale)
    state.sales.sort(key=lambda s: s.period)
    return "replaced" if earlier else "recorded"


# ---------------------------------------------------------------------- naik kelas (P6)


@dataclass(frozen=True)
class ClassAssessment:
    """The class the ledger gives, and on what basis."""

    business_class: BusinessClass
    annual_sales_idr: int
    basis_months: int
    annualised: bool
    assessed_at: datetime


@dataclass(frozen=True)
class ClassChanged:
    from_class: BusinessClass | None
    assessment: ClassAssessment


def _month_index(period: str) -> int:
    return int(period[:4]) * 12 + int(period[5:7]) - 1


def _period(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def period_end(period: str) -> datetime:
    """The end of the month ``period``: the first instant of the next one, in UTC."""
    following = _month_index(period) + 1
    return datetime(following // 12, following % 12 + 1, 1, tzinfo=UTC)


def class_of(annual_sales_idr: int) -> BusinessClass:
    """The PP 7/2021 class of an annual figure (CLASS_CEILINGS)."""
    for business_class, ceiling in CLASS_CEILINGS:
        if ceiling is None or annual_sales_idr <= ceiling:
            return business_class
    raise AssertionError("the last class has no ceiling")


def assess_class(sales: Sequence[Sale]) -> ClassAssessment | None:
    """The class the ledger gives; None with fewer than CLASS_MIN_MONTHS months to go on.

    The window is the CLASS_WINDOW_MONTHS months ending at the latest reported month
    (inclusive): relative to the ledger, not to the clock, so the same reports give the same
    class whenever and in whatever order they came. With all 12 months of the window
    reported, annual sales are their sum; with 3 to 11, the sum annualised (sum x 12 /
    months, rounded down to whole rupiah; ``annualised``). A figure above MAX_RUPIAH (the
    contracts' bound, far beyond any UMKM) is given as MAX_RUPIAH: besar either way.

    ``assessed_at`` is the end of the latest reported month (the first instant of the next,
    UTC): the business time the figure speaks for, not the moment it was computed, so a
    replay gives the same event.

    ``sales`` is sorted by period with one report per month, as :func:`record_sale` keeps
    it; only the window's months are read (at most 12 of the ledger's newest)."""
    if not sales:
        return None
    latest = sales[-1].period
    first = _period(_month_index(latest) - CLASS_WINDOW_MONTHS + 1)
    total = months = 0
    for sale in reversed(sales):
        if sale.period < first:
            break
        total += sale.revenue_idr
        months += 1
    if months < CLASS_MIN_MONTHS:
        return None
    annual = min(MAX_RUPIAH, total * CLASS_WINDOW_MONTHS // months)
    return ClassAssessment(
        business_class=class_of(annual),
        annual_sales_idr=annual,
        basis_months=months,
        annualised=months < CLASS_WINDOW_MONTHS,
        assessed_at=period_end(latest),
    )


def class_change(state: Marketplace) -> ClassChanged | None:
    """The ledger's class, when it differs from the last one announced (then recorded as
    announced, so each change is announced once and a repeat of the same ledger announces
    nothing). Up or down alike: a replaced month can lower the figure.

    When the ledger gives no class (fewer than 3 months in the window: a report long after
    the others can do it) nothing is announced and the last class announced stands. Once
    every report is in, the class announced last is the one the whole ledger gives,
    whatever the order the reports came in."""
    assessment = assess_class(state.sales)
    if assessment is None or assessment.business_class == state.business_class:
        return None
    change = ClassChanged(state.business_class, assessment)
    state.business_class = assessment.business_class
    return change


# ---------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Rejected:
    product: Product
    level: str
    notes: str


@dataclass(frozen=True)
class Curated:
    product: Product


@dataclass(frozen=True)
class Listed:
    product: Product
    channels: Sequence[str]


@dataclass(frozen=True)
class Delisted:
    product: Product
    reason: str


@dataclass(frozen=True)
class Exported:
    product: Product
    reasons: list[Finding]


Change = Rejected | Curated | Listed | Delisted | Exported


def _months_back(now: datetime, count: int) -> set[str]:
    months, year, month = set(), now.year, now.month
    for _ in range(count):
        months.add(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return months


def product_changes(state: Marketplace, now: datetime) -> list[Change]:
    """Each product's steps in order, as the facts allow: its curation ladder
    (:func:`decide_curation`), its listing (:func:`decide_listing`), its export
    (:func:`decide_export`, on the sales of the last months before ``now``)."""
    recent_months = len({s.period for s in state.sales} & _months_back(now, EXPORT_WINDOW_MONTHS))
    changes: list[Change] = []
    for product in state.products:
        curation = decide_curation(product)
        listing = decide_listing(state, product)
        export = decide_export(state, product, recent_months)
        changes += [change for change in (curation, listing, export) if change is not None]
    return changes


def decide_curation(product: Product) -> Rejected | Curated | None:
    """Walk a certified product's curation ladder, level by level: rejected at the first
    level that rejects, curated with the curator's grade once every level approved. A level
    not reviewed yet stops the walk (the reviews of later levels wait, parked, for it)."""
    if not product.certified or product.outcome is not None:
        return None
    for level in LEVELS:
        review = product.reviews.get(level)
        if review is None:
            return None
        if review.decision == "reject":
            product.outcome = "rejected"
            return Rejected(product, level, review.notes)
    product.outcome, product.grade = "curated", product.reviews[LEVELS[-1]].grade
    return Curated(product)


def decide_listing(state: Marketplace, product: Product) -> Listed | Delisted | None:
    """A curated product is listed on its grade's channels while it is certified, delisted
    when its certification lapses, listed again when it is renewed; listing passes the
    stage."""
    if product.outcome != "curated" or not product.grade or product.certified == product.listed:
        return None
    product.listed = product.certified
    if not product.listed:
        return Delisted(product, "certification-lapsed")
    state.mark("product-listed")
    return Listed(product, CHANNELS[product.grade])


def decide_export(state: Marketplace, product: Product, recent_months: int) -> Exported | None:
    """Export facilitation (go-international), once: a product listed with grade A, sales
    reported in ``recent_months`` >= 3 of the last 6, the certificates its category needs
    valid as coaching said (issued, unexpired, unrevoked: it owns that rule); not after a
    stop."""
    if (
        not product.listed
        or product.grade != EXPORT_GRADE
        or product.export_facilitated
        or stopped(state)
    ):
        return None
    needed = EXPORT_CERTIFICATES.get(product.category, EXPORT_CERTIFICATES[None])
    if recent_months < EXPORT_SALES_MONTHS or not set(needed) <= set(product.valid_kinds):
        return None
    product.export_facilitated = True
    return Exported(
        product,
        [
            Finding(code="grade-a-listed", message="listed with curation grade A"),
            Finding(
                code="sales-3-of-6-months",
                message=f"sales reported in {recent_months} of the last 6 months",
            ),
            Finding(code="certificates", message=" and ".join(needed) + " valid"),
        ],
    )


def stages_met(state: Marketplace) -> list[str]:
    """Stages passed at some point (a product listed once counts even if delisted since)."""
    met = set(state.stages)
    if len({s.period for s in state.sales}) >= FINANCING_SALES_MONTHS:
        met.add("sales-reported-3-months")
    return [stage for stage in STAGES if stage in met]


def due_for_referral(state: Marketplace) -> list[str] | None:
    """The stages met, when they are enough for a (first and only) referral."""
    if state.referral is not None or stopped(state):
        return None
    met = stages_met(state)
    return met if len(met) >= FINANCING_STAGES_NEEDED else None


def decide_financing(
    state: Marketplace, referral_id: str, approved: bool, amount_idr: int, max_amount_idr: int
) -> Referral:
    """The bank's decision on the participant's referral, once; an approval within the
    programme's maximum. :class:`Refusal` otherwise."""
    referral = state.referral
    assert referral is not None and referral.referral_id == referral_id, "the index named it"
    if referral.status != "referred":
        raise Refusal("already-decided", f"referral {referral_id} was decided")
    if approved and amount_idr > max_amount_idr:
        raise Refusal("amount-over-maximum", f"{amount_idr} exceeds {max_amount_idr}")
    referral.status = "approved" if approved else "declined"
    return referral


# ------------------------------------------------------------------- PDP (UU 27/2022)
# What the marketplace holds that is personal: the reviewers' free-text notes on a
# participant's product (they may name the business or its owner): "business-id". What the
# funnel and the statistics need stays, identifying no one: stages, products' categories,
# grades and listings, the monthly sales ledger, the referral and its outcome.

ERASED_CATEGORIES = ("business-id",)


def stopped(state: Marketplace) -> bool:
    """Consent withdrawn or data erased: no referral and no export facilitation start for
    the participant; what they did is still recorded (the funnel counts it)."""
    return state.consent_withdrawn_at is not None or state.erased_at is not None


def withdraw_consent(state: Marketplace, at: datetime) -> None:
    if state.consent_withdrawn_at is None:
        state.consent_withdrawn_at = at


def erase(state: Marketplace, at: datetime) -> datetime:
    """Erase what is personal; returns when it was first erased (a repeat changes nothing
    and reports the same moment, at MongoDB's precision)."""
    if state.erased_at is None:
        state.erased_at = at.replace(microsecond=at.microsecond // 1000 * 1000)
    scrub(state)
    return state.erased_at


def scrub(state: Marketplace) -> None:
    """After an erasure, whatever a fact just added is blanked too (order-proof)."""
    if state.erased_at is None:
        return
    for product in state.products:
        for level, review in product.reviews.items():
            if review.notes:
                product.reviews[level] = review.model_copy(update={"notes": ""})
