"""The registry's journey read model, fed by the other services' events."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.contracts import (
    BusinessClassChanged,
    ExportFacilitated,
    FinancialReportRecorded,
    FinancingApproved,
    ParticipantRegistered,
    TrainingCompleted,
    TrainingEnrolled,
)
from tests import auth_helpers, waiting
from tests.coaching.fixtures import CoachingUnderTest
from tests.conftest import random_id
from tests.registry.fixtures import Registry
from tests.registry.journey_helpers import publish, register

pytestmark = pytest.mark.integration


async def poll(url: str, until: Any, timeout: float = 60) -> Any:
    """GET ``url`` (as ops) until ``until(body)`` holds and return the body; fail loudly,
    with the last body, after ``timeout`` seconds."""
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:

        async def body() -> Any:
            return (await http.get(url)).json()

        return await waiting.until(f"GET {url} to hold", body, timeout, done=until)


async def test_the_funnel_counts_registrations_and_enrolments_with_filters(
    registry: Registry, coaching: CoachingUnderTest
) -> None:
    kecamatan = random_id("Kec-")
    businesses = [True, True, False, True, False]
    submissions = [
        registry.generator.valid(kecamatan=kecamatan, has_business=b) for b in businesses
    ]
    for data in submissions:
        await registry.submit(data)
    pids = []
    for data in submissions:
        [answer] = await registry.outcomes_for(data["submission_id"])
        pids.append(ParticipantRegistered.model_validate_json(answer.value).participant_id)
    for pid in pids:
        await coaching.wait(TrainingEnrolled, pid)

    def stage(body: dict[str, Any], name: str) -> dict[str, Any]:
        return next(row for row in body["stages"] if row["stage"] == name)

    url = f"{registry.url}/funnel?kecamatan={kecamatan}"
    body = await poll(url, lambda b: stage(b, "training-enrolled")["count"] == 5)
    assert body["participants"] == 5 and body["filters"] == {"kecamatan": kecamatan}
    assert stage(body, "registered")["count"] == 5
    assert stage(body, "training-enrolled")["count"] == 5
    assert stage(body, "training-enrolled")["conversion"] == 1.0
    assert stage(body, "registered")["median_days_to_next"] is not None
    assert stage(body, "training-completed")["count"] == 0

    with_business = await poll(f"{url}&has_business=true", lambda b: True)
    assert with_business["participants"] == 3
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        journey = (await http.get(f"{registry.url}/participants/{pids[0]}/journey")).json()
    assert set(journey["stages"]) == {"registered", "training-enrolled"}
    assert journey["profile"]["kecamatan"] == kecamatan


class _Bars(HTMLParser):
    """The funnel rows as the browser left them in the DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, tuple[int, str]] = {}
        self.months: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if "row" in classes and a.get("data-stage"):
            self.rows[str(a["data-stage"])] = (
                int(a["data-count"] or 0),
                a.get("data-conversion") or "",
            )
        if "month" in classes and a.get("data-month"):
            self.months[str(a["data-month"])] = int(a["data-count"] or 0)


# Where the dashboard's screenshot is kept after a run (a test artefact: look at it).
ARTEFACTS = Path(__file__).resolve().parents[2] / ".run" / "artefacts"


