"""The marketplace on the real Kafka broker and the real mongod."""

from __future__ import annotations

import uuid

import httpx
import pytest

from shared.contracts import (
    ExportFacilitated,
    FinancialReportRecorded,
    FinancingApproved,
    FinancingDecided,
    FinancingDeclined,
    FinancingReferred,
    MentoringCompleted,
    ProductCertificationLapsed,
    ProductCurated,
    ProductCurationRejected,
    ProductDelisted,
    ProductListed,
    TrainingCompleted,
)
from tests import auth_helpers
from tests.coaching.fixtures import participant
from tests.conftest import random_id
from tests.marketplace.fixtures import (
    NOW,
    MarketplaceUnderTest,
    certified,
    processed,
    review,
    sales,
    valid_kinds,
)

pytestmark = pytest.mark.integration
LADDER = ("pendamping", "kecamatan", "dinas", "curator")


async def approve_all(m: MarketplaceUnderTest, product_id: str, grade: str) -> None:
    for level in LADDER:
        await m.send(review(product_id, level, grade=grade if level == "curator" else None))


async def test_out_of_order_reviews_wait_for_their_turn_then_list(
    marketplace: MarketplaceUnderTest,
) -> None:
    pid, prod = str(uuid.uuid4()), random_id("prod-")
    # curator first, then dinas, both before the product's certification has even arrived
    await processed(marketplace, await marketplace.send(review(prod, "curator", grade="B")))
    await processed(marketplace, await marketplace.send(review(prod, "dinas")))
    await marketplace.send(certified(pid, prod))
    await marketplace.send(review(prod, "kecamatan"))
    await marketplace.send(review(prod, "pendamping"))
    [curated] = await marketplace.wait(ProductCurated, pid)
    [listed] = await marketplace.wait(ProductListed, pid)
    assert curated.json()["grade"] == "B"
    assert listed.json()["channels"] == ["e-order", "online"]
    assert listed.key == pid.encode() and listed.headers["ce_source"] == "marketplace"


async def test_a_rejection_ends_curation_and_later_reviews_are_refused(
    marketplace: MarketplaceUnderTest,
) -> None:
    pid, prod = str(uuid.uuid4()), random_id("prod-")
    await marketplace.send(certified(pid, prod))
    await marketplace.send(review(prod, "pendamping"))
    await marketplace.send(review(prod, "kecamatan", "reject", notes="label belum lengkap"))
    [rejected] = await marketplace.wait(ProductCurationRejected, pid)
    assert (rejected.json()["level"], rejected.json()["notes"]) == (
        "kecamatan",
        "label belum lengkap",
    )
    await marketplace.send(review(prod, "dinas"))
    dead = await marketplace.dead(prod.encode())
    assert dead.headers["dlq_error_type"] == "curation-closed"
    assert marketplace.of(ProductListed, pid) == []


async def test_a_curator_approval_without_grade_is_dead_lettered(
    marketplace: MarketplaceUnderTest,
) -> None:
    pid, prod = str(uuid.uuid4()), random_id("prod-")
    await marketplace.send(certified(pid, prod))
    await marketplace.send(review(prod, "curator"))
    assert (await marketplace.dead(prod.encode())).headers["dlq_error_type"] == "grade-required"


async def test_a_review_refused_once_its_product_arrives_is_dead_lettered_at_once(
    marketplace: MarketplaceUnderTest,
) -> None:
    """The review comes before its product's certification (another topic): it waits; when
    the product arrives it is refused, and reaches the DLQ after that batch, not at the next
    periodic expiry check (five minutes by default)."""
    pid, prod = str(uuid.uuid4()), random_id("prod-")
    meta = await marketplace.send(review(prod, "curator"))
    await processed(marketplace, meta)
    await marketplace.send(certified(pid, prod))
    assert (await marketplace.dead(prod.encode())).headers["dlq_error_type"] == "grade-required"


async def test_a_lapsed_certification_delists(marketplace: MarketplaceUnderTest) -> None:
    pid, prod = str(uuid.uuid4()), random_id("prod-")
    await marketplace.send(certified(pid, prod))
    await approve_all(marketplace, prod, "C")
    [listed] = await marketplace.wait(ProductListed, pid)
    assert listed.json()["channels"] == ["online", "bazaar"]
    await marketplace.send(
        ProductCertificationLapsed(
            product_id=prod, participant_id=pid, category="kriya", reasons=[]
        )
    )
    [delisted] = await marketplace.wait(ProductDelisted, pid)
    assert delisted.json()["reason"] == "certification-lapsed"


