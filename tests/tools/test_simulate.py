"""The simulator's programme calendar and intent, without I/O: business times laid out in
order and never in the future, registrations through a year, monthly sales across the
business classes, every stage intended; each fact it sends carries its business time."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts import (
    FinancialReportRecorded,
    MentoringAssigned,
    ProductCertified,
    ProductListed,
    TrainingEnrolled,
)
from shared.envelope import BUSINESS_TIME, Envelope
from shared.kafka import KafkaAccess
from tools.simulate import (
    CURATION,
    STAGE_FLAGS,
    WIB,
    Sale,
    Simulator,
    announced_classes,
    intended,
    intended_outcomes,
    plan,
)

NOW = datetime.now(UTC) - timedelta(hours=1)  # the simulated calendar ends before it


def month_of(at: datetime, back: int = 0) -> str:
    local = at.astimezone(WIB)
    index = local.year * 12 + local.month - 1 - back
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def sales(*monthly_millions: float, start: str = "2025-01") -> list[Sale]:
    year, month = int(start[:4]), int(start[5:])
    out = []
    for n, millions in enumerate(monthly_millions):
        index = year * 12 + month - 1 + n
        period = f"{index // 12:04d}-{index % 12 + 1:02d}"
        out.append(Sale(period, int(millions * 1_000_000), 1, NOW))
    return out


def test_the_class_follows_pp_7_2021_as_months_come_in() -> None:
    assert announced_classes(sales(150, 150)) == []  # fewer than 3 months: no class
    # 3 months of 150 M annualised: 1.8 bn, mikro; then months of 300 M lift the year
    assert announced_classes(sales(150, 150, 150, 300, 300, 300)) == ["mikro", "kecil"]
    # 200 M a month is 2.4 bn a year: kecil from the first class on, no move
    assert announced_classes(sales(200, 200, 200, 200)) == ["kecil"]
    # the window is the 12 months ending at the latest: old big months drop out
    assert announced_classes(sales(*([300] * 12), *([100] * 12))) == ["kecil", "mikro"]
    assert announced_classes(sales(1_300, 1_300, 1_300)) == ["menengah"]  # 15.6 bn


def test_the_plans_lay_out_a_programme_year_in_business_time() -> None:
    plans = plan(400, seed=7, now=NOW)
    assert plan(400, seed=7, now=NOW)[5].timeline == plans[5].timeline  # deterministic
    registered = [p for p in plans if p.rejected_as is None]
    months = Counter(p.timeline.registered_at.strftime("%Y-%m") for p in plans if p.timeline)
    assert len(months) == 12 and min(months.values()) >= 10  # spread through the year
    # the year ended well over a year ago: journeys have had time to run
    assert min(months) == month_of(NOW, 29) and max(months) == month_of(NOW, 18)
    for p in registered:
        t = p.timeline
        assert t is not None
        chain = [
            t.registered_at,
            t.training_start,
            t.training_end,
            t.assessed_at,
            *t.mentoring,
            t.product_submitted_at,
            *[t.reviewed[level] for level in CURATION],
        ]
        assert chain == sorted(chain) and chain[-1] < NOW, p.data["submission_id"]
        assert all(
            t.product_submitted_at < at <= t.reviewed["pendamping"] for at in t.issued.values()
        )
        assert ("HKI_MEREK" in t.issued) == p.trademark
        if p.reporting:
            reports = [s.reported_at for s in t.sales]
            assert len(t.sales) >= 3 and reports == sorted(reports)
            assert t.listed_at < reports[0] and reports[-1] < NOW
            assert t.sales[-1].period == month_of(NOW, 1)  # up to last month


def test_every_stage_is_intended_with_conversions_from_2021() -> None:
    plans = plan(1000, seed=2021, now=NOW)
    counts = intended(plans)
    assert list(counts) == list(STAGE_FLAGS)
    assert all(n > 0 for n in counts.values()), counts
    assert 0.55 < counts["training-completed"] / counts["registered"] < 0.70  # 62 % in 2021
    assert 0.2 < counts["product-listed"] / counts["product-certified"] < 0.4  # 30 %
    outcomes = intended_outcomes(plans)
    assert outcomes["naik_kelas"]["participants"] == counts["naik-kelas"] > 0
    assert outcomes["export_facilitated"]["participants"] == counts["export-facilitated"] > 0
    classes = outcomes["business_classes"]
    assert classes["mikro"] > classes["kecil"] > classes["menengah"] > 0  # a plausible spread
    assert sum(classes.values()) == counts["sales-reported"]
    assert outcomes["financing_approved"]["total_idr"] >= 2_000_000 * counts["financing-approved"]


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    async def send(self, topic: str, value: bytes, key: bytes, headers: Any) -> None:
        import json

        self.sent.append((topic, json.loads(value), {k: v.decode() for k, v in headers}))


async def test_each_fact_carries_its_business_time() -> None:
    plans = plan(300, seed=7, now=NOW)
    p = next(pl for pl in plans if pl.reporting and pl.timeline and len(pl.timeline.sales) > 3)
    simulator = Simulator(KafkaAccess(bootstrap_servers="unused"), "", plans)
    producer = _Producer()
    simulator.producer = producer  # type: ignore[assignment]
    pid = "p-1"
    await simulator.react(
        "participant-registered",
        {"submission_id": p.data["submission_id"], "participant_id": pid},
    )
    t = p.timeline
    assert t is not None

    async def happened(event: Any) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
        before = len(producer.sent)
        await simulator.react(event.name, event.model_dump(mode="json", by_alias=True))
        return producer.sent[before:]

    enrolled = TrainingEnrolled(
        participant_id=pid, cohort_id="c", sector="kuliner", city="x", session_count=4
    )
    facts = await happened(enrolled)
    assert [topic for topic, _, _ in facts] == ["training-attendance-recorded"] * 4 + [
        "training-assessed"
    ]
    for _, data, headers in facts:
        at = Envelope.from_headers(headers | {"ce_time": NOW.isoformat()}).business_time
        assert at == datetime.fromisoformat(data.get("recorded_at") or data["assessed_at"])
    assert Envelope.from_headers(facts[0][2]).business_time == t.training_start
    assert Envelope.from_headers(facts[-1][2]).business_time == t.assessed_at

    visits = await happened(MentoringAssigned(participant_id=pid, mentor_id="m", centre="c"))
    assert [datetime.fromisoformat(h[BUSINESS_TIME]) for _, _, h in visits] == t.mentoring

    certified = ProductCertified(
        product_id=p.product_id,
        participant_id=pid,
        category="kriya",
        certificates=[],
        valid_until=None,
    )
    reviews = await happened(certified)
    assert [d["level"] for _, d, _ in reviews] == list(CURATION)
    assert await happened(certified) == []  # a repeat is not reviewed again

    listed = ProductListed(product_id=p.product_id, participant_id=pid, grade="A", channels=[])
    [(topic, first, headers)] = await happened(listed)
    assert topic == "sales-reported" and first["period"] == t.sales[0].period
    assert datetime.fromisoformat(headers[BUSINESS_TIME]) == t.sales[0].reported_at
    # the next month goes once the marketplace has recorded this one
    recorded = FinancialReportRecorded(
        participant_id=pid,
        period=first["period"],
        revenue_idr=first["revenue_idr"],
        transactions=1,
        channel="qris",
        replaced=False,
    )
    [(_, second, headers)] = await happened(recorded)
    assert second["period"] == t.sales[1].period
    assert datetime.fromisoformat(headers[BUSINESS_TIME]) == t.sales[1].reported_at
    assert await happened(recorded) == []  # a repeat of an older month sends nothing
    assert all(
        datetime.fromisoformat(h[BUSINESS_TIME]) <= NOW + timedelta(days=1)
        for _, _, h in producer.sent
    )
