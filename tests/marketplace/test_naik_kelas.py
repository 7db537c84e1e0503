"""Naik kelas on the real Kafka broker and the real mongod: the business class the sales
ledger gives (PP 7/2021), announced as ``business-class-changed`` once per change."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import httpx
import pytest

from services.marketplace import domain
from shared.contracts import BusinessClassChanged, FinancialReportRecorded, SalesReported
from tests import auth_helpers
from tests.marketplace.fixtures import MarketplaceUnderTest, processed, sales

pytestmark = pytest.mark.integration
BN = 1_000_000_000  # Rp 1 billion


def year_of(first: str, revenues: list[int]) -> list[SalesReported]:
    """One report a month from ``first`` (YYYY-MM), a random participant's."""
    pid, (year, month) = str(uuid.uuid4()), map(int, first.split("-"))
    reports = []
    for i, revenue in enumerate(revenues):
        index = year * 12 + month - 1 + i
        reports.append(sales(pid, f"{index // 12:04d}-{index % 12 + 1:02d}", revenue))
    return reports


async def announced(m: MarketplaceUnderTest, reports: list[SalesReported]) -> list[Any]:
    """Send ``reports`` in order; once the marketplace has committed past the last one,
    every class change it announced for their participant."""
    metas = [await m.send(report) for report in reports]
    await processed(m, metas[-1])
    await m.events.caught_up()
    return [r.json() for r in m.of(BusinessClassChanged, reports[0].participant_id)]


async def test_a_class_from_3_11_and_12_months_the_first_from_null(
    marketplace: MarketplaceUnderTest,
) -> None:
    """Reports sent month by month: a class is known from the third month on (annualised),
    so the 11-month and 12-month figures show where the 11th and 12th month change it."""
    three = year_of("2024-01", [BN, BN, 2 * BN])  # 4 bn x 12 / 3 = 16 bn
    eleven = year_of("2023-06", [100_000_000] * 10 + [2 * BN])  # 3 bn x 12 / 11
    twelve = year_of("2023-01", [100_000_000] * 11 + [1_500_000_000])  # 2.6 bn
    two = year_of("2024-01", [40 * BN, 40 * BN])  # too few months for a class
    results = await asyncio.gather(*(announced(marketplace, r) for r in (three, eleven, twelve)))
    [[first_of_three], [mikro, of_eleven], [_, of_twelve]] = results
    pids = [r[0].participant_id for r in (three, eleven, twelve)]
    assert first_of_three == {
        "participant_id": pids[0],
        "from_class": None,
        "to_class": "menengah",
        "annual_sales_idr": 16 * BN,
        "basis_months": 3,
        "annualised": True,
        "assessed_at": "2024-04-01T00:00:00Z",  # the end of the latest reported month
    }
    assert mikro == {
        "participant_id": pids[1],
        "from_class": None,
        "to_class": "mikro",
        "annual_sales_idr": 1_200_000_000,
        "basis_months": 3,
        "annualised": True,
        "assessed_at": "2023-09-01T00:00:00Z",
    }
    assert of_eleven == {
        "participant_id": pids[1],
        "from_class": "mikro",
        "to_class": "kecil",
        "annual_sales_idr": 3 * BN * 12 // 11,
        "basis_months": 11,
        "annualised": True,
        "assessed_at": "2024-05-01T00:00:00Z",
    }
    assert of_twelve == {
        "participant_id": pids[2],
        "from_class": "mikro",
        "to_class": "kecil",
        "annual_sales_idr": 2_600_000_000,
        "basis_months": 12,
        "annualised": False,
        "assessed_at": "2024-01-01T00:00:00Z",
    }
    assert await announced(marketplace, two) == []
    [change] = marketplace.of(BusinessClassChanged, pids[0])
    assert change.key == pids[0].encode() and change.headers["ce_source"] == "marketplace"
    assert change.headers["ce_type"] == "jakpreneur.business-class-changed.v1"
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        view = await http.get(f"{marketplace.url}/participants/{pids[0]}/marketplace")
    assert view.json()["business_class"] == "menengah"