async def _chromium(url: str, profile: Path, *output: str) -> bytes:
    """Headless Chromium on ``url`` with ``output`` (--dump-dom, --screenshot=...)."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by `make test` (make chromium)"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--lang=id-ID",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *output,
        url,
    ]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
    return out


async def test_the_dashboard_in_headless_chromium_shows_the_funnels_numbers(
    registry: Registry, coaching: CoachingUnderTest, tmp_path: Path
) -> None:
    """As a person sees it: stages in programme order in Bahasa Indonesia, outcomes, numbers
    in the id-ID format, registrations per month; a screenshot is kept in
    .run/artefacts/dashboard.png (and the test's tmp_path)."""
    kecamatan = random_id("Kec-")
    months = (datetime(2024, 3, 5, 3, tzinfo=UTC), datetime(2024, 4, 9, 3, tzinfo=UTC))
    pids = []
    for at in (months[0], months[0], months[1]):
        pid = await register(registry, at, kecamatan=kecamatan)
        await coaching.wait(TrainingEnrolled, pid)
        pids.append(pid)
    # two of the three pass the training (as coaching says), a month after registering
    day = timedelta(days=1)
    for pid in pids[:2]:
        await publish(
            registry,
            TrainingCompleted(participant_id=pid, cohort_id="c", score=88, attendance_rate=1.0),
            months[0] + 30 * day,
        )
    # p1 goes on: sales, naik kelas, export and financing (as the marketplace says)
    p1 = pids[0]
    sales = FinancialReportRecorded(
        participant_id=p1,
        period="2024-11",
        revenue_idr=150_000_000,
        transactions=2_400,
        channel="qris",
        replaced=False,
    )
    await publish(registry, sales, months[0] + 250 * day)
    for from_class, to_class, d in ((None, "mikro", 310), ("mikro", "kecil", 400)):
        change = BusinessClassChanged.model_validate(
            {
                "participant_id": p1,
                "from_class": from_class,
                "to_class": to_class,
                "annual_sales_idr": 2_400_000_000 if to_class == "kecil" else 1_800_000_000,
                "basis_months": 12,
                "annualised": False,
                "assessed_at": months[0] + d * day,
            }
        )
        await publish(registry, change, months[0] + d * day)
    await publish(
        registry,
        ExportFacilitated(
            product_id=random_id("prod-"), participant_id=p1, programme="go", reasons=[]
        ),
        months[0] + 330 * day,
    )
    await publish(
        registry,
        FinancingApproved(
            referral_id=random_id("ref-"),
            participant_id=p1,
            amount_idr=7_500_000,
            bank_ref="DKI-1",
        ),
        months[0] + 300 * day,
    )

    def done(body: dict[str, Any]) -> bool:
        by_stage = {r["stage"]: r["count"] for r in body["stages"]}
        return (
            by_stage["training-enrolled"] == 3
            and by_stage["training-completed"] == 2
            and by_stage["naik-kelas"] == 1
            and by_stage["export-facilitated"] == 1
            and by_stage["financing-approved"] == 1
        )

    funnel = await poll(f"{registry.url}/funnel?kecamatan={kecamatan}", done)
    # the token in the fragment, as `make run` prints the link (the page keeps it)
    url = f"{registry.url}/dashboard?kecamatan={kecamatan}#token={auth_helpers.token('ops')}"
    screenshot = tmp_path / "dashboard.png"
    dom_bytes, _ = await asyncio.gather(
        _chromium(url, tmp_path / "profile", "--dump-dom"),
        _chromium(
            url,
            tmp_path / "profile-shot",
            f"--screenshot={screenshot}",
            "--window-size=1280,1320",
            "--hide-scrollbars",
        ),
    )
    dom = dom_bytes.decode()
    bars = _Bars()
    bars.feed(dom)
    assert list(bars.rows) == [row["stage"] for row in funnel["stages"]]  # programme order
    for row in funnel["stages"]:
        count, conversion = bars.rows[row["stage"]]
        assert count == row["count"], row["stage"]
        expected = None if row["conversion"] is None else float(row["conversion"])
        assert (float(conversion) if conversion else None) == expected, row["stage"]
    assert bars.rows["registered"][0] == 3 and bars.rows["training-enrolled"][0] == 3
    assert bars.months == {"2024-03": 2, "2024-04": 1}
    assert "3 peserta" in dom
    # Bahasa Indonesia, the id-ID number format, the outcomes beside the stages
    for text in (
        "Tahapan 7P",
        "Ikut pelatihan",
        "Naik kelas",
        "Fasilitasi ekspor",
        "Mikro → Kecil",
    ):
        assert text in dom, text
    assert "total Rp&nbsp;7.500.000" in dom  # thousands with dots (no-break space kept)
    assert "Mar 2024" in dom and "Apr 2024" in dom
    assert "66,7%" in dom  # 2 of the 3 enrolled passed: a decimal comma

    # the screenshot, kept where a person can look at it
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, ARTEFACTS / "dashboard.png")
