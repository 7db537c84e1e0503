"""The journey read model's funnel, without I/O."""

from datetime import UTC, datetime, timedelta
from typing import Any

from services.registry import journey
from shared.contracts import BusinessClassChanged, FinancialReportRecorded, FinancingApproved

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def reached(*stages_days: tuple[str, float]) -> dict[str, Any]:
    return {"stages": {stage: T0 + timedelta(days=d) for stage, d in stages_days}}


def test_counts_conversion_and_median_days_between_stages() -> None:
    journeys = [
        reached(("registered", 0), ("training-enrolled", 1), ("training-completed", 11)),
        reached(("registered", 0), ("training-enrolled", 3), ("training-not-completed", 30)),
        reached(("registered", 0), ("training-enrolled", 2), ("training-completed", 4)),
        reached(("registered", 0)),
    ]
    result = journey.funnel(journeys)
    rows = {row["stage"]: row for row in result["stages"]}
    assert result["participants"] == 4
    assert [
        rows[s]["count"] for s in ("registered", "training-enrolled", "training-completed")
    ] == [
        4,
        3,
        2,
    ]
    assert rows["registered"]["conversion"] is None
    assert rows["training-enrolled"]["conversion"] == 0.75
    assert rows["training-completed"]["conversion"] == round(2 / 3, 4)
    assert rows["mentoring-assigned"]["conversion"] == 0.0
    assert rows["registered"]["median_days_to_next"] == 2.0  # 1, 3, 2 days
    assert rows["training-enrolled"]["median_days_to_next"] == 6.0  # 10 and 2 days
    assert rows["training-completed"]["median_days_to_next"] is None
    assert result["side_stages"]["training-not-completed"] == 1
    assert [row["stage"] for row in result["stages"] if row["main"]] == list(journey.FUNNEL)
    assert rows["training-completed"]["median_days_from_previous"] == 6.0  # enrolled -> done


def test_an_empty_funnel() -> None:
    result = journey.funnel([])
    assert result["participants"] == 0
    assert all(row["count"] == 0 for row in result["stages"])
    assert result["stages"][1]["conversion"] == 0.0


def test_filters_become_a_match_on_the_profile() -> None:
    match = journey.parse_filters(
        {
            "city": "Jakarta Timur",
            "has_business": "false",
            "sector": "",
            "registered_month": "2024-05",
            "unknown": "x",
        }
    )
    assert match == {
        "profile.city": "Jakarta Timur",
        "profile.has_business": False,
        "profile.registered_month": "2024-05",
    }
    assert journey.parse_filters({"has_business": "true"}) == {"profile.has_business": True}


def test_the_stages_come_in_programme_order_with_export_and_naik_kelas_beside_the_line() -> None:
    rows = journey.funnel([])["stages"]
    assert [row["stage"] for row in rows] == [
        "registered",
        "training-enrolled",
        "training-completed",
        "mentoring-assigned",
        "mentoring-completed",
        "product-certified",
        "product-curated",
        "product-listed",
        "export-facilitated",
        "sales-reported",
        "naik-kelas",
        "financing-referred",
        "financing-approved",
    ]
    by_stage = {row["stage"]: row for row in rows}
    assert by_stage["export-facilitated"]["after"] == "product-listed"
    assert by_stage["sales-reported"]["after"] == "product-listed"
    assert by_stage["naik-kelas"]["after"] == "sales-reported"
    assert not by_stage["naik-kelas"]["main"] and by_stage["sales-reported"]["main"]
    assert "".join(row["step"].removeprefix("P") for row in rows) == "1223345556677"  # 7P


def change(
    from_class: str | None, to_class: str, day: float, annual: int = 1, event: str = ""
) -> dict[str, Any]:
    at = T0 + timedelta(days=day)
    return {
        "event_id": event or f"e-{day}",
        "from_class": from_class,
        "to_class": to_class,
        "annual_sales_idr": annual,
        "basis_months": 3,
        "annualised": True,
        "assessed_at": at,
        "at": at,
    }


def with_classes(*changes: dict[str, Any], sales_day: float = 0) -> dict[str, Any]:
    doc = reached(("registered", -100), ("sales-reported", sales_day))
    doc["class_history"] = list(changes)
    return doc


