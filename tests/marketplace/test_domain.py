"""Marketplace rules, without I/O."""

from datetime import UTC, datetime, timedelta

import pytest

from services.marketplace import domain
from services.marketplace.domain import (
    Certificate,
    Curated,
    Delisted,
    Exported,
    Listed,
    Marketplace,
    NotApplicable,
    Rejected,
    Review,
    Sale,
)

NOW = datetime(2024, 5, 15, tzinfo=UTC)


def approve(grade: str | None = None) -> Review:
    return Review(decision="approve", grade=grade, reviewer_id="r", notes="ok")


def certified(category: str = "kriya") -> Marketplace:
    state = Marketplace(participant_id="p")
    product = state.product("prod")
    product.certified, product.category = True, category
    return state


def changes(state: Marketplace, now: datetime = NOW) -> list[type]:
    return [type(c) for c in domain.product_changes(state, now)]


def test_the_ladder_is_walked_in_order_and_early_reviews_wait() -> None:
    state = certified()
    # Before its level's turn a review is not recorded: it says which level it waits for.
    assert domain.record_review(state, "prod", "curator", approve("B")) == "pendamping"
    assert domain.record_review(state, "prod", "dinas", approve()) == "pendamping"
    assert changes(state) == []
    assert domain.record_review(state, "prod", "pendamping", approve()) is None
    assert domain.record_review(state, "prod", "dinas", approve()) == "kecamatan"
    assert domain.record_review(state, "prod", "kecamatan", approve()) is None
    assert domain.record_review(state, "prod", "dinas", approve()) is None
    assert changes(state) == []  # the curator has not reviewed yet
    assert domain.record_review(state, "prod", "curator", approve("B")) is None
    assert changes(state) == [Curated, Listed]
    [listed] = [c for c in domain.product_changes(state, NOW)] or [None]
    assert listed is None  # decided once
    assert state.products[0].grade == "B"


@pytest.mark.parametrize(("grade", "channels"), list(domain.CHANNELS.items()))
def test_channels_by_grade(grade: str, channels: tuple[str, ...]) -> None:
    state = certified()
    for level in domain.LEVELS:
        domain.record_review(state, "prod", level, approve(grade if level == "curator" else None))
    listed = [c for c in domain.product_changes(state, NOW) if isinstance(c, Listed)]
    assert list(listed[0].channels) == list(channels)


def test_a_reject_at_any_level_ends_curation() -> None:
    state = certified()
    domain.record_review(state, "prod", "pendamping", approve())
    domain.record_review(
        state,
        "prod",
        "kecamatan",
        Review(decision="reject", grade=None, reviewer_id="k", notes="kemasan"),
    )
    domain.record_review(state, "prod", "curator", approve("A"))
    [rejected] = domain.product_changes(state, NOW)
    assert isinstance(rejected, Rejected)
    assert (rejected.level, rejected.notes) == ("kecamatan", "kemasan")
    with pytest.raises(NotApplicable) as closed:
        domain.record_review(state, "prod", "dinas", approve())
    assert closed.value.code == "curation-closed"


def test_review_errors() -> None:
    state = certified()
    domain.record_review(state, "prod", "pendamping", approve())
    with pytest.raises(NotApplicable) as twice:
        domain.record_review(state, "prod", "pendamping", approve())
    assert twice.value.code == "already-reviewed"
    with pytest.raises(NotApplicable) as no_grade:
        domain.record_review(state, "prod", "curator", approve())
    assert no_grade.value.code == "grade-required"


def test_a_lapse_delists_and_a_renewal_lists_again() -> None:
    state = certified()
    for level in domain.LEVELS:
        domain.record_review(state, "prod", level, approve("C" if level == "curator" else None))
    assert changes(state) == [Curated, Listed]
    state.products[0].certified = False
    assert changes(state) == [Delisted]
    state.products[0].certified = True
    assert changes(state) == [Listed]


def listed_a(category: str = "kriya") -> Marketplace:
    state = certified(category)
    for level in domain.LEVELS:
        domain.record_review(state, "prod", level, approve("A" if level == "curator" else None))
    domain.product_changes(state, NOW)
    return state


def sale(period: str, ref: str | None = None) -> Sale:
    return Sale(
        period=period,
        revenue_idr=1_000_000,
        transactions=10,
        channel="qris",
        source_ref=ref or f"ref-{period}",
    )


def cert(kind: str, product: str | None = None, days: int = 365) -> Certificate:
    return Certificate(
        certificate_id=f"{kind}-{product}-{days}",
        kind=kind,
        product_id=product,
        expires_at=NOW + timedelta(days=days),
    )


