from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from deploy.local.launcher import free_port
from services.coaching.app import CoachingSettings, create_app
from services.coaching.handlers import CONSUMES, PRODUCES
from services.registry.domain import CITY_CODES
from shared.contracts import Event, ParticipantRegistered
from shared.envelope import new_envelope
from shared.kafka import dlq_topic
from tests.conftest import Servers, random_id
from tests.kafka_helpers import Collector, Seen, send, serving

# Test roster: in Jakarta Selatan, Tebet has two pendamping, Gambir one, Cilandak none (it
# falls back to the city centre). Every other city has a city centre, for generated people.
CITY = "Jakarta Selatan"
ROSTER = {
    "centres": [
        {"centre": "PLUT Tebet", "city": CITY, "kecamatan": "Tebet", "mentors": ["t-1", "t-2"]},
        {"centre": "PLUT Gambir", "city": CITY, "kecamatan": "Gambir", "mentors": ["g-1"]},
        {"centre": "PLUT Kota Jaksel", "city": CITY, "kecamatan": None, "mentors": ["kota-1"]},
        *(
            {"centre": f"PLUT {city}", "city": city, "kecamatan": None, "mentors": [f"{city}-1"]}
            for city in CITY_CODES
            if city != CITY
        ),
    ]
}


@dataclass
class CoachingUnderTest:
    settings: CoachingSettings
    url: str
    producer: AIOKafkaProducer
    events: Collector
    mongo: AsyncMongoClient[dict[str, Any]]

    def topic(self, event: type[Event]) -> str:
        return self.settings.topic(event.name)

    async def send(self, fact: Event, ce_id: str | None = None) -> Any:
        """Publish an inbound fact as the internal system would (key = participant id)."""
        envelope = new_envelope(type=fact.ce_type(), source=fact.producers[0])
        headers = envelope.headers()
        if ce_id:
            headers["ce_id"] = ce_id
        key = getattr(fact, "participant_id", None) or getattr(fact, "certificate_id", "none")
        return await send(
            self.producer, self.topic(type(fact)), fact.model_dump_json().encode(),
            key.encode(), headers,
        )  # fmt: skip

    async def register(self, kecamatan: str = "Gambir", sector: str | None = None) -> str:
        """A participant-registered as the registry would send it; returns the id."""
        pid = str(uuid.uuid4())
        await self.send(participant(pid, kecamatan, sector or random_id("sektor-")))
        return pid

    def of(self, event: type[Event], pid: str) -> list[Seen]:
        return self.events.matching(
            lambda r: r.topic == self.topic(event) and r.json().get("participant_id") == pid
        )

    async def wait(self, event: type[Event], pid: str, count: int = 1) -> list[Seen]:
        return await self.events.wait_for(
            lambda r: r.topic == self.topic(event) and r.json().get("participant_id") == pid,
            count,
        )

    async def dead(self, key: bytes) -> Seen:
        [record] = await self.events.wait_for(lambda r: r.topic.endswith(".dlq") and r.key == key)
        return record


def participant(pid: str, kecamatan: str, sector: str) -> ParticipantRegistered:
    return ParticipantRegistered.model_validate(
        {
            "participant_id": pid, "submission_id": str(uuid.uuid4()),
            "registered_at": datetime.now(UTC), "city": CITY, "kecamatan": kecamatan,
            "sector": sector, "has_business": True, "gender": "P", "birth_year": 1990,
        }
    )  # fmt: skip


def days(n: float) -> datetime:
    """``n`` days from now, at MongoDB's precision (milliseconds)."""
    moment = datetime.now(UTC) + timedelta(days=n)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@pytest_asyncio.fixture(scope="session")
async def coaching(
    servers: Servers, producer: AIOKafkaProducer, topic_prefix: str, tmp_path_factory: Any
) -> AsyncIterator[CoachingUnderTest]:
    roster_dir = Path(tmp_path_factory.mktemp("roster"))
    async with running_coaching(servers, producer, topic_prefix, roster_dir) as running:
        yield running


@contextlib.asynccontextmanager
async def running_coaching(
    servers: Servers, producer: AIOKafkaProducer, topic_prefix: str, roster_dir: Path
) -> AsyncIterator[CoachingUnderTest]:
    """Coaching in this process on the real servers, on the topics under ``topic_prefix``."""
    roster = roster_dir / "mentors.json"
    roster.write_text(json.dumps(ROSTER))
    settings = CoachingSettings(
        **servers.settings_for("coaching", topic_prefix, random_id("coaching_")),
        http_port=free_port(),
        outbox_relay_interval_s=0.2,
        cohort_capacity=3,
        cohort_sessions=4,
        mentors_file=roster,
        expiry_check_interval_s=0.5,
    )
    async with serving(create_app(settings), settings.http_port) as url:
        topics = [settings.topic(e.name) for e in PRODUCES]
        topics += [dlq_topic(settings.topic(e.name)) for e in CONSUMES]
        events = await Collector(servers.kafka, topics).start()
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_uri)
        try:
            yield CoachingUnderTest(settings, url, producer, events, mongo)
        finally:
            await events.stop()
            await mongo.close()