async def test_sales_reports_are_recorded_replaced_and_deduplicated(
    marketplace: MarketplaceUnderTest,
) -> None:
    pid = str(uuid.uuid4())
    first = sales(pid, "2024-03", 1_000_000, ref="qris-1")
    await marketplace.send(first)
    await marketplace.send(sales(pid, "2024-04", 2_000_000, ref="qris-2"))
    await marketplace.send(sales(pid, "2024-03", 1_500_000, ref="eorder-7"))  # replaces March
    await processed(marketplace, await marketplace.send(first))  # the same source_ref again
    recorded = await marketplace.wait(FinancialReportRecorded, pid, 3)
    await marketplace.events.caught_up()
    assert len(marketplace.of(FinancialReportRecorded, pid)) == 3
    assert [r.json()["replaced"] for r in recorded] == [False, False, True]
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        ledger = (await http.get(f"{marketplace.url}/participants/{pid}/sales")).json()
        missing = await http.get(f"{marketplace.url}/participants/{uuid.uuid4()}/sales")
    assert [(m["period"], m["revenue_idr"]) for m in ledger["months"]] == [
        ("2024-03", 1_500_000),
        ("2024-04", 2_000_000),
    ]
    assert ledger["total_revenue_idr"] == 3_500_000
    assert missing.status_code == 404


def recent_periods(count: int) -> list[str]:
    periods, year, month = [], NOW.year, NOW.month
    for _ in range(count):
        periods.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return periods


async def test_a_grade_a_food_product_goes_international_once(
    marketplace: MarketplaceUnderTest,
) -> None:
    pid, prod = str(uuid.uuid4()), random_id("prod-")
    await marketplace.send(certified(pid, prod, "makanan-minuman", ("NIB", "PIRT", "HALAL")))
    await approve_all(marketplace, prod, "A")
    await marketplace.wait(ProductListed, pid)
    for period in recent_periods(3):
        await marketplace.send(sales(pid, period))
    await processed(marketplace, await marketplace.send(sales(pid, recent_periods(1)[0])))
    assert marketplace.of(ExportFacilitated, pid) == []  # no HKI_MEREK yet
    kinds = ("HALAL", "HKI_MEREK", "NIB", "PIRT")  # coaching says an HKI_MEREK is valid now
    await marketplace.send(valid_kinds(pid, prod, 2, kinds, "makanan-minuman"))
    [exported] = await marketplace.wait(ExportFacilitated, pid)
    assert exported.json()["programme"] == "Jakpreneur Go-International"
    await processed(marketplace, await marketplace.send(sales(pid, recent_periods(5)[-1])))
    await marketplace.events.caught_up()
    assert len(marketplace.of(ExportFacilitated, pid)) == 1


async def stages_for_referral(m: MarketplaceUnderTest) -> str:
    pid, prod = str(uuid.uuid4()), random_id("prod-")
    await m.send(participant(pid, "Gambir", "kriya"))
    await m.send(TrainingCompleted(participant_id=pid, cohort_id="c", score=80, attendance_rate=1))
    await m.send(MentoringCompleted(participant_id=pid, mentor_id="g-1", sessions=3))
    await m.send(certified(pid, prod))
    await approve_all(m, prod, "B")
    for period in ("2024-01", "2024-02", "2024-03"):
        await m.send(sales(pid, period))
    return pid


async def test_six_stages_refer_to_bank_dki_once_and_the_decision_is_reported(
    marketplace: MarketplaceUnderTest,
) -> None:
    pid = await stages_for_referral(marketplace)
    [referred] = await marketplace.wait(FinancingReferred, pid)
    body = referred.json()
    assert body["stages"] == [
        "registered",
        "training-completed",
        "mentoring-completed",
        "product-certified",
        "product-listed",
        "sales-reported-3-months",
    ]
    assert (body["max_amount_idr"], body["rate_percent"]) == (10_000_000, 7.0)
    await processed(marketplace, await marketplace.send(sales(pid, "2024-04")))
    await marketplace.events.caught_up()
    assert len(marketplace.of(FinancingReferred, pid)) == 1

    referral = body["referral_id"]
    too_much = FinancingDecided(
        referral_id=referral,
        decision="approved",
        amount_idr=50_000_000,
        decided_at=NOW,
        bank_ref="DKI-0",
    )
    await marketplace.send(too_much)
    dead = await marketplace.dead(referral.encode())
    assert dead.headers["dlq_error_type"] == "amount-over-maximum"
    await marketplace.send(
        FinancingDecided(
            referral_id=referral,
            decision="approved",
            amount_idr=7_500_000,
            decided_at=NOW,
            bank_ref="DKI-1",
        )
    )
    [approved] = await marketplace.wait(FinancingApproved, pid)
    assert (approved.json()["amount_idr"], approved.json()["bank_ref"]) == (7_500_000, "DKI-1")


async def test_a_declined_referral_and_an_unknown_one(marketplace: MarketplaceUnderTest) -> None:
    pid = await stages_for_referral(marketplace)
    [referred] = await marketplace.wait(FinancingReferred, pid)
    referral = referred.json()["referral_id"]
    await marketplace.send(
        FinancingDecided(
            referral_id=referral,
            decision="declined",
            amount_idr=0,
            decided_at=NOW,
            bank_ref="DKI-2",
        )
    )
    await marketplace.wait(FinancingDeclined, pid)
    unknown = str(uuid.uuid4())
    await marketplace.send(
        FinancingDecided(
            referral_id=unknown, decision="approved", amount_idr=1, decided_at=NOW, bank_ref="DKI-3"
        )
    )
    assert (await marketplace.dead(unknown.encode())).headers[
        "dlq_error_type"
    ] == "unknown-referral"