def test_go_international_needs_grade_a_3_of_6_months_and_certificates() -> None:
    state = listed_a()
    for period in ("2024-05", "2024-03", "2023-11"):  # the window is 2023-12 .. 2024-05
        domain.record_sale(state, sale(period))
    domain.add_certificates(state, [cert("HKI_MEREK")])
    assert changes(state) == []
    domain.record_sale(state, sale("2024-01"))
    assert changes(state) == [Exported]
    assert changes(state) == []  # once


def test_go_international_for_food_also_needs_halal() -> None:
    state = listed_a("makanan-minuman")
    for period in ("2024-05", "2024-04", "2024-03"):
        domain.record_sale(state, sale(period))
    domain.add_certificates(state, [cert("HKI_MEREK"), cert("HALAL", "another-product")])
    assert changes(state) == []
    domain.add_certificates(state, [cert("HALAL", "prod", days=-1)])  # expired
    assert changes(state) == []
    domain.add_certificates(state, [cert("HALAL", "prod", days=30)])
    exported = domain.product_changes(state, NOW)
    assert [type(c) for c in exported] == [Exported]
    assert {r.code for r in exported[0].reasons} == {  # type: ignore[union-attr]
        "grade-a-listed",
        "sales-3-of-6-months",
        "certificates",
    }


def test_grade_b_never_goes_international() -> None:
    state = certified()
    for level in domain.LEVELS:
        domain.record_review(state, "prod", level, approve("B" if level == "curator" else None))
    for period in ("2024-05", "2024-04", "2024-03"):
        domain.record_sale(state, sale(period))
    domain.add_certificates(state, [cert("HKI_MEREK")])
    assert Exported not in changes(state)


def test_sales_reports_replace_by_month_and_repeat_by_source_ref() -> None:
    state = Marketplace(participant_id="p")
    assert domain.record_sale(state, sale("2024-01", "a")) == "recorded"
    assert domain.record_sale(state, sale("2024-01", "a")) == "duplicate"
    second = Sale(
        period="2024-01", revenue_idr=5, transactions=1, channel="e-order", source_ref="b"
    )
    assert domain.record_sale(state, second) == "replaced"
    assert domain.record_sale(state, sale("2023-12", "c")) == "recorded"
    assert [(s.period, s.revenue_idr) for s in state.sales] == [
        ("2023-12", 1_000_000),
        ("2024-01", 5),
    ]
    assert domain.record_sale(state, sale("2024-02", "a")) == "duplicate"  # ref seen before


def test_referral_needs_six_stages_and_happens_once() -> None:
    state = listed_a()
    for stage in ("registered", "training-completed"):
        state.mark(stage)
    for period in ("2024-01", "2024-02", "2024-03"):
        domain.record_sale(state, sale(period))
    state.mark("product-certified")
    assert domain.due_for_referral(state) is None  # mentoring missing: 5 of 7
    state.mark("mentoring-completed")
    stages = domain.due_for_referral(state)
    assert stages == list(domain.STAGES)
    state.referral = domain.Referral(referral_id="r", stages=stages)
    assert domain.due_for_referral(state) is None


# ------------------------------------------------------------------- PDP: consent, erasure


def six_stages() -> Marketplace:
    state = Marketplace(participant_id="p")
    for stage in ("registered", "training-completed", "mentoring-completed"):
        state.mark(stage)
    state.mark("product-certified")
    state.mark("product-listed")
    for period in ("2024-01", "2024-02", "2024-03"):
        domain.record_sale(state, Sale(period=period, revenue_idr=1, transactions=1,
                                       channel="qris", source_ref=period))  # fmt: skip
    return state


def test_a_withdrawal_or_an_erasure_stops_the_referral() -> None:
    assert domain.due_for_referral(six_stages()) is not None
    withdrawn, erased = six_stages(), six_stages()
    domain.withdraw_consent(withdrawn, NOW)
    domain.withdraw_consent(withdrawn, NOW + timedelta(days=1))
    assert withdrawn.consent_withdrawn_at == NOW
    domain.erase(erased, NOW)
    assert domain.due_for_referral(withdrawn) is None and domain.due_for_referral(erased) is None
    assert domain.stages_met(erased) == list(domain.STAGES)  # the funnel still counts them


def test_an_erasure_blanks_reviewers_notes_now_and_later_once() -> None:
    state = certified()
    domain.record_review(state, "prod", "pendamping", approve())
    domain.scrub(state)
    assert state.product("prod").reviews["pendamping"].notes == "ok"  # nothing erased yet
    first = domain.erase(state, NOW.replace(microsecond=987654))
    assert first == NOW.replace(microsecond=987000)
    assert domain.erase(state, NOW + timedelta(days=1)) == first
    domain.record_review(state, "prod", "kecamatan", approve())
    domain.scrub(state)
    reviews = state.product("prod").reviews
    assert [r.notes for r in reviews.values()] == ["", ""]
    assert [r.decision for r in reviews.values()] == ["approve", "approve"]
