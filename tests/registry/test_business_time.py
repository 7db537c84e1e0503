"""Business time (``ce_businesstime``): the envelope carries it from cause to caused event and
refuses a hostile one; the registry dates registrations and stages by it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.contracts import MentoringAssigned, Refusal, TrainingCompleted, TrainingEnrolled
from shared.envelope import (
    BUSINESS_TIME,
    ENVELOPE_HEADERS,
    HEADERS,
    Envelope,
    EnvelopeError,
    new_envelope,
)
from shared.kafka import Record, dlq_topic, read_envelope
from tests.conftest import random_id
from tests.kafka_helpers import Collector
from tests.registry.fixtures import Registry
from tests.registry.journey_helpers import get, publish, register, rows, until

T1 = datetime(2024, 3, 5, 2, 30, tzinfo=UTC)  # 09:30 WIB
T2 = datetime(2024, 4, 10, 6, 0, tzinfo=UTC)


# ------------------------------------------------------------------------ the envelope


def test_the_header_is_part_of_the_envelope_and_round_trips() -> None:
    assert BUSINESS_TIME == "ce_businesstime" and BUSINESS_TIME in ENVELOPE_HEADERS
    assert set(HEADERS) == ENVELOPE_HEADERS and all(HEADERS.values())
    envelope = new_envelope(type="t", source="lms", business_time=T1)
    headers = envelope.headers()
    assert headers[BUSINESS_TIME] == "2024-03-05T02:30:00+00:00"
    read = Envelope.from_headers(headers)
    assert read == envelope and read.occurred_at == T1
    plain = new_envelope(type="t", source="lms")
    assert BUSINESS_TIME not in plain.headers()
    assert Envelope.from_headers(plain.headers()).occurred_at == plain.time  # the default


def test_a_caused_event_carries_its_causes_business_time() -> None:
    cause = new_envelope(type="t", source="lms", business_time=T1)
    now = datetime.now(UTC)
    caused = cause.caused(type="u", source="coaching", subject="p", time=now)
    assert caused.time == now and caused.business_time == T1
    again = caused.caused(type="v", source="registry", subject="p", time=now)
    assert again.business_time == T1  # along the whole chain
    # a cause without one happened at its ce_time: that is what its effects carry
    plain = new_envelope(type="t", source="portal")
    later = plain.time + timedelta(seconds=1)
    assert plain.caused(type="u", source="s", subject=None, time=later).business_time == plain.time
    # never later than the caused event itself (another host's clock may lag)
    early = now - timedelta(seconds=30)
    lagging = plain.caused(type="u", source="s", subject=None, time=early)
    assert lagging.business_time == early


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("kemarin", "not an RFC 3339 time"),
        ("2024-03-05T02:30:00", "no UTC offset"),
        ("1999-12-31T23:59:59+00:00", "out of range"),
        ("9999-12-31T23:00:00-12:00", "out of range"),
        ("2099-12-31T00:00:00+00:00", "later than ce_time"),
        ("2024-03-05T02:30:00+00:00" + " " * 100, "too long"),
    ],
)
def test_a_hostile_business_time_is_refused_not_believed(value: str, problem: str) -> None:
    headers = new_envelope(type="t", source="lms").headers() | {BUSINESS_TIME: value}
    with pytest.raises(EnvelopeError, match=problem):
        Envelope.from_headers(headers)


def test_a_fact_dated_after_its_arrival_is_refused() -> None:
    """A producer whose clock runs a day ahead dates ce_time and its business time alike:
    consistent with each other, but later than the record's arrival: refused, where a
    minute ahead (NTP's drift) is not, nor a skewed ce_time alone (as before: the registry
    judges an age on the day received, test_hostile_input)."""
    topic = "x." + TrainingCompleted.name
    cases = [(timedelta(days=1), True, True), (timedelta(minutes=1), False, True)]
    cases.append((timedelta(days=1), False, False))  # a skewed ce_time alone: tolerated
    for ahead, refused, dated in cases:
        at = datetime.now(UTC) + ahead
        headers = new_envelope(type=TrainingCompleted.ce_type(), source="coaching").headers()
        headers |= {"ce_time": at.isoformat()} | ({BUSINESS_TIME: at.isoformat()} if dated else {})
        record = Record(topic, 0, 0, b"p", b"{}", headers)
        if refused:
            with pytest.raises(Refusal, match="later than its arrival") as caught:
                read_envelope(record, TrainingCompleted)
            assert caught.value.code == "invalid-envelope"
        else:
            assert read_envelope(record, TrainingCompleted).occurred_at == at


def test_a_producer_cannot_date_a_fact_in_the_future() -> None:
    with pytest.raises(ValueError, match="future"):
        new_envelope(type="t", source="lms", business_time=datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(ValueError, match="outside"):
        new_envelope(type="t", source="lms", business_time=datetime(1990, 1, 1, tzinfo=UTC))


# ------------------------------------------------------------------- the registry, real


async def test_registrations_and_stages_are_dated_by_business_time(registry: Registry) -> None:
    kecamatan = random_id("Kec-")
    p1 = await register(registry, T1, kecamatan=kecamatan)
    p2 = await register(registry, T2, kecamatan=kecamatan)
    # the registry's own events carry the submission's business time (ce_time is now)
    [registered] = registry.outcomes.matching(
        lambda r: r.topic == registry.registered_topic and r.json()["participant_id"] == p1
    )
    assert registered.headers[BUSINESS_TIME] == T1.isoformat()
    assert datetime.fromisoformat(registered.headers["ce_time"]) > T1 + timedelta(days=365)

    days = timedelta(days=1)
    for pid, start, done, assigned in ((p1, T1, 20, 25), (p2, T2, 16, 19)):
        # as coaching enrols (at the registration's business time, carried from it)
        await publish(
            registry,
            TrainingEnrolled(
                participant_id=pid,
                cohort_id="c",
                sector="kuliner",
                city="Jakarta Timur",
                session_count=4,
            ),
            start,
        )
        await publish(
            registry,
            TrainingCompleted(participant_id=pid, cohort_id="c", score=85, attendance_rate=1.0),
            start + done * days,
        )
        await publish(
            registry,
            MentoringAssigned(participant_id=pid, mentor_id="m-1", centre="PPKUKM"),
            start + assigned * days,
        )

    async def settled() -> dict[str, object] | None:
        funnel = await get(registry, "/funnel", kecamatan=kecamatan)
        return funnel if rows(funnel)["mentoring-assigned"]["count"] == 2 else None

    funnel = await until("both mentees in the funnel", settled)
    by_stage = rows(funnel)
    assert by_stage["registered"]["median_days_to_next"] == 0.0
    assert by_stage["training-enrolled"]["median_days_to_next"] == 18.0  # 20 and 16 days
    assert by_stage["training-completed"]["median_days_to_next"] == 4.0  # 5 and 3 days
    assert by_stage["mentoring-assigned"]["median_days_from_previous"] == 4.0
    assert funnel["registrations_per_month"] == [
        {"month": "2024-03", "participants": 1},
        {"month": "2024-04", "participants": 1},
    ]
    march = await get(registry, "/funnel", kecamatan=kecamatan, registered_month="2024-03")
    assert march["participants"] == 1

    journey = await get(registry, f"/participants/{p1}/journey")
    assert datetime.fromisoformat(journey["stages"]["registered"]) == T1
    assert datetime.fromisoformat(journey["stages"]["training-completed"]) == T1 + 20 * days
    assert journey["profile"]["registered_month"] == "2024-03"


@pytest.mark.parametrize(
    "value", ["bukan waktu", "1999-01-01T00:00:00+00:00", "2099-01-01T00:00:00+00:00"]
)
async def test_a_hostile_business_time_is_dead_lettered_and_dates_nothing(
    registry: Registry, value: str
) -> None:
    pid = await register(registry, T1, kecamatan=random_id("Kec-"))
    topic = registry.settings.topic(TrainingCompleted.name)
    dead = await Collector(registry.outcomes.kafka, [dlq_topic(topic)]).start()
    try:
        completed = TrainingCompleted(
            participant_id=pid, cohort_id="c", score=90, attendance_rate=1.0
        )
        headers = new_envelope(
            type=TrainingCompleted.ce_type(), source="coaching", subject=pid
        ).headers()
        await publish(registry, completed, None, headers=headers | {BUSINESS_TIME: value})
        # Every service that reads the topic refuses it alike (the marketplace too, when
        # the suite runs it on the same topics): the registry's own entry.
        [entry] = await dead.wait_for(
            lambda r: (
                r.key == pid.encode()
                and r.headers["dlq_failing_service"] == registry.settings.service_name
            )
        )
        assert entry.headers["dlq_error_type"] == "invalid-envelope"
        assert BUSINESS_TIME in entry.headers["dlq_error_message"]
        # the same fact, well dated, is applied: the bad one added nothing before it
        await publish(registry, completed, T1 + timedelta(days=9))

        async def completed_stage() -> str | None:
            journey = await get(registry, f"/participants/{pid}/journey")
            return journey["stages"].get("training-completed")

        at = await until("the well-dated fact", completed_stage)
        assert datetime.fromisoformat(at) == T1 + timedelta(days=9)
    finally:
        await dead.stop()
