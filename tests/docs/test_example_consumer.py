"""The example downstream consumer (examples/dashboard.py) against the real broker and the
running registry and coaching: it logs in as a principal of its own, as ops would onboard a
downstream consumer (SCRAM credentials, read on its two topics, its own group), and counts
what the test caused, a redelivered event once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from cloudevents.core.bindings.kafka import KafkaMessage

from deploy.kafka_users import logs_in, set_scram_credentials
from examples.dashboard import TOPICS, Connection, Dashboard, follow, load_schemas, open_consumer
from shared import asyncapi
from shared.access import Acl, grant_as
from shared.contracts import (
    CertificationIssued,
    Event,
    ParticipantRegistered,
    ProductCertified,
    ProductSubmitted,
)
from shared.kafka import KafkaAccess
from tests import waiting
from tests.coaching.fixtures import CoachingUnderTest, days
from tests.conftest import Servers, Upstream, random_id
from tests.registry.fixtures import Registry


async def downstream_principal(servers: Servers, prefix: str) -> tuple[KafkaAccess, str]:
    """A new principal that may read the dashboard's two topics and use its own group,
    and nothing else; returns its login and its group."""
    user, password = random_id("dashboard-"), secrets.token_urlsafe(24)
    admin = AIOKafkaAdminClient(**servers.admin.client_kwargs())
    await admin.start()
    try:
        await set_scram_credentials(admin, {user: password})
    finally:
        await admin.close()
    simulator = servers.kafka
    access = KafkaAccess(
        simulator.bootstrap_servers,
        simulator.security_protocol,
        "SCRAM-SHA-512",
        user,
        password,
        simulator.ssl_cafile,
    )
    await logs_in(access)
    group = prefix + user
    rules = [
        Acl(user, "topic", prefix + topic, operation)
        for topic in TOPICS.values()
        for operation in ("Read", "Describe")
    ]
    rules += [Acl(user, "group", group, operation) for operation in ("Read", "Describe")]
    await grant_as(servers.admin, rules)
    return access, group


async def until(condition: Callable[[], bool], timeout: float = 60) -> None:
    await waiting.until("the dashboard to get there", condition, timeout)


def record(event: type[Event], data: dict[str, Any], ce_id: str) -> KafkaMessage:
    """A record as a service publishes it (the example's own headers aside)."""
    headers = dict(asyncapi.example_headers(event), ce_id=ce_id)
    return KafkaMessage(
        {k: v.encode() for k, v in headers.items()}, b"key", json.dumps(data).encode()
    )


def test_the_dashboard_joins_across_topics_and_counts_oddities_aside() -> None:
    dashboard = Dashboard(load_schemas())
    registered = asyncapi.example_of(ParticipantRegistered)
    certified = asyncapi.example_of(ProductCertified)
    assert registered is not None and certified is not None
    # the certification comes first: no order across topics
    dashboard.handle(record(ProductCertified, certified, "c-1"))
    assert dashboard.summary()["certified_owner_unknown"] == 1
    dashboard.handle(record(ParticipantRegistered, registered, "r-1"))
    dashboard.handle(record(ParticipantRegistered, registered, "r-1"))  # a repeat
    dashboard.handle(record(ParticipantRegistered, {**registered, "gender": 1}, "r-2"))
    dashboard.handle(record(ProductCertified, certified, "c-2"))
    v3 = dict(asyncapi.example_headers(ParticipantRegistered), ce_id="x-1")
    v3["ce_type"] = "jakpreneur.participant-registered.v3"
    dashboard.handle(KafkaMessage({k: v.encode() for k, v in v3.items()}, None, b"{}"))
    dashboard.handle(KafkaMessage({}, None, b"not a CloudEvent"))
    assert dashboard.summary() == {
        "registered": {"Tebet": 1},
        "certified": {"Tebet": 2},
        "certified_owner_unknown": 0,
        "repeats_dropped": 1,
        "invalid": 2,  # data that breaks its schema, and a record that is no CloudEvent
        "ignored": 1,  # a type it does not know
    }


@pytest.mark.integration
async def test_the_example_dashboard_counts_each_event_the_test_caused_once(
    registry: Registry,
    coaching: CoachingUnderTest,
    producer: Upstream,
    servers: Servers,
    topic_prefix: str,
) -> None:
    # three registrations in a kecamatan of this test's own, through the registry
    kecamatan = random_id("Kec-")
    submissions = [registry.generator.valid(kecamatan=kecamatan) for _ in range(3)]
    for data in submissions:
        await registry.submit(data)
    registered = [(await registry.outcomes_for(d["submission_id"]))[0] for d in submissions]
    pids = [ParticipantRegistered.model_validate_json(r.value).participant_id for r in registered]
    # two of them get a product certified, through coaching (jasa: an NIB is enough)
    for pid in pids[:2]:
        product_id = random_id("prod-")
        await coaching.send(
            ProductSubmitted.model_validate(
                {"product_id": product_id, "participant_id": pid, "name": "Jasa Jahit Contoh",
                 "category": "jasa", "production_started": "2023-06"}
            )
        )  # fmt: skip
        await coaching.send(
            CertificationIssued(
                certificate_id=random_id("nib-"), participant_id=pid, product_id=None,
                kind="NIB", number=f"NIB-{random_id('')}", issued_at=days(-1),
                expires_at=None, issuer="OSS",
            )
        )  # fmt: skip
    for pid in pids[:2]:
        await coaching.wait(ProductCertified, pid)
    # the registry's first registration comes again: same ce_id, key and value
    again = registered[0]
    await producer.send_and_wait(
        again.topic,
        again.value,
        key=again.key,
        headers=[(k, v.encode()) for k, v in again.headers.items()],
    )

    repeated = again.headers["ce_id"]
    access, group = await downstream_principal(servers, topic_prefix)
    topics = [topic_prefix + topic for topic in TOPICS.values()]

    async def dashboard_of(login: KafkaAccess, group: str | None) -> Dashboard:
        """The example run until it has read everything published so far."""
        dashboard = Dashboard(load_schemas())
        connection = Connection(
            login.bootstrap_servers,
            login.security_protocol,
            login.sasl_mechanism,
            login.username,
            login.password,
            login.ssl_cafile,
        )
        consumer = await open_consumer(connection, topics, group, from_beginning=True)
        task = asyncio.create_task(follow(consumer, dashboard, commit=group is not None))
        try:
            await until(lambda: dashboard.counts.repeats[repeated] == 1 or task.done())
            await until(lambda: dashboard.counts.certified[kecamatan] >= 2 or task.done())
            ends = await consumer.end_offsets(list(consumer.assignment()))

            async def caught_up() -> bool:
                return all([await consumer.position(tp) >= end for tp, end in ends.items()])

            await waiting.until("the dashboard to catch up", caught_up, 60)
            assert not task.done(), task.exception()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await consumer.stop()
        return dashboard

    # as a downstream principal of its own, in its group; and as a local stack's simulator
    # reads (every topic, no group of its own), assigning itself every partition
    for dashboard in (await dashboard_of(access, group), await dashboard_of(servers.kafka, None)):
        assert dashboard.counts.registered[kecamatan] == 3  # the repeat counted once
        assert dashboard.counts.certified[kecamatan] == 2
        assert dashboard.counts.repeats[repeated] == 1
        assert {p: dashboard.kecamatan_of[p] for p in pids} == dict.fromkeys(pids, kecamatan)
    # the records are as the AsyncAPI document says: keyed by participant, its headers
    documented = set(asyncapi.envelope_headers())
    for record, pid in zip(registered, pids, strict=True):
        assert record.key == pid.encode()
        assert set(record.headers) <= documented