async def test_naik_kelas_then_a_replaced_month_moves_the_class_down(
    marketplace: MarketplaceUnderTest,
) -> None:
    reports = year_of("2024-01", [150_000_000] * 3)  # 1.8 bn a year: mikro
    [first] = await announced(marketplace, reports)
    assert (first["from_class"], first["to_class"]) == (None, "mikro")
    pid = reports[0].participant_id
    april = sales(pid, "2024-04", 900_000_000, ref="qris-april")  # 4.05 bn a year: kecil
    changes = await announced(marketplace, [april])
    assert [(c["from_class"], c["to_class"]) for c in changes] == [
        (None, "mikro"),
        ("mikro", "kecil"),
    ]
    assert changes[1]["annual_sales_idr"] == 4_050_000_000 and changes[1]["basis_months"] == 4
    corrected = sales(pid, "2024-04", 150_000_000, ref="eorder-koreksi-april")
    changes = await announced(marketplace, [corrected])  # the month replaced: back down
    assert [(c["from_class"], c["to_class"]) for c in changes][2:] == [("kecil", "mikro")]
    assert changes[2]["annual_sales_idr"] == 1_800_000_000
    recorded = marketplace.of(FinancialReportRecorded, pid)
    assert [r.json()["replaced"] for r in recorded][-1] is True


async def test_reports_in_any_order_converge_to_the_same_class_each_change_once(
    marketplace: MarketplaceUnderTest,
) -> None:
    """The same six months (no month twice: a replacement's winner is the later arrival by
    design) in several orders, one participant each: each order's announcements are
    exactly the changes the rule gives for that order, and all end at the same class."""
    revenues = [100_000_000, 100_000_000, 3 * BN, 100_000_000, 9 * BN, 100_000_000]
    periods = ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2023-06"]
    orders = [list(range(6)), list(range(5, -1, -1))]
    orders += [random.Random(seed).sample(range(6), 6) for seed in range(4)]
    runs = []
    for order in orders:
        pid = str(uuid.uuid4())
        runs.append([sales(pid, periods[i], revenues[i]) for i in order])
    results = await asyncio.gather(*(announced(marketplace, reports) for reports in runs))
    final = set()
    for reports, changes in zip(runs, results, strict=True):
        expected = expected_changes(reports)
        assert [(c["from_class"], c["to_class"], c["annual_sales_idr"]) for c in changes] == [
            (e.from_class, e.assessment.business_class, e.assessment.annual_sales_idr)
            for e in expected
        ]
        final.add(changes[-1]["to_class"])
    assert final == {"menengah"}  # 12.4 bn in 6 months: 24.8 bn a year
    assert len({len(changes) for changes in results}) > 1  # the orders took other ways


def expected_changes(reports: list[SalesReported]) -> list[domain.ClassChanged]:
    state = domain.Marketplace(participant_id=reports[0].participant_id)
    changes = []
    for r in reports:
        domain.record_sale(
            state,
            domain.Sale(
                period=r.period,
                revenue_idr=r.revenue_idr,
                transactions=r.transactions,
                channel=r.channel,
                source_ref=r.source_ref,
            ),
        )
        if (change := domain.class_change(state)) is not None:
            changes.append(change)
    return changes


async def test_a_redelivered_report_or_a_repeated_source_ref_announces_nothing(
    marketplace: MarketplaceUnderTest,
) -> None:
    reports = year_of("2024-01", [BN, BN, BN])
    ce_id = str(uuid.uuid4())
    for report in reports[:-1]:
        await marketplace.send(report)
    await marketplace.send(reports[-1], ce_id=ce_id)
    [change] = await marketplace.wait(BusinessClassChanged, reports[0].participant_id)
    again = [await marketplace.send(reports[-1], ce_id=ce_id)]  # the same record again
    again += [await marketplace.send(report) for report in reports]  # same refs, new ids
    for meta in again:
        await processed(marketplace, meta)
    await marketplace.events.caught_up()
    assert marketplace.of(BusinessClassChanged, reports[0].participant_id) == [change]
    assert len(marketplace.of(FinancialReportRecorded, reports[0].participant_id)) == 3


async def test_a_month_whose_class_could_not_be_dated_is_dead_lettered(
    marketplace: MarketplaceUnderTest,
) -> None:
    """2099-12 ends at 2100, past the contracts' instants: refused with its reason."""
    pid = str(uuid.uuid4())
    await marketplace.send(sales(pid, "2099-12"))
    dead = await marketplace.dead(pid.encode())
    assert dead.headers["dlq_error_type"] == "period-out-of-range"
    assert marketplace.of(FinancialReportRecorded, pid) == []


async def test_a_month_not_begun_when_reported_is_dead_lettered(
    marketplace: MarketplaceUnderTest,
) -> None:
    """Reported now (its business time, by default its ce_time), a month years ahead is a
    mistyped year: refused with its reason, it records nothing and dates no class."""
    pid = str(uuid.uuid4())
    await marketplace.send(sales(pid, "2052-04"))
    dead = await marketplace.dead(pid.encode())
    assert dead.headers["dlq_error_type"] == "period-in-future"
    assert marketplace.of(FinancialReportRecorded, pid) == []
