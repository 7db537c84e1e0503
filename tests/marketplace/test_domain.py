"""Marketplace rules, without I/O."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from services.marketplace import domain
from services.marketplace.domain import (
    ClassChanged,
    Curated,
    Delisted,
    Exported,
    Listed,
    Marketplace,
    Rejected,
    Review,
    Sale,
)
from shared.contracts import MAX_RUPIAH, Refusal, in_bounds

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
    with pytest.raises(Refusal) as closed:
        domain.record_review(state, "prod", "dinas", approve())
    assert closed.value.code == "curation-closed"


def test_review_errors() -> None:
    state = certified()
    domain.record_review(state, "prod", "pendamping", approve())
    with pytest.raises(Refusal) as twice:
        domain.record_review(state, "prod", "pendamping", approve())
    assert twice.value.code == "already-reviewed"
    with pytest.raises(Refusal) as no_grade:
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


def valid(state: Marketplace, revision: int, *kinds: str) -> bool:
    """Coaching says ``kinds`` are valid for the product (revision ``revision``)."""
    return domain.apply_validity(state.product("prod"), revision, kinds)


def test_go_international_needs_grade_a_3_of_6_months_and_certificates() -> None:
    state = listed_a()
    for period in ("2024-05", "2024-03", "2023-11"):  # the window is 2023-12 .. 2024-05
        domain.record_sale(state, sale(period))
    valid(state, 1, "HKI_MEREK", "NIB")
    assert changes(state) == []
    domain.record_sale(state, sale("2024-01"))
    assert changes(state) == [Exported]
    assert changes(state) == []  # once


def test_go_international_for_food_also_needs_halal() -> None:
    state = listed_a("makanan-minuman")
    for period in ("2024-05", "2024-04", "2024-03"):
        domain.record_sale(state, sale(period))
    valid(state, 1, "HKI_MEREK", "NIB", "PIRT")  # HALAL expired or of another product
    assert changes(state) == []
    valid(state, 2, "HALAL", "HKI_MEREK", "NIB", "PIRT")
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
    valid(state, 1, "HKI_MEREK")
    assert Exported not in changes(state)


def test_a_revoked_hki_merek_or_an_expired_halal_as_coaching_says_stops_export() -> None:
    """The marketplace holds no certificates: what coaching last said is valid decides."""
    for category, kinds_left in (
        ("kriya", ("NIB",)),  # HKI_MEREK revoked
        ("makanan-minuman", ("HKI_MEREK", "NIB", "PIRT")),  # HALAL expired
    ):
        state = listed_a(category)
        for period in ("2024-05", "2024-04", "2024-03"):
            domain.record_sale(state, sale(period))
        valid(state, 3, *kinds_left)
        assert changes(state) == []
        assert not valid(state, 2, "HALAL", "HKI_MEREK", "NIB", "PIRT")  # late: not taken
        assert changes(state) == []
        assert state.product("prod").valid_kinds == sorted(kinds_left)


def test_coachings_word_is_taken_newest_first_whatever_the_order() -> None:
    """Certification, lapse and validity changes come on three topics: each carries a
    revision, and the highest one seen wins, for the kinds and for the certification."""
    said = [
        (1, ("NIB",), True),  # product-certified
        (2, ("HKI_MEREK", "NIB"), True),  # product-certificates-changed (still certified)
        (3, ("HKI_MEREK",), False),  # product-certification-lapsed: NIB revoked
    ]
    for order in itertools.permutations(said):
        product = domain.Product(product_id="prod")
        for revision, kinds, certified in order:
            domain.apply_validity(product, revision, kinds, certified)
        assert (product.validity_revision, product.valid_kinds, product.certified) == (
            3,
            ["HKI_MEREK"],
            False,
        )
    for order in itertools.permutations(said[:2]):  # the change before its certification
        product = domain.Product(product_id="prod")
        for revision, kinds, certified in order:
            domain.apply_validity(product, revision, kinds, certified)
        assert (product.validity_revision, product.certified) == (2, True)
    legacy = domain.Product(product_id="prod")  # a coaching that predates revisions
    assert domain.apply_validity(legacy, 0, [], certified=True)
    assert legacy.certified and legacy.valid_kinds == [] and legacy.validity_revision == 0


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


def referred() -> Marketplace:
    state = Marketplace(participant_id="p")
    state.referral = domain.Referral(referral_id="r", stages=list(domain.STAGES))
    return state


def test_the_bank_decides_a_referral_once_and_approves_at_most_the_maximum() -> None:
    state = referred()
    with pytest.raises(Refusal) as refused:
        domain.decide_financing(state, "r", True, 50_000_001, max_amount_idr=50_000_000)
    assert refused.value.code == "amount-over-maximum" and state.referral.status == "referred"
    assert domain.decide_financing(state, "r", True, 50_000_000, 50_000_000).status == "approved"
    with pytest.raises(Refusal) as refused:
        domain.decide_financing(state, "r", False, 0, 50_000_000)
    assert refused.value.code == "already-decided"
    declined = referred()
    assert domain.decide_financing(declined, "r", False, 0, 50_000_000).status == "declined"


def test_a_certification_passes_the_stage_and_a_lapse_does_not_take_it_back() -> None:
    state = Marketplace(participant_id="p")
    domain.record_certified(state, "prod", "kriya", 1, ["HKI_MEREK", "NIB"])
    domain.record_lapse(state, "prod", 2, ["NIB"])
    product = state.product("prod")
    assert "product-certified" in state.stages and not product.certified
    assert product.category == "kriya" and product.valid_kinds == ["NIB"]
    assert product.validity_revision == 2
    domain.record_valid_kinds(state, "prod", "kriya", 3, ["HKI_MEREK", "NIB"])
    assert product.certified and product.valid_kinds == ["HKI_MEREK", "NIB"]


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


# ------------------------------------------------------------------- naik kelas (P6)

BN = 1_000_000_000  # Rp 1 billion


def ledger(*months: tuple[str, int]) -> Marketplace:
    state = Marketplace(participant_id="p")
    for period, revenue in months:
        domain.record_sale(state, monthly(period, revenue))
    return state


def monthly(period: str, revenue: int, ref: str | None = None) -> Sale:
    return Sale(
        period=period,
        revenue_idr=revenue,
        transactions=1,
        channel="qris",
        source_ref=ref or f"{period}-{revenue}",
    )


def months_of(year: int, count: int, revenue: int, first_month: int = 1) -> list[tuple[str, int]]:
    index = year * 12 + first_month - 1
    return [(f"{(index + i) // 12:04d}-{(index + i) % 12 + 1:02d}", revenue) for i in range(count)]


@pytest.mark.parametrize(
    ("annual", "expected"),
    [
        (0, "mikro"),
        (2 * BN, "mikro"),
        (2 * BN + 1, "kecil"),
        (15 * BN, "kecil"),
        (15 * BN + 1, "menengah"),
        (50 * BN, "menengah"),
        (50 * BN + 1, "besar"),
    ],
)
def test_pp_7_2021_classes_by_annual_sales(annual: int, expected: str) -> None:
    assert domain.class_of(annual) == expected


def test_fewer_than_three_months_give_no_class() -> None:
    assert domain.assess_class([]) is None
    assert domain.assess_class(ledger(*months_of(2024, 2, 5 * BN)).sales) is None


def test_three_months_are_annualised() -> None:
    assessment = domain.assess_class(ledger(*months_of(2024, 3, BN)).sales)
    assert assessment == domain.ClassAssessment(
        business_class="kecil",  # 3 bn x 12 / 3 = 12 bn
        annual_sales_idr=12 * BN,
        basis_months=3,
        annualised=True,
        assessed_at=datetime(2024, 4, 1, tzinfo=UTC),  # the end of March, the latest month
    )


def test_eleven_months_are_annualised_rounded_down_to_the_rupiah() -> None:
    state = ledger(*months_of(2024, 11, 100_000_001))
    assessment = domain.assess_class(state.sales)
    assert assessment is not None
    assert assessment.annual_sales_idr == 100_000_001 * 11 * 12 // 11 == 1_200_000_012
    assert (assessment.basis_months, assessment.annualised) == (11, True)
    assert assessment.business_class == "mikro"
    odd = domain.assess_class(ledger(*months_of(2024, 7, 1)[:-1], ("2024-07", 4)).sales)
    assert odd is not None and odd.annual_sales_idr == 10 * 12 // 7 == 17  # not 17.14


def test_twelve_months_are_summed_and_the_window_ends_at_the_latest_month() -> None:
    # 2023-01 .. 2024-02: the window is the 12 months ending 2024-02 (2023-03 .. 2024-02)
    state = ledger(*months_of(2023, 2, 40 * BN), *months_of(2023, 12, BN, first_month=3))
    assessment = domain.assess_class(state.sales)
    assert assessment is not None
    assert (assessment.annual_sales_idr, assessment.basis_months) == (12 * BN, 12)
    assert not assessment.annualised and assessment.business_class == "kecil"
    assert assessment.assessed_at == datetime(2024, 3, 1, tzinfo=UTC)
    december = domain.assess_class(ledger(*months_of(2024, 12, BN)).sales)
    assert december is not None and december.assessed_at == datetime(2025, 1, 1, tzinfo=UTC)


def test_months_with_gaps_count_those_reported_in_the_window() -> None:
    state = ledger(("2023-01", BN), ("2023-07", BN), ("2023-12", BN), ("2024-06", BN))
    assessment = domain.assess_class(state.sales)  # window 2023-07 .. 2024-06: three months
    assert assessment is not None
    assert (assessment.basis_months, assessment.annual_sales_idr) == (3, 12 * BN)


def test_a_figure_beyond_the_contracts_bound_is_given_at_the_bound() -> None:
    huge = domain.assess_class(ledger(*months_of(2024, 12, MAX_RUPIAH)).sales)
    assert huge is not None
    assert (huge.annual_sales_idr, huge.business_class) == (MAX_RUPIAH, "besar")


def test_the_ledger_takes_months_whose_class_can_be_dated() -> None:
    state = Marketplace(participant_id="p")
    for period in ("1999-12", "2099-12", "0000-01", "9999-12"):
        with pytest.raises(Refusal) as refused:
            domain.record_sale(state, monthly(period, 1))
        assert refused.value.code == "period-out-of-range"
    for period in (domain.FIRST_PERIOD, domain.LAST_PERIOD):
        assert domain.record_sale(state, monthly(period, 1)) == "recorded"
        assert in_bounds(domain.period_end(period)) == domain.period_end(period)
    assert state.source_refs == ["2000-01-1", "2099-11-1"]


def test_a_month_not_begun_when_reported_is_refused() -> None:
    """A mistyped year would otherwise anchor the class's window in the future for good."""
    state = ledger(("2025-01", BN), ("2025-02", BN), ("2025-03", BN))
    reported = datetime(2025, 4, 10, tzinfo=UTC)
    with pytest.raises(Refusal) as refused:
        domain.record_sale(state, monthly("2052-04", 1), reported)
    assert refused.value.code == "period-in-future"
    assert domain.record_sale(state, monthly("2025-04", BN), reported) == "recorded"
    assert [s.period for s in state.sales][-1] == "2025-04"


