"""The registry end to end on the real Kafka broker and the real mongod."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from bson import encode

from services.registry.handlers import Deps, handle_submissions
from shared.contracts import (
    ParticipantContact,
    ParticipantRegistered,
    RegistrationRejected,
    RegistrationSubmitted,
)
from shared.dlq_seal import PersonalSeal
from shared.kafka import KafkaAccess, Record
from shared.settings import DEV_DLQ_PERSONAL_KEY
from tests import auth_helpers, waiting
from tests.kafka_helpers import Collector, send, wait_committed
from tests.registry.fixtures import Registry
from tools.registrations import BREAKERS, headers_for

pytestmark = pytest.mark.integration


async def test_valid_submission_gives_one_participant_registered_with_envelope(
    registry: Registry,
) -> None:
    data = registry.generator.valid(email="siti.lestari@contoh.id")
    headers = headers_for(data["submission_id"])
    await registry.submit(data, headers)

    [outcome] = await registry.outcomes_for(data["submission_id"])
    assert outcome.topic == registry.registered_topic
    body = ParticipantRegistered.model_validate_json(outcome.value)
    h = outcome.headers
    assert h["ce_specversion"] == "1.0"
    assert h["ce_type"] == "jakpreneur.participant-registered.v2"
    assert h["ce_source"] == "registry"
    assert h["ce_subject"] == body.participant_id
    assert h["ce_causationid"] == headers["ce_id"]
    assert h["ce_correlationid"] == headers["ce_correlationid"]
    assert h["content-type"] == "application/json"
    uuid.UUID(h["ce_id"])
    assert abs(datetime.fromisoformat(h["ce_time"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert outcome.key == body.participant_id.encode()
    assert body.birth_year == int(data["birth_date"][:4])
    # nothing personal in it: no NIK, KK, name, contact or kelurahan
    for personal in ("nik", "kk", "full_name", "phone", "email", "kelurahan"):
        assert data[personal] not in outcome.value.decode(), personal
    assert data["full_name"].split()[0] not in outcome.value.decode()
    # the contact and the first name on their own topic, keyed by the participant
    contacts = await Collector(
        registry.outcomes.kafka, [registry.settings.topic(ParticipantContact.name)]
    ).start()
    try:
        [contact] = await contacts.wait_for(lambda r: r.key == outcome.key)
    finally:
        await contacts.stop()
    sent = ParticipantContact.model_validate_json(contact.value)
    assert sent.phone.startswith("+628") and sent.email == "siti.lestari@contoh.id"
    assert sent.display_name == data["full_name"].split()[0]
    assert body.participant_id not in data["nik"]

    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        response = await http.get(f"{registry.url}/participants/{body.participant_id}")
        missing = await http.get(f"{registry.url}/participants/{uuid.uuid4()}")
    assert response.status_code == 200
    assert response.json()["participant_id"] == body.participant_id
    assert response.json()["city"] == data["city"]
    assert data["nik"] not in response.text and data["kk"] not in response.text
    assert missing.status_code == 404

    [stored] = await registry.participants_with(_id=body.participant_id)
    dump = encode(stored)
    assert data["nik"].encode() not in dump and data["kk"].encode() not in dump


@pytest.mark.parametrize("code", sorted(BREAKERS))
async def test_each_broken_rule_is_rejected_with_its_code(registry: Registry, code: str) -> None:
    data = registry.generator.invalid(code)
    await registry.submit(data)

    [outcome] = await registry.outcomes_for(data["submission_id"])
    assert outcome.topic == registry.rejected_topic
    rejected = RegistrationRejected.model_validate_json(outcome.value)
    assert [r.code for r in rejected.reasons] == [code]
    assert all(r.message for r in rejected.reasons)
    assert outcome.headers["ce_type"] == "jakpreneur.registration-rejected.v1"
    assert outcome.key == data["submission_id"].encode()


async def test_a_rejection_names_every_problem(registry: Registry) -> None:
    data = registry.generator.valid(
        kk="99",
        phone="12345",
        email="x@",
        city="Bogor",
        sector="tambang",
        nib="1",
        consent=False,
        has_business="ya",
        gender="X",
    )
    await registry.submit(data)

    [outcome] = await registry.outcomes_for(data["submission_id"])
    reasons = {(r["code"], r["field"]) for r in outcome.json()["reasons"]}
    assert reasons == {
        ("invalid-payload", "has_business"),
        ("invalid-kk", "kk"),
        ("invalid-payload", "gender"),
        ("invalid-phone", "phone"),
        ("invalid-email", "email"),
        ("unknown-city", "city"),
        ("unknown-sector", "sector"),
        ("invalid-nib", "nib"),
        ("missing-consent", "consent"),
    }


async def test_operator_objects_and_wrong_types_are_invalid_payload_per_field(
    registry: Registry,
) -> None:
    data = registry.generator.valid()
    data.update(full_name={"$gt": ""}, kecamatan=12, consent="true")
    del data["kelurahan"]
    await registry.submit(data)

    [outcome] = await registry.outcomes_for(data["submission_id"])
    reasons = outcome.json()["reasons"]
    assert {(r["code"], r["field"]) for r in reasons} == {
        ("invalid-payload", "full_name"),
        ("invalid-payload", "kecamatan"),
        ("invalid-payload", "kelurahan"),
        ("invalid-payload", "consent"),
    }


async def test_a_redelivered_submission_is_answered_once(registry: Registry) -> None:
    data = registry.generator.valid()
    headers = headers_for(data["submission_id"])
    metas = [await registry.submit(data, headers) for _ in range(3)]
    metas.append(await registry.submit(data))  # a resend with a new ce_id, same submission

    for meta in metas:
        await wait_committed(
            KafkaAccess.of(registry.settings),
            registry.settings.consumer_group,
            meta.topic,
            meta.partition,
            meta.offset,
        )
    await registry.outcomes.caught_up()
    outcomes = await registry.outcomes_for(data["submission_id"])
    assert len(outcomes) == 1
    assert len(await registry.participants_with(submission_id=data["submission_id"])) == 1


async def test_a_second_submission_with_a_registered_nik_is_already_registered(
    registry: Registry,
) -> None:
    first = registry.generator.valid()
    await registry.submit(first)
    [registered] = await registry.outcomes_for(first["submission_id"])
    pid = registered.json()["participant_id"]

    second = registry.generator.valid(
        nik=first["nik"],
        birth_date=first["birth_date"],
        gender=first["gender"],
        city=first["city"],
    )
    await registry.submit(second)
    [rejected] = await registry.outcomes_for(second["submission_id"])
    assert rejected.topic == registry.rejected_topic
    assert [r["code"] for r in rejected.json()["reasons"]] == ["already-registered"]
    # the submitter is not told whose NIK it is; ops can read it at the registry
    assert rejected.json()["participant_id"] is None and pid not in rejected.value.decode()
    outcome = await submission_outcome(registry, second["submission_id"])
    assert outcome["outcome"] == "rejected" and outcome["existing_participant_id"] == pid
    assert outcome["reasons"][0]["code"] == "already-registered"
    assert (await submission_outcome(registry, first["submission_id"]))["participant_id"] == pid
    async with httpx.AsyncClient() as http:
        url = f"{registry.url}/submissions/{second['submission_id']}"
        assert (await http.get(url)).status_code == 401
        for role, claims in (("dinas", {}), ("kota", {"city": first["city"]})):
            refused = await http.get(url, headers=auth_helpers.bearer(role, **claims))
            assert refused.status_code == 403 and pid not in refused.text
        assert (
            await http.get(f"{registry.url}/submissions/x", headers=auth_helpers.ops())
        ).status_code == 404


async def submission_outcome(registry: Registry, submission_id: str) -> dict[str, Any]:
    """GET /submissions/{id} as ops: the outcome, and an already-registered one's owner."""
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        response = await http.get(f"{registry.url}/submissions/{submission_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_two_submissions_with_one_nik_at_once_register_one(registry: Registry) -> None:
    first = registry.generator.valid()
    twin = registry.generator.valid(
        nik=first["nik"],
        birth_date=first["birth_date"],
        gender=first["gender"],
        city=first["city"],
    )
    await asyncio.gather(registry.submit(first), registry.submit(twin))

    outcomes = [
        (await registry.outcomes_for(sid))[0]
        for sid in (first["submission_id"], twin["submission_id"])
    ]
    topics = sorted(o.topic for o in outcomes)
    assert topics == sorted([registry.registered_topic, registry.rejected_topic])
    winner = next(o for o in outcomes if o.topic == registry.registered_topic)
    loser = next(o for o in outcomes if o.topic == registry.rejected_topic)
    assert loser.json()["participant_id"] is None
    existing = await submission_outcome(registry, loser.json()["submission_id"])
    assert existing["existing_participant_id"] == winner.json()["participant_id"]


async def test_concurrent_handlers_race_on_one_nik_and_one_wins(registry: Registry) -> None:
    """The race itself, not left to the consumer's order: many handlers at once, one NIK,
    against the real mongod (unique index + transactions) and the real broker."""
    from services.registry.store import PiiVault, RegistryStore
    from shared.kafka import make_broker
    from shared.mongo import Outbox, make_client

    settings = registry.settings
    broker = make_broker(settings)
    await broker.start()
    client = make_client(settings.mongodb_uri)
    store = RegistryStore(
        client,
        settings.mongodb_database,
        PiiVault(
            settings.pii_hash_key.get_secret_value(),
            settings.pii_encryption_key.get_secret_value(),
        ),
    )
    deps = Deps(settings=settings, broker=broker, store=store, outbox=Outbox(store.db, broker))
    first = registry.generator.valid()
    twins = [first] + [
        registry.generator.valid(
            nik=first["nik"],
            birth_date=first["birth_date"],
            gender=first["gender"],
            city=first["city"],
        )
        for _ in range(7)
    ]
    records = [
        Record(
            settings.topic(RegistrationSubmitted.name),
            0,
            i,
            None,
            json.dumps(t).encode(),
            headers_for(t["submission_id"]),
        )
        for i, t in enumerate(twins)
    ]
    try:
        await handle_submissions(records, deps)
    finally:
        await broker.stop()
        await client.close()

    outcomes = [(await registry.outcomes_for(t["submission_id"]))[0] for t in twins]
    registered = [o for o in outcomes if o.topic == registry.registered_topic]
    assert len(registered) == 1
    pid = registered[0].json()["participant_id"]
    for o in outcomes:
        if o is not registered[0]:
            assert o.json()["reasons"][0]["code"] == "already-registered"
            assert o.json()["participant_id"] is None
            outcome = await submission_outcome(registry, o.json()["submission_id"])
            assert outcome["existing_participant_id"] == pid
    assert len(await registry.participants_with(_id=pid)) == 1


@pytest.mark.parametrize(
    ("case", "value", "headers", "error_type"),
    [
        ("not json", b"\x00not json{", None, "invalid-json"),
        ("json array", b"[1, 2]", None, "invalid-json"),
        ("no submission id", b'{"nik": "3171000000000001"}', None, "missing-submission-id"),
        (
            "no envelope",
            b'{"submission_id": "x"}',
            [("content-type", b"application/json")],
            "invalid-envelope",
        ),
        (
            "unknown type",
            b'{"submission_id": "x"}',
            "jakpreneur.registration-submitted.v9",
            "unknown-event-type",
        ),
        ("null header", b"{}", [("ce_id", None)], "invalid-envelope"),
    ],
)
async def test_an_unreadable_record_lands_in_the_dlq_with_its_headers(
    registry: Registry, case: str, value: bytes, headers: object, error_type: str
) -> None:
    marker = str(uuid.uuid4()).encode()
    if headers is None:
        header_list: list[tuple[str, bytes | None]] = [
            (k, v.encode()) for k, v in headers_for("unreadable").items()
        ]
    elif isinstance(headers, str):
        header_list = [
            (k, (headers if k == "ce_type" else v).encode())
            for k, v in headers_for("unreadable").items()
        ]
    else:
        header_list = list(headers)  # type: ignore[call-overload]
    meta = await send(registry.producer, registry.submit_topic, value, marker, header_list)

    [dead] = await registry.outcomes.wait_for(lambda r: r.topic == registry.dlq and r.key == marker)
    # the DLQ keeps no personal data in clear: a value that is not an object is encrypted
    # whole, a NIK field by field; the key opens them to the original
    assert (dead.value == value) is (value.startswith(b"{") and b"nik" not in value)
    assert PersonalSeal(DEV_DLQ_PERSONAL_KEY).open(dead.value, dead.headers) == value
    assert dead.headers["dlq_error_type"] == error_type
    assert dead.headers["dlq_error_message"]
    assert dead.headers["dlq_original_topic"] == registry.submit_topic
    assert dead.headers["dlq_original_partition"] == str(meta.partition)
    assert dead.headers["dlq_original_offset"] == str(meta.offset)
    assert dead.headers["dlq_failing_service"] == "registry"

    # and the service carries on
    data = registry.generator.valid()
    await registry.submit(data)
    assert await registry.outcomes_for(data["submission_id"])


async def test_a_readable_submission_in_the_dlq_keeps_its_personal_fields_encrypted(
    registry: Registry,
) -> None:
    """A whole, valid submission from a system that may not send it (unknown-source) is a
    readable record in the DLQ: why it failed stays readable, its NIK, KK, name, birth date,
    contacts, kelurahan and NIB are ciphertexts that the DLQ key opens to the original."""
    data = registry.generator.valid()
    await registry.submit(data, headers_for(data["submission_id"], source="bank-dki"))
    [dead] = await registry.outcomes.wait_for(
        lambda r: r.topic == registry.dlq and r.key == data["submission_id"].encode()
    )
    assert dead.headers["dlq_error_type"] == "unknown-source"
    assert "nik" in dead.headers["dlq_personal_encrypted"].split(",")
    for name in ("nik", "kk", "full_name", "phone", "birth_date"):
        assert str(data[name]) not in dead.value.decode(), name
    assert dead.json()["submission_id"] == data["submission_id"]
    opened = PersonalSeal(DEV_DLQ_PERSONAL_KEY).open(dead.value, dead.headers)
    assert opened == json.dumps(data).encode()


async def test_probes_and_asyncapi_docs(registry: Registry) -> None:
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        health = await http.get(f"{registry.url}/healthz")
        ready = await http.get(f"{registry.url}/readyz")
        docs = await http.get(f"{registry.url}/docs/asyncapi")
        schema = await http.get(f"{registry.url}/docs/asyncapi.json")
        anonymous = await http.get(f"{registry.url}/docs/asyncapi", headers={"Authorization": ""})
        participant = auth_helpers.bearer("participant", participant_id="p-1")
        any_role = await http.get(f"{registry.url}/docs/asyncapi.json", headers=participant)
    assert anonymous.status_code == 401 and any_role.status_code == 200
    assert health.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"kafka": True, "mongodb": True},
        "waiting_for": [],
    }
    assert docs.status_code == 200 and "html" in docs.headers["content-type"]
    text = json.dumps(schema.json())
    for topic in (registry.submit_topic, registry.registered_topic, registry.rejected_topic):
        assert topic in text
    assert "16 digits" in text  # the contract's field descriptions reach the docs


