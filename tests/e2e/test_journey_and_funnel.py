"""The registry's journey read model, fed by the other services' events."""

from __future__ import annotations

import asyncio
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.contracts import ParticipantRegistered, TrainingEnrolled
from tests import auth_helpers
from tests.coaching.fixtures import CoachingUnderTest
from tests.conftest import random_id
from tests.registry.fixtures import Registry

pytestmark = pytest.mark.integration


async def poll(url: str, until: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        while True:
            body = (await http.get(url)).json()
            if until(body) or time.monotonic() > deadline:
                return body
            await asyncio.sleep(0.2)


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

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("class") == "row" and a.get("data-stage"):
            self.rows[str(a["data-stage"])] = (
                int(a["data-count"] or 0),
                a.get("data-conversion") or "",
            )


async def test_the_dashboard_in_headless_chromium_shows_the_funnels_numbers(
    registry: Registry, coaching: CoachingUnderTest, tmp_path: Path
) -> None:
    kecamatan = random_id("Kec-")
    for _ in range(3):
        data = registry.generator.valid(kecamatan=kecamatan)
        await registry.submit(data)
        [answer] = await registry.outcomes_for(data["submission_id"])
        pid = ParticipantRegistered.model_validate_json(answer.value).participant_id
        await coaching.wait(TrainingEnrolled, pid)
    funnel_url = f"{registry.url}/funnel?kecamatan={kecamatan}"
    funnel = await poll(
        funnel_url,
        lambda b: next(r for r in b["stages"] if r["stage"] == "training-enrolled")["count"] == 3,
    )
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
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        # the token in the fragment, as `make run` prints the link (the page keeps it)
        f"{registry.url}/dashboard?kecamatan={kecamatan}#token={auth_helpers.token('ops')}",
    ]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    dom, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
    bars = _Bars()
    bars.feed(dom.decode())
    assert set(bars.rows) == {row["stage"] for row in funnel["stages"]}
    for row in funnel["stages"]:
        count, conversion = bars.rows[row["stage"]]
        assert count == row["count"], row["stage"]
        expected = None if row["conversion"] is None else float(row["conversion"])
        assert (float(conversion) if conversion else None) == expected, row["stage"]
    assert bars.rows["registered"][0] == 3 and bars.rows["training-enrolled"][0] == 3
    assert "3 peserta" in dom.decode()
