"""The kernel's test world: a service's settings, a topic with its DLQ, a database with its
outbox, on the real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest_asyncio
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from shared.kafka import ensure_topics, make_broker
from shared.mongo import Outbox, StateDocuments, make_client
from shared.settings import ServiceSettings
from tests.conftest import Servers, random_id
from tests.kafka_helpers import Collector


class Tally(BaseModel):
    participant_id: str
    cohorts: list[str] = []


@dataclass
class World:
    settings: ServiceSettings
    topic: str
    db_name: str
    states: StateDocuments[Tally]
    outbox: Outbox
    dlq: Collector
    published: Collector
    broker: KafkaBroker


@pytest_asyncio.fixture(loop_scope="session")
async def world(servers: Servers) -> AsyncIterator[World]:
    db_name = random_id("batch_")
    settings = ServiceSettings(
        service_name="batch-test",  # a made-up service: it logs in as the admin
        **servers.settings_for("admin", random_id("batch-") + ".", db_name),
        topic_partitions=1,
    )
    await ensure_topics(settings, ["training-enrolled"])
    topic = settings.topic("training-enrolled")
    broker = make_broker(settings)
    await broker.connect()
    client = make_client(servers.mongodb_uri)
    db = client[db_name]
    dlq = await Collector(servers.kafka, [f"{topic}.dlq"]).start()
    published = await Collector(servers.kafka, [topic]).start()
    try:
        yield World(
            settings,
            topic,
            db.name,
            StateDocuments(db.participants, Tally),
            Outbox(db, broker),
            dlq,
            published,
            broker,
        )
    finally:
        await dlq.stop()
        await published.stop()
        await client.drop_database(db.name)
        await client.close()
        await broker.stop()