def test_the_first_class_is_announced_from_null_and_once() -> None:
    state = ledger(*months_of(2024, 2, BN))
    assert domain.class_change(state) is None  # two months: no class yet
    domain.record_sale(state, monthly("2024-03", BN))
    change = domain.class_change(state)
    assert change is not None
    assert (change.from_class, change.assessment.business_class) == (None, "kecil")
    assert state.business_class == "kecil"
    assert domain.class_change(state) is None  # the same ledger: nothing new


def test_naik_kelas_and_a_replaced_month_moving_the_class_down() -> None:
    state = ledger(*months_of(2024, 3, 150_000_000))  # 1.8 bn a year: mikro
    first = domain.class_change(state)
    assert first is not None and first.assessment.business_class == "mikro"
    domain.record_sale(state, monthly("2024-04", 900_000_000))  # 1.35 bn x 12 / 4 = 4.05 bn
    up = domain.class_change(state)
    assert up is not None
    assert (up.from_class, up.assessment.business_class) == ("mikro", "kecil")
    assert up.assessment.annual_sales_idr == 4_050_000_000
    # April's report is corrected (a new source_ref replaces the month): back to mikro
    assert domain.record_sale(state, monthly("2024-04", 150_000_000, "koreksi")) == "replaced"
    down = domain.class_change(state)
    assert down is not None
    assert (down.from_class, down.assessment.business_class) == ("kecil", "mikro")
    assert down.assessment.annual_sales_idr == 1_800_000_000


