"""1,000 registrations flowing registry -> coaching on the real servers: every expected
event counted, none twice."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from shared.contracts import TrainingEnrolled
from tests.coaching.fixtures import CoachingUnderTest
from tests.registry.fixtures import Registry
from tools.registrations import Generator, headers_for

pytestmark = pytest.mark.integration
COUNT = 1000


async def test_a_thousand_registrations_are_registered_or_rejected_and_each_registered_enrolled(
    registry: Registry, coaching: CoachingUnderTest
) -> None:
    batch = Generator(seed=None).batch(COUNT, invalid_rate=0.05, duplicate_rate=0.02)
    sends = [
        await registry.producer.send(
            registry.submit_topic,
            json.dumps(data).encode(),
            key=data["submission_id"].encode(),
            headers=[(k, v.encode()) for k, v in headers_for(data["submission_id"]).items()],
        )
        for data, _ in batch
    ]
    await asyncio.gather(*sends)
    submitted = {data["submission_id"] for data, _ in batch}

    answers = await registry.outcomes.wait_for(
        lambda r: r.topic != registry.dlq and r.json().get("submission_id") in submitted,
        COUNT,
        timeout=180,
    )
    registered = {
        r.json()["participant_id"] for r in answers if r.topic == registry.registered_topic
    }
    expected_registered = sum(code is None for _, code in batch)
    assert len(registered) == expected_registered  # duplicates of a NIK register once

    await coaching.events.wait_for(
        lambda r: (
            r.topic == coaching.topic(TrainingEnrolled) and r.json()["participant_id"] in registered
        ),
        len(registered),
        timeout=180,
    )
    await registry.outcomes.caught_up()
    await coaching.events.caught_up()
    enrolled = coaching.events.matching(
        lambda r: (
            r.topic == coaching.topic(TrainingEnrolled) and r.json()["participant_id"] in registered
        )
    )
    per_participant = Counter(r.json()["participant_id"] for r in enrolled)
    assert set(per_participant) == registered
    assert set(per_participant.values()) == {1}
    seats = Counter(r.json()["cohort_id"] for r in enrolled)
    assert max(seats.values()) <= coaching.settings.cohort_capacity
    registered_events = registry.outcomes.matching(
        lambda r: r.topic == registry.registered_topic and r.json()["participant_id"] in registered
    )
    by_pid = {r.json()["participant_id"]: r for r in registered_events}
    for record in enrolled:  # each enrolment was caused by its participant-registered event
        cause = by_pid[record.json()["participant_id"]]
        assert record.headers["ce_causationid"] == cause.headers["ce_id"]
        assert record.headers["ce_correlationid"] == cause.headers["ce_correlationid"]