async def test_prometheus_metrics(registry: Registry) -> None:
    """Runs after the tests above: messages were consumed, published and dead-lettered."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{registry.url}/metrics")
    assert response.status_code == 200
    lines = response.text.splitlines()

    def value(prefix: str, *labels: str) -> float:
        found = [ln for ln in lines if ln.startswith(prefix) and all(x in ln for x in labels)]
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in found)

    assert value("faststream_received_messages_total", registry.submit_topic) > 0
    assert value("faststream_published_messages_total", registry.registered_topic) > 0
    assert value("faststream_published_messages_total", registry.dlq) > 0
    assert value("faststream_received_processed_messages_duration_seconds_count") > 0
    assert value("jakpreneur_outbox_backlog", 'service="registry"') == 0
    assert value("jakpreneur_dead_letters_total", 'service="registry"', registry.submit_topic) > 0
    lag = [ln for ln in lines if ln.startswith("jakpreneur_consumer_lag{")]
    assert any(registry.submit_topic in ln for ln in lag)  # one gauge per assigned partition
    assert value("jakpreneur_consumer_lag", registry.submit_topic) == 0  # all consumed


async def test_the_relay_publishes_what_a_crash_left_in_the_outbox(registry: Registry) -> None:
    """As if the service died between its commit and its publish: the event is only in the
    outbox. The relay finds it and publishes it, and then deletes its row."""
    from shared.envelope import OutgoingEvent, new_envelope

    submission_id = f"left-behind-{uuid.uuid4()}"
    rejected = RegistrationRejected(
        submission_id=submission_id,
        rejected_at=datetime.now(UTC),
        reasons=[{"code": "invalid-nik", "field": "nik", "message": "NIK must be 16 digits."}],
    )
    event = OutgoingEvent.of(
        rejected,
        topic=registry.rejected_topic,
        key=submission_id,
        envelope=new_envelope(type=RegistrationRejected.ce_type(), source="registry"),
    )
    outbox = registry.mongo[registry.settings.mongodb_database].outbox
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    await outbox.insert_one({**event.to_document(), "created_at": an_hour_ago})

    [published] = await registry.outcomes_for(submission_id)
    assert published.headers["ce_id"] == event.envelope.id
    assert published.key == submission_id.encode()

    async def rows_left() -> int:
        return await outbox.count_documents({"_id": event.envelope.id})

    await waiting.until(
        "the published event's row to leave the outbox", rows_left, 10, done=lambda n: n == 0
    )


async def test_participants_registered_before_the_journey_model_get_one_at_start_up(
    registry: Registry,
) -> None:
    from services.registry.store import PiiVault, RegistryStore

    db = registry.mongo[registry.settings.mongodb_database]
    pid = str(uuid.uuid4())
    at = datetime(2024, 4, 30, 20, 0, tzinfo=UTC)  # 1 May 03:00 in Jakarta
    await db.participants.insert_one(
        {
            "_id": pid,
            "registered_at": at,
            "city": "Jakarta Utara",
            "kecamatan": "Koja",
            "sector": "kriya",
            "has_business": False,
        }
    )
    settings = registry.settings
    store = RegistryStore(
        registry.mongo,
        settings.mongodb_database,
        PiiVault(
            settings.pii_hash_key.get_secret_value(),
            settings.pii_encryption_key.get_secret_value(),
        ),
    )
    await store.backfill_journeys()
    await store.backfill_journeys()  # idempotent
    journey = await db.journeys.find_one({"_id": pid})
    assert journey is not None
    assert journey["stages"]["registered"].replace(tzinfo=UTC) == at
    assert journey["profile"] == {
        "city": "Jakarta Utara",
        "kecamatan": "Koja",
        "sector": "kriya",
        "has_business": False,
        "registered_month": "2024-05",
    }


def test_zz_logs_hold_no_nik_kk_phone_or_email(registry: Registry, log_file: object) -> None:
    """Runs last in this module: everything submitted above has been logged about by now."""
    from pathlib import Path

    text = Path(str(log_file)).read_text()
    assert "submission answered" in text  # the service did log about each submission
    leaked = sorted(v for v in registry.pii_seen if len(v) >= 6 and v in text)
    assert leaked == []
