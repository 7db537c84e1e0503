from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from deploy.local.launcher import free_port
from deploy.local.providers import ProviderStandIn
from services.notifications.app import NotificationSettings, create_app
from services.notifications.domain import JAKARTA
from services.notifications.handlers import CONSUMES, PRODUCES
from shared.contracts import Event, ParticipantContact, ParticipantRegistered, TrainingEnrolled
from shared.envelope import new_envelope
from shared.kafka import dlq_topic
from tests import waiting
from tests.conftest import Servers, random_id
from tests.kafka_helpers import Collector, Seen, send, serving


def jakarta(day_offset: int, hour: int, minute: int = 0) -> datetime:
    today = datetime.now(JAKARTA).date() + timedelta(days=day_offset)
    return datetime.combine(today, time(hour, minute), tzinfo=JAKARTA).astimezone(UTC)


class Clock:
    """The service's clock in these tests: daytime in Jakarta unless a test moves it. It
    counts how often it was read: every dispatch round reads it, so a test can wait until a
    dispatcher has looked at the jobs a few more times."""

    def __init__(self) -> None:
        self.now = jakarta(0, 10)
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        return self.now

    async def read(self, times: int, timeout: float = 30) -> None:
        """Wait until the clock has been read ``times`` more times."""
        target = self.calls + times
        await until(lambda: self.calls >= target, timeout, f"clock read {times} times")


async def until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 60, what: str = ""
) -> None:
    """Poll ``condition`` (plain or async) until it holds, or fail after ``timeout`` s."""
    await waiting.until(what or repr(condition), condition, timeout)


@dataclass
class NotificationsUnderTest:
    settings: NotificationSettings
    url: str
    producer: AIOKafkaProducer
    events: Collector
    providers: ProviderStandIn
    providers_url: str
    clock: Clock

    def topic(self, event: type[Event]) -> str:
        return self.settings.topic(event.name)

    async def send(self, fact: Event | Registration, ce_id: str | None = None) -> str:
        """Publish ``fact`` as its producer would; a registration's contact goes first, as
        the registry sends it. The ce_id of the (registration) event."""
        if isinstance(fact, Registration):
            await self.send(fact.contact)
            fact = fact.event
        headers = new_envelope(type=fact.ce_type(), source=fact.producers[0]).headers()
        if ce_id:
            headers["ce_id"] = ce_id
        pid: str = getattr(fact, "participant_id")  # noqa: B009
        value = fact.model_dump_json().encode()
        await send(self.producer, self.topic(type(fact)), value, pid.encode(), headers)
        return headers["ce_id"]

    async def control(self, **modes: object) -> None:
        """Channel modes (``whatsapp="400"``) and ``recipients={phone: mode}``; see
        deploy/local/providers.py."""
        await control(self.providers_url, **modes)

    def delivered_to(self, address: str) -> list[dict[str, Any]]:
        plain = address.removeprefix("+")
        return [m for m in self.providers.messages if m["to"].removeprefix("+") == plain]

    def of(self, event: type[Event], pid: str) -> list[Seen]:
        return self.events.matching(
            lambda r: r.topic == self.topic(event) and r.json().get("participant_id") == pid
        )

    async def wait(self, event: type[Event], pid: str, count: int = 1) -> list[Seen]:
        return await self.events.wait_for(
            lambda r: r.topic == self.topic(event) and r.json().get("participant_id") == pid,
            count,
        )


async def control(providers_url: str, **modes: object) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(f"{providers_url}/_control", json=modes)).raise_for_status()


@contextlib.asynccontextmanager
async def stand_in_providers() -> AsyncIterator[tuple[ProviderStandIn, str, int]]:
    """A provider stand-in of one's own: (stand-in, HTTP base URL, SMTP port)."""
    stand_in = ProviderStandIn()
    smtp_port, http_port = free_port(), free_port()
    smtp = stand_in.start_smtp(smtp_port)
    try:
        async with serving(stand_in, http_port) as providers_url:
            yield stand_in, providers_url, smtp_port
    finally:
        smtp.stop()


@dataclass(frozen=True)
class Registration:
    """What the registry publishes for a new participant: their contact (on its own topic)
    and the registration (nothing personal in it)."""

    contact: ParticipantContact
    event: ParticipantRegistered


def registered(pid: str, phone: str | None, email: str | None = None) -> Registration:
    now = datetime.now(UTC)
    return Registration(
        ParticipantContact(
            participant_id=pid,
            display_name="Wati",
            phone=phone or "",
            email=email,
            updated_at=now,
        ),
        ParticipantRegistered.model_validate(
            {
                "participant_id": pid,
                "submission_id": str(uuid.uuid4()),
                "registered_at": now,
                "city": "Jakarta Timur",
                "kecamatan": "Cakung",
                "sector": "kuliner",
                "has_business": True,
                "gender": "P",
                "birth_year": 1990,
            }
        ),
    )


def enrolled(pid: str) -> TrainingEnrolled:
    return TrainingEnrolled(
        participant_id=pid,
        cohort_id=random_id("kelas-"),
        sector="kuliner",
        city="Jakarta Timur",
        session_count=4,
    )


def new_phone() -> str:
    return f"+62812{uuid.uuid4().int % 10**8:08d}"


@pytest_asyncio.fixture(scope="session")
async def notifications(
    servers: Servers, producer: AIOKafkaProducer, log_file: Path
) -> AsyncIterator[NotificationsUnderTest]:
    """On topics of its own: what the other services publish in this session must not add
    messages (or provider calls) that these tests count."""
    clock = Clock()
    async with stand_in_providers() as (stand_in, providers_url, smtp_port):
        settings = notification_settings(servers, providers_url, smtp_port)
        async with serving(create_app(settings, clock), settings.http_port) as url:
            topics = [settings.topic(e.name) for e in PRODUCES]
            topics += [dlq_topic(settings.topic(e.name)) for e in CONSUMES]
            events = await Collector(servers.kafka, topics).start()
            yield NotificationsUnderTest(
                settings, url, producer, events, stand_in, providers_url, clock
            )
            await events.stop()


def notification_settings(
    servers: Servers, providers_url: str, smtp_port: int, **changes: Any
) -> NotificationSettings:
    """A deployment of its own (topics, database, HTTP port) that sends to the stand-in at
    ``providers_url``; quick timeouts and rounds unless ``changes`` say otherwise."""
    fields: dict[str, Any] = {
        **servers.settings_for(
            "notifications", random_id("notif-") + ".", random_id("notifications_")
        ),
        "http_port": free_port(),
        "outbox_relay_interval_s": 0.2,
        "whatsapp_base_url": f"{providers_url}/whatsapp",
        "sms_base_url": f"{providers_url}/sms",
        "smtp_port": smtp_port,
        "provider_timeout_s": 1,
        "provider_attempts": 3,
        "provider_backoff_s": 0.05,
        "contact_wait_s": 3600,
        "dispatch_interval_s": 0.2,
    }
    return NotificationSettings(**{**fields, **changes})


@pytest_asyncio.fixture
async def daytime_and_healthy_providers(
    notifications: NotificationsUnderTest,
) -> AsyncIterator[None]:
    """10:00 in Jakarta and every provider answering, before and after a test."""
    notifications.clock.now = jakarta(0, 10)
    await notifications.control(whatsapp="ok", sms="ok", recipients={})
    yield
    notifications.clock.now = jakarta(0, 10)
    await notifications.control(whatsapp="ok", sms="ok", recipients={})
