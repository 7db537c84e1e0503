from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from deploy.local.launcher import free_port
from services.registry.app import RegistrySettings, create_app
from shared.contracts import ParticipantRegistered, RegistrationRejected, RegistrationSubmitted
from shared.kafka import dlq_topic
from tests.conftest import Servers, random_id
from tests.kafka_helpers import Collector, Seen, send, serving
from tools.registrations import Generator, headers_for


@dataclass
class Registry:
    """A registry service running in this process against the real servers."""

    settings: RegistrySettings
    url: str
    producer: AIOKafkaProducer
    outcomes: Collector
    mongo: AsyncMongoClient[dict[str, Any]]
    generator: Generator
    pii_seen: set[str] = field(default_factory=set)

    @property
    def submit_topic(self) -> str:
        return self.settings.topic(RegistrationSubmitted.name)

    @property
    def registered_topic(self) -> str:
        return self.settings.topic(ParticipantRegistered.name)

    @property
    def rejected_topic(self) -> str:
        return self.settings.topic(RegistrationRejected.name)

    @property
    def dlq(self) -> str:
        return dlq_topic(self.submit_topic)

    async def submit(self, data: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        """Send a submission as the portal would; returns the record's metadata."""
        for name in ("nik", "kk", "phone", "email"):
            if isinstance(data.get(name), str):
                self.pii_seen.add(data[name])
        return await send(
            self.producer,
            self.submit_topic,
            json.dumps(data).encode(),
            str(data.get("submission_id", "no-id")).encode(),
            headers or headers_for(str(data.get("submission_id"))),
        )

    async def outcomes_for(self, submission_id: str, count: int = 1) -> list[Seen]:
        return await self.outcomes.wait_for(
            lambda r: r.topic != self.dlq and r.json().get("submission_id") == submission_id,
            count,
        )

    async def participants_with(self, **query: Any) -> list[dict[str, Any]]:
        db = self.mongo[self.settings.mongodb_database]
        return await db.participants.find(query).to_list()


@pytest_asyncio.fixture(scope="session")
async def registry(
    servers: Servers, producer: AIOKafkaProducer, log_file: Path, topic_prefix: str
) -> AsyncIterator[Registry]:
    async with running_registry(servers, producer, topic_prefix) as running:
        yield running


@contextlib.asynccontextmanager
async def running_registry(
    servers: Servers, producer: AIOKafkaProducer, topic_prefix: str
) -> AsyncIterator[Registry]:
    """A registry in this process on the real servers, on the topics under ``topic_prefix``."""
    settings = RegistrySettings(
        **servers.settings_for("registry", topic_prefix, random_id("registry_")),
        http_port=free_port(),
        outbox_relay_interval_s=0.2,
        log_level="DEBUG",
    )
    async with serving(create_app(settings), settings.http_port) as url:
        submit_topic = settings.topic(RegistrationSubmitted.name)
        outcomes = await Collector(
            servers.kafka,
            [
                settings.topic(ParticipantRegistered.name),
                settings.topic(RegistrationRejected.name),
                dlq_topic(submit_topic),
            ],
        ).start()
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            servers.mongodb_uri, tz_aware=True
        )
        try:
            yield Registry(settings, url, producer, outcomes, mongo, Generator(seed=None))
        finally:
            await outcomes.stop()
            await mongo.close()
