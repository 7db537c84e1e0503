"""The registry's journey read model, fed by the other services' events."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from shared.contracts import ParticipantRegistered, TrainingEnrolled
from tests.coaching.fixtures import CoachingUnderTest
from tests.conftest import random_id
from tests.registry.fixtures import Registry

pytestmark = pytest.mark.integration


async def poll(url: str, until: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
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
    async with httpx.AsyncClient() as http:
        journey = (await http.get(f"{registry.url}/participants/{pids[0]}/journey")).json()
    assert set(journey["stages"]) == {"registered", "training-enrolled"}
    assert journey["profile"]["kecamatan"] == kecamatan
