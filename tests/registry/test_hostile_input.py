"""Hostile submissions against the real registry: each ends in an answer or a DLQ entry with a
reason code, and the registry answers the next valid submission as usual."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

from shared.contracts import ProductCurated, RegistrationRejected, TrainingEnrolled
from shared.envelope import new_envelope
from shared.kafka import dlq_topic
from tests.kafka_helpers import Collector, send
from tests.registry.fixtures import Registry
from tools.registrations import headers_for, make_nik

pytestmark = pytest.mark.integration


async def _dead(registry: Registry, marker: bytes) -> dict[str, str]:
    [dead] = await registry.outcomes.wait_for(lambda r: r.topic == registry.dlq and r.key == marker)
    return dead.headers


async def _still_answers(registry: Registry) -> None:
    data = registry.generator.valid()
    await registry.submit(data)
    [outcome] = await registry.outcomes_for(data["submission_id"])
    assert outcome.topic == registry.registered_topic


@pytest.mark.parametrize(
    ("case", "value", "ce_time", "code"),
    [
        ("100,000 nested brackets", b"[" * 100_000, None, "too-large"),
        ("50,000 nested brackets", b"[" * 50_000, None, "too-deep"),
        (
            "nested objects in a field",
            b'{"submission_id": "x", "nik": ' + b'{"a":' * 5000,
            None,
            "too-deep",
        ),
        ("900 KB full_name", None, None, "too-large"),
        ("time that overflows", b"{}", "9999-12-31T23:00:00-12:00", "invalid-envelope"),
        ("time before 2000", b"{}", "1970-01-01T00:00:00+00:00", "invalid-envelope"),
    ],
)
async def test_a_hostile_record_is_dead_lettered_with_its_reason_and_the_rest_goes_on(
    registry: Registry, case: str, value: bytes | None, ce_time: str | None, code: str
) -> None:
    marker = str(uuid.uuid4()).encode()
    if value is None:
        data = registry.generator.valid(full_name="A" * 900_000)
        value = json.dumps(data).encode()
    headers = headers_for(marker.decode())
    if ce_time is not None:
        headers["ce_time"] = ce_time
    await send(registry.producer, registry.submit_topic, value, marker, headers)
    dead = await _dead(registry, marker)
    assert dead["dlq_error_type"] == code, case
    await _still_answers(registry)


async def test_a_valid_submission_with_an_overflowing_time_goes_to_the_dlq(
    registry: Registry,
) -> None:
    data = registry.generator.valid()
    headers = headers_for(data["submission_id"]) | {"ce_time": "9999-12-31T23:00:00-12:00"}
    marker = data["submission_id"].encode()
    await send(registry.producer, registry.submit_topic, json.dumps(data).encode(), marker, headers)
    assert (await _dead(registry, marker))["dlq_error_type"] == "invalid-envelope"
    assert await registry.participants_with(submission_id=data["submission_id"]) == []
    await _still_answers(registry)


async def test_a_journey_event_with_an_overflowing_time_goes_to_its_dlq(
    registry: Registry, forger: AIOKafkaProducer
) -> None:
    topic = registry.settings.topic(TrainingEnrolled.name)
    dead = await Collector(registry.outcomes.kafka, [dlq_topic(topic)]).start()
    try:
        marker = str(uuid.uuid4()).encode()
        headers = new_envelope(type=TrainingEnrolled.ce_type(), source="coaching").headers()
        headers["ce_time"] = "9999-12-31T23:00:00-12:00"
        body = {
            "participant_id": marker.decode(),
            "cohort_id": "c",
            "sector": "kuliner",
            "city": "Jakarta Pusat",
            "session_count": 4,
        }
        await send(forger, topic, json.dumps(body).encode(), marker, headers)
        [entry] = await dead.wait_for(lambda r: r.key == marker)
        assert entry.headers["dlq_error_type"] == "invalid-envelope"
    finally:
        await dead.stop()
    await _still_answers(registry)


async def test_a_long_name_is_rejected_not_registered(registry: Registry) -> None:
    data = registry.generator.valid(full_name="Siti " + "a" * 5000)
    await registry.submit(data)
    [outcome] = await registry.outcomes_for(data["submission_id"])
    rejected = RegistrationRejected.model_validate_json(outcome.value)
    assert [(r.code, r.field) for r in rejected.reasons] == [("invalid-payload", "full_name")]


async def test_control_characters_in_a_name_are_rejected(registry: Registry) -> None:
    data = registry.generator.valid(full_name="Siti\x00\u202e Lestari")
    await registry.submit(data)
    [outcome] = await registry.outcomes_for(data["submission_id"])
    rejected = RegistrationRejected.model_validate_json(outcome.value)
    assert [(r.code, r.field) for r in rejected.reasons] == [("invalid-payload", "full_name")]


async def test_fullwidth_digits_are_the_same_nik_and_other_digits_are_not_a_nik(
    registry: Registry,
) -> None:
    first = registry.generator.valid()
    await registry.submit(first)
    [registered] = await registry.outcomes_for(first["submission_id"])
    assert registered.topic == registry.registered_topic

    # U+FF10.. (fullwidth, NFKC folds them to ASCII) and U+0660.. (Arabic-Indic, it does not)
    fullwidth = {ord("0") + i: 0xFF10 + i for i in range(10)}
    arabic = {ord("0") + i: 0x0660 + i for i in range(10)}
    again = registry.generator.valid(
        nik=first["nik"].translate(fullwidth),
        birth_date=first["birth_date"],
        gender=first["gender"],
        city=first["city"],
    )
    other = registry.generator.valid(
        nik=first["nik"].translate(arabic),
        birth_date=first["birth_date"],
        gender=first["gender"],
        city=first["city"],
    )
    await registry.submit(again)
    await registry.submit(other)
    [second] = await registry.outcomes_for(again["submission_id"])
    [third] = await registry.outcomes_for(other["submission_id"])
    same = RegistrationRejected.model_validate_json(second.value)
    assert [r.code for r in same.reasons] == ["already-registered"]
    assert same.participant_id is None  # whose NIK it is: for ops only (GET /submissions/..)
    assert "invalid-nik" in [
        r.code for r in RegistrationRejected.model_validate_json(third.value).reasons
    ]
    assert len(await registry.participants_with(submission_id=first["submission_id"])) == 1


async def test_age_is_judged_on_the_day_received_not_the_producers_clock(
    registry: Registry,
) -> None:
    today = datetime.now(UTC).date()
    birth = date(today.year - 16, 6, 15)  # 16 today; 17 by the producer's clock below
    data = registry.generator.valid(
        birth_date=birth.isoformat(),
        nik=make_nik("Jakarta Pusat", birth, "L", 4242),
        gender="L",
        city="Jakarta Pusat",
    )
    headers = headers_for(data["submission_id"])
    headers["ce_time"] = (datetime.now(UTC) + timedelta(days=3 * 365)).isoformat()
    await registry.submit(data, headers)
    [outcome] = await registry.outcomes_for(data["submission_id"])
    rejected = RegistrationRejected.model_validate_json(outcome.value)
    assert [r.code for r in rejected.reasons] == ["underage"]


async def test_a_valid_event_on_another_events_topic_is_refused(
    registry: Registry, forger: AIOKafkaProducer
) -> None:
    """One event type per topic: a well-formed product-curated put on training-enrolled is
    not taken for a stage; it goes to that topic's DLQ."""
    topic = registry.settings.topic(TrainingEnrolled.name)
    dead = await Collector(registry.outcomes.kafka, [dlq_topic(topic)]).start()
    try:
        marker = str(uuid.uuid4())
        curated = ProductCurated(product_id="p", participant_id=marker, grade="A")
        headers = new_envelope(type=ProductCurated.ce_type(), source="marketplace").headers()
        await send(forger, topic, curated.model_dump_json().encode(), marker.encode(), headers)
        [entry] = await dead.wait_for(lambda r: r.key == marker.encode())
        assert entry.headers["dlq_error_type"] == "unknown-event-type"
    finally:
        await dead.stop()
    db = registry.mongo[registry.settings.mongodb_database]
    assert await db.journeys.find_one({"_id": marker}) is None


