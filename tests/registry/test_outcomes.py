"""The programme's outcomes in the registry, fed as the marketplace publishes them on the real
servers: naik kelas from ``business-class-changed`` (a stage of the journey, with the class
history), export facilitations and financing approved (count and rupiah), filterable like
the rest of the funnel; a redelivered event adds nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts import (
    BusinessClassChanged,
    ExportFacilitated,
    FinancialReportRecorded,
    FinancingApproved,
)
from shared.kafka import KafkaAccess
from tests.conftest import random_id
from tests.kafka_helpers import wait_committed
from tests.registry.fixtures import Registry
from tests.registry.journey_helpers import get, publish, register, rows, until

T0 = datetime(2024, 2, 1, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def class_changed(
    pid: str, from_class: str | None, to_class: str, annual: int, day: int
) -> BusinessClassChanged:
    return BusinessClassChanged.model_validate(
        {
            "participant_id": pid,
            "from_class": from_class,
            "to_class": to_class,
            "annual_sales_idr": annual,
            "basis_months": min(12, 3 + day // 30),
            "annualised": day < 270,
            "assessed_at": T0 + day * DAY,
        }
    )


def approved(pid: str, amount: int) -> FinancingApproved:
    return FinancingApproved(
        referral_id=random_id("ref-"), participant_id=pid, amount_idr=amount, bank_ref="DKI-1"
    )


def exported(pid: str) -> ExportFacilitated:
    return ExportFacilitated(
        product_id=random_id("prod-"), participant_id=pid, programme="go-international", reasons=[]
    )


async def test_naik_kelas_class_history_and_outcomes_with_filters(registry: Registry) -> None:
    kecamatan = random_id("Kec-")
    # p1: mikro, then kecil (naik kelas); p2: kecil from the start (no move); p3, without a
    # business at registration: mikro -> kecil -> menengah, then down to kecil
    p1 = await register(registry, T0, kecamatan=kecamatan, has_business=True)
    p2 = await register(registry, T0, kecamatan=kecamatan, has_business=True)
    p3 = await register(registry, T0 + 3 * DAY, kecamatan=kecamatan, has_business=False)

    await publish(
        registry,
        FinancialReportRecorded(
            participant_id=p1,
            period="2024-05",
            revenue_idr=120_000_000,
            transactions=300,
            channel="qris",
            replaced=False,
        ),
        T0 + 100 * DAY,
    )
    first = class_changed(p1, None, "mikro", 1_440_000_000, 150)
    _, first_headers = await publish(registry, first, T0 + 150 * DAY)
    await publish(registry, first, None, headers=first_headers)  # redelivered as it was
    up = class_changed(p1, "mikro", "kecil", 2_640_000_000, 240)
    _, up_headers = await publish(registry, up, T0 + 240 * DAY)
    redelivered, _ = await publish(registry, up, None, headers=up_headers)
    await publish(registry, class_changed(p2, None, "kecil", 3_000_000_000, 120), T0 + 120 * DAY)
    for from_class, to_class, day in (
        (None, "mikro", 100),
        ("mikro", "kecil", 200),
        ("kecil", "menengah", 330),
        ("menengah", "kecil", 360),
    ):
        await publish(registry, class_changed(p3, from_class, to_class, 0, day), T0 + day * DAY)
    p1_approval = approved(p1, 7_500_000)
    _, approval_headers = await publish(registry, p1_approval, T0 + 200 * DAY)
    again, _ = await publish(registry, p1_approval, None, headers=approval_headers)
    await publish(registry, approved(p2, 25_000_000), T0 + 210 * DAY)
    await publish(registry, exported(p1), T0 + 230 * DAY)
    await publish(registry, exported(p1), T0 + 260 * DAY)
    await publish(registry, exported(p3), T0 + 300 * DAY)

    # every record processed, the redelivered ones too
    access, group = KafkaAccess.of(registry.settings), registry.settings.consumer_group
    for record in (redelivered, again):
        await wait_committed(access, group, record.topic, record.partition, record.offset)

    async def settled() -> dict[str, Any] | None:
        funnel = await get(registry, "/funnel", kecamatan=kecamatan)
        outcomes = funnel["outcomes"]
        done = (
            outcomes["export_facilitated"]["products"] == 3
            and outcomes["financing_approved"]["participants"] == 2
            and sum(outcomes["business_classes"].values()) == 3
            and outcomes["business_classes"]["kecil"] == 3
        )
        return funnel if done else None

    funnel = await until("the outcomes in the funnel", settled)
    by_stage = rows(funnel)
    assert by_stage["naik-kelas"]["count"] == 2
    assert by_stage["naik-kelas"]["step"] == "P6" and by_stage["naik-kelas"]["main"] is False
    assert by_stage["export-facilitated"]["count"] == 2
    assert by_stage["financing-approved"]["count"] == 2
    # p1 first reported sales on day 100 and moved up on day 240
    assert by_stage["naik-kelas"]["median_days_from_previous"] is not None
    stages = [row["stage"] for row in funnel["stages"]]
    assert stages.index("product-listed") < stages.index("export-facilitated")
    assert stages.index("sales-reported") < stages.index("naik-kelas")
    assert stages.index("naik-kelas") < stages.index("financing-referred")
    assert funnel["outcomes"] == {
        "naik_kelas": {
            "participants": 2,
            "transitions": [
                {"from_class": "mikro", "to_class": "kecil", "participants": 1},
                {"from_class": "mikro", "to_class": "menengah", "participants": 1},
            ],
        },
        "business_classes": {"mikro": 0, "kecil": 3, "menengah": 0, "besar": 0},
        "export_facilitated": {"participants": 2, "products": 3},
        "financing_approved": {"participants": 2, "total_idr": 32_500_000},
    }

    # filtered like the rest: those who had no business at registration
    starters = await get(registry, "/funnel", kecamatan=kecamatan, has_business="false")
    assert starters["participants"] == 1
    assert starters["outcomes"]["naik_kelas"]["transitions"] == [
        {"from_class": "mikro", "to_class": "menengah", "participants": 1}
    ]
    assert starters["outcomes"]["financing_approved"] == {"participants": 0, "total_idr": 0}
    assert starters["outcomes"]["export_facilitated"] == {"participants": 1, "products": 1}
    with_business = await get(registry, "/funnel", kecamatan=kecamatan, has_business="true")
    assert with_business["outcomes"]["financing_approved"]["total_idr"] == 32_500_000
    assert rows(with_business)["naik-kelas"]["count"] == 1

    # p1's journey: the class history once per change, in order, and the stage's date
    journey = await get(registry, f"/participants/{p1}/journey")
    assert journey["class_history"] == [
        {
            "from_class": None,
            "to_class": "mikro",
            "annual_sales_idr": 1_440_000_000,
            "basis_months": 8,
            "annualised": True,
            "assessed_at": str(T0 + 150 * DAY),
            "at": str(T0 + 150 * DAY),
        },
        {
            "from_class": "mikro",
            "to_class": "kecil",
            "annual_sales_idr": 2_640_000_000,
            "basis_months": 11,
            "annualised": True,
            "assessed_at": str(T0 + 240 * DAY),
            "at": str(T0 + 240 * DAY),
        },
    ]
    assert journey["business_class"] == "kecil"
    assert datetime.fromisoformat(journey["stages"]["naik-kelas"]) == T0 + 240 * DAY
    assert journey["financing_approved_idr"] == 7_500_000
    # p2 has a class but never moved: no naik kelas; p3 rose, fell back, still counts once
    assert "naik-kelas" not in (await get(registry, f"/participants/{p2}/journey"))["stages"]
    p3_journey = await get(registry, f"/participants/{p3}/journey")
    assert datetime.fromisoformat(p3_journey["stages"]["naik-kelas"]) == T0 + 200 * DAY
    assert [c["to_class"] for c in p3_journey["class_history"]] == [
        "mikro",
        "kecil",
        "menengah",
        "kecil",
    ]