def test_naik_kelas_is_the_first_move_above_the_first_class_known() -> None:
    first_only = with_classes(change(None, "mikro", 90))
    up = with_classes(change(None, "mikro", 90), change("mikro", "kecil", 150))
    # arrived in any order, the history is read in business-time order
    up_down_up = with_classes(
        change("kecil", "mikro", 200),
        change(None, "mikro", 90),
        change("mikro", "kecil", 260),
        change("mikro", "kecil", 150),
    )
    down_then_back = with_classes(
        change(None, "kecil", 90), change("kecil", "mikro", 120), change("mikro", "kecil", 180)
    )
    two_classes = with_classes(
        change(None, "mikro", 90), change("mikro", "kecil", 120), change("kecil", "menengah", 300)
    )
    assert journey.NAIK_KELAS not in journey.stages_of(first_only)
    assert journey.stages_of(up)[journey.NAIK_KELAS] == T0 + timedelta(days=150)
    assert journey.stages_of(up_down_up)[journey.NAIK_KELAS] == T0 + timedelta(days=150)
    assert journey.NAIK_KELAS not in journey.stages_of(down_then_back)  # back, not up

    result = journey.funnel([first_only, up, up_down_up, down_then_back, two_classes])
    rows = {row["stage"]: row for row in result["stages"]}
    assert rows["naik-kelas"]["count"] == 3
    assert rows["naik-kelas"]["conversion"] == round(3 / 5, 4)
    assert rows["naik-kelas"]["median_days_from_previous"] == 150.0  # 150, 150, 120
    assert result["outcomes"]["naik_kelas"] == {
        "participants": 3,
        "transitions": [
            {"from_class": "mikro", "to_class": "kecil", "participants": 2},
            {"from_class": "mikro", "to_class": "menengah", "participants": 1},
        ],
    }
    assert result["outcomes"]["business_classes"] == {
        "mikro": 1,
        "kecil": 3,
        "menengah": 1,
        "besar": 0,
    }

    shown = journey.present(up_down_up)
    assert [(c["from_class"], c["to_class"]) for c in shown["class_history"]] == [
        (None, "mikro"),
        ("mikro", "kecil"),
        ("kecil", "mikro"),
        ("mikro", "kecil"),
    ]
    assert "event_id" not in shown["class_history"][0]
    assert shown["business_class"] == "kecil"
    assert shown["stages"][journey.NAIK_KELAS] == T0 + timedelta(days=150)


def test_outcomes_export_financing_and_registrations_per_month() -> None:
    a = reached(("registered", 0), ("export-facilitated", 200), ("financing-approved", 250))
    a["exported_products"] = ["p1", "p2"]
    a["financing_approvals"] = [{"referral_id": "r1", "amount_idr": 7_500_000}]
    a["profile"] = {"registered_month": "2024-05"}
    b = reached(("registered", 0), ("financing-approved", 300))
    b["financing_approvals"] = [{"referral_id": "r2", "amount_idr": 25_000_000}]
    b["profile"] = {"registered_month": "2024-05"}
    c = reached(("registered", 40))
    c["profile"] = {"registered_month": "2024-06"}
    result = journey.funnel([a, b, c])
    assert result["outcomes"]["export_facilitated"] == {"participants": 1, "products": 2}
    assert result["outcomes"]["financing_approved"] == {
        "participants": 2,
        "total_idr": 32_500_000,
    }
    assert result["registrations_per_month"] == [
        {"month": "2024-05", "participants": 2},
        {"month": "2024-06", "participants": 1},
    ]


def test_a_batch_becomes_one_update_per_participant_and_a_repeat_adds_nothing() -> None:
    class_event = BusinessClassChanged(
        participant_id="p1",
        from_class=None,
        to_class="mikro",
        annual_sales_idr=1_200_000_000,
        basis_months=3,
        annualised=True,
        assessed_at=T0,
    )
    approved = FinancingApproved(
        referral_id="r1", participant_id="p1", amount_idr=7_500_000, bank_ref="DKI-1"
    )
    sales = FinancialReportRecorded(
        participant_id="p2",
        period="2024-04",
        revenue_idr=1,
        transactions=1,
        channel="qris",
        replaced=False,
    )
    later, earlier = T0 + timedelta(days=3), T0 + timedelta(days=1)
    facts = [
        journey.fact_of(class_event, "e1", T0),
        journey.fact_of(class_event, "e1", T0),  # redelivered in the same batch
        journey.fact_of(approved, "e2", later),
        journey.fact_of(approved, "e2", earlier),
        journey.fact_of(sales, "e3", T0),
    ]
    updates = journey.merged_updates(facts)
    assert set(updates) == {"p1", "p2"}
    p1 = updates["p1"]
    assert p1["$min"] == {"stages.financing-approved": earlier}
    [history] = [p1["$addToSet"]["class_history"]["$each"]]
    assert len(history) == 1 and history[0]["to_class"] == "mikro" and history[0]["at"] == T0
    assert p1["$addToSet"]["financing_approvals"]["$each"] == [
        {"referral_id": "r1", "amount_idr": 7_500_000}
    ]
    assert "stages.naik-kelas" not in p1["$min"]  # derived when read
    assert updates["p2"]["$addToSet"]["sales_months"]["$each"] == ["2024-04"]