async def test_a_birth_date_before_1900_is_rejected_not_dead_lettered(registry: Registry) -> None:
    birth = date(1850, 5, 1)
    data = registry.generator.valid(
        birth_date=birth.isoformat(),
        nik=make_nik("Jakarta Pusat", birth, "L", 4343),
        gender="L",
        city="Jakarta Pusat",
    )
    await registry.submit(data)
    [outcome] = await registry.outcomes_for(data["submission_id"])
    rejected = RegistrationRejected.model_validate_json(outcome.value)
    assert ("invalid-payload", "birth_date") in [(r.code, r.field) for r in rejected.reasons]


async def test_a_header_name_that_is_not_utf8_stalls_nothing(registry: Registry) -> None:
    """aiokafka decodes header names strictly; one such record used to make every fetch of
    its consumer raise. Two submissions in one batch on one partition, the first with a
    header name of bytes 0xFF 0xFE: both are answered."""

    class RawName(str):  # what a producer outside Python could write
        def encode(self, *args: object, **kwargs: object) -> bytes:
            return b"\xff\xfe-x"

    first, second = registry.generator.valid(), registry.generator.valid()
    # A producer of its own, not idempotent: the pure-Python batch builder below carries no
    # producer state.
    producer = AIOKafkaProducer(**registry.outcomes.kafka.client_kwargs(), acks="all")
    await producer.start()
    try:
        batch = producer.create_batch()
        batch._builder = _DefaultRecordBatchBuilderPy(
            2,
            0,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1_000_000,
        )
        for data, extra in ((first, [(RawName("x"), b"1")]), (second, [])):
            headers = [(k, v.encode()) for k, v in headers_for(data["submission_id"]).items()]
            batch.append(
                key=data["submission_id"].encode(),
                value=json.dumps(data).encode(),
                timestamp=None,
                headers=headers + extra,
            )
        batch.close()
        await (await producer.send_batch(batch, registry.submit_topic, partition=0))
    finally:
        await producer.stop()
    for data in (first, second):
        [outcome] = await registry.outcomes_for(data["submission_id"])
        assert outcome.topic == registry.registered_topic
    await _still_answers(registry)