def test_no_class_leaves_the_last_one_announced() -> None:
    state = ledger(*months_of(2022, 3, BN))
    assert domain.class_change(state) is not None
    domain.record_sale(state, monthly("2024-01", 40 * BN))  # alone in its window
    assert domain.assess_class(state.sales) is None
    assert domain.class_change(state) is None and state.business_class == "kecil"


def announced(reports: list[Sale]) -> list[ClassChanged]:
    state, changed = Marketplace(participant_id="p"), []
    for report in reports:
        domain.record_sale(state, report)
        if (change := domain.class_change(state)) is not None:
            changed.append(change)
    return changed


def test_reports_in_any_order_end_at_the_same_class_each_change_announced_once() -> None:
    reports = [
        monthly("2024-01", 100_000_000),
        monthly("2024-02", 100_000_000),
        monthly("2024-03", 3 * BN),
        monthly("2024-04", 100_000_000),
        monthly("2024-05", 9 * BN),
        monthly("2023-06", 100_000_000),
    ]
    expected = domain.assess_class(ledger(*((r.period, r.revenue_idr) for r in reports)).sales)
    assert expected is not None and expected.business_class == "menengah"  # 24.8 bn
    paths = set()
    for order in itertools.permutations(reports):
        changed = announced(list(order))
        paths.add(tuple(c.assessment.business_class for c in changed))
        assert changed[0].from_class is None
        for before, after in itertools.pairwise(changed):
            assert after.from_class == before.assessment.business_class
        assert all(c.from_class != c.assessment.business_class for c in changed)
        # the last class announced is the whole ledger's (its figures are those of the
        # report that changed the class, which need not be the last report)
        assert changed[-1].assessment.business_class == expected.business_class
    assert len(paths) > 3 and ("mikro", "menengah") in paths  # the orders took other ways
