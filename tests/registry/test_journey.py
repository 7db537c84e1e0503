"""The journey read model's funnel, without I/O."""

from datetime import UTC, datetime, timedelta

from services.registry import journey

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def reached(*stages_days: tuple[str, float]) -> dict[str, dict[str, datetime]]:
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
    assert [row["stage"] for row in result["stages"]] == list(journey.FUNNEL)


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
