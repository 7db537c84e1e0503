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
    settings = ServiceSettings(
        service_name="batch-test",
        kafka_bootstrap_servers=servers.kafka_bootstrap_servers,
        mongodb_uri=servers.mongodb_uri,
        topic_prefix=random_id("batch-") + ".",
        topic_partitions=1,
    )
    await ensure_topics(settings, ["training-enrolled"])
    topic = settings.topic("training-enrolled")
    broker = make_broker(settings)
    await broker.connect()
    client = make_client(servers.mongodb_uri)
    db = client[random_id("batch_")]
    dlq = await Collector(servers.kafka_bootstrap_servers, [f"{topic}.dlq"]).start()
    published = await Collector(servers.kafka_bootstrap_servers, [topic]).start()
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
