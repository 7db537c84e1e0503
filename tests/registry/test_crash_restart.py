"""The registry killed (SIGKILL, no goodbye) while 1,000 submissions are in flight, then
restarted: every submission still gets exactly one answer, and nothing is stored twice."""

from __future__ import annotations

import json
import signal
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from deploy.local.launcher import free_port
from shared.contracts import ParticipantRegistered, RegistrationRejected, RegistrationSubmitted
from tests.conftest import Servers, random_id
from tests.kafka_helpers import Collector, Seen, spawn_service, wait_committed, wait_ready
from tools.registrations import Generator, headers_for, nik_groups

pytestmark = pytest.mark.integration
COUNT = 1000


async def test_killed_and_restarted_mid_stream_answers_each_submission_once(
    servers: Servers, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    prefix = random_id("crash-") + "."
    database = random_id("registry_")
    port = free_port()
    env = {
        **servers.env_for("registry", prefix, database),
        "REGISTRY_MONGODB_DATABASE": database,
        "REGISTRY_HTTP_PORT": str(port),
        "REGISTRY_OUTBOX_RELAY_INTERVAL_S": "0.2",
    }
    log = tmp_path / "registry.log"
    url = f"http://127.0.0.1:{port}"
    processes = []
    try:
        first = spawn_service("services.registry", env, log)
        processes.append(first)
        await wait_ready(url, first)

        submit_topic = prefix + RegistrationSubmitted.name
        outcomes = await Collector(
            servers.kafka,
            [prefix + ParticipantRegistered.name, prefix + RegistrationRejected.name],
        ).start()
        batch = Generator(seed=None).batch(COUNT, invalid_rate=0.1, duplicate_rate=0.05)
        sent = []
        for data, _ in batch:
            sent.append(
                await producer.send(
                    submit_topic,
                    json.dumps(data).encode(),
                    key=data["submission_id"].encode(),
                    headers=[
                        (k, v.encode()) for k, v in headers_for(data["submission_id"]).items()
                    ],
                )
            )
        metas = [await f for f in sent]

        await outcomes.wait_for(lambda r: True, count=50, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait()
        answered_before_kill = len(outcomes.records)
        second = spawn_service("services.registry", env, log)
        processes.append(second)
        try:
            await wait_ready(url, second)
            await outcomes.wait_for(lambda r: True, count=COUNT, timeout=240)
            last = {}
            for m in metas:
                last[m.partition] = max(last.get(m.partition, -1), m.offset)
            for partition, offset in last.items():
                await wait_committed(
                    servers.kafka,
                    prefix + "registry",
                    submit_topic,
                    partition,
                    offset,
                )
            await outcomes.caught_up()
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(60)
            await outcomes.stop()

        assert answered_before_kill < COUNT, "the kill came after everything was answered"
        by_submission: dict[str, list[Seen]] = defaultdict(list)
        for record in outcomes.records:
            by_submission[record.json()["submission_id"]].append(record)
        submitted = {data["submission_id"] for data, _ in batch}
        assert set(by_submission) == submitted
        # exactly one answer each: a record seen twice may only be the same event (same ce_id)
        # republished by the outbox relay, which consumers drop as a duplicate.
        distinct = {sid: {r.headers["ce_id"] for r in rs} for sid, rs in by_submission.items()}
        assert all(len(ids) == 1 for ids in distinct.values())
        assert all(len({r.topic for r in rs}) == 1 for rs in by_submission.values())

        registered = {
            rs[0].json()["participant_id"]
            for rs in by_submission.values()
            if rs[0].topic == prefix + ParticipantRegistered.name
        }
        mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(servers.mongodb_uri)
        try:
            stored = await mongo[database].participants.distinct("_id")
        finally:
            await mongo.close()
        assert set(stored) == registered
        for ids in nik_groups(batch):
            assert (
                sum(by_submission[sid][0].topic.endswith(ParticipantRegistered.name) for sid in ids)
                == 1
            )

        text = log.read_text()
        for data, _ in batch:
            for field in ("nik", "kk", "phone", "email"):
                value = data.get(field)
                assert not (isinstance(value, str) and len(value) >= 6 and value in text)
        # nor its credentials (the Kafka password, the MongoDB user's)
        mongo_password = env["MONGODB_URI"].split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        for secret in (env["KAFKA_SASL_PASSWORD"], mongo_password):
            assert len(secret) > 20 and secret not in text
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
