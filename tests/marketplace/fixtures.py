from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest_asyncio
from aiokafka import AIOKafkaProducer

from deploy.local.launcher import free_port
from services.marketplace.app import MarketplaceSettings, create_app
from services.marketplace.handlers import CONSUMES, PRODUCES
from shared.contracts import (
    CertificateRef,
    CurationReviewed,
    Event,
    ProductCertificatesChanged,
    ProductCertified,
    SalesReported,
)
from shared.envelope import new_envelope
from shared.kafka import KafkaAccess, dlq_topic
from tests.conftest import Servers, random_id
from tests.kafka_helpers import Collector, Seen, send, serving, wait_committed

NOW = datetime.now(UTC)


@dataclass
class MarketplaceUnderTest:
    settings: MarketplaceSettings
    url: str
    producer: AIOKafkaProducer
    events: Collector

    def topic(self, event: type[Event]) -> str:
        return self.settings.topic(event.name)

    async def send(self, fact: Event, ce_id: str | None = None) -> Any:
        headers = new_envelope(type=fact.ce_type(), source=fact.producers[0]).headers()
        if ce_id:
            headers["ce_id"] = ce_id
        key = (
            getattr(fact, "participant_id", None)
            or getattr(fact, "product_id", None)
            or getattr(fact, "referral_id", "none")
        )
        value = fact.model_dump_json().encode()
        return await send(self.producer, self.topic(type(fact)), value, key.encode(), headers)

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


async def processed(m: MarketplaceUnderTest, meta: Any) -> None:
    """Wait until the marketplace has committed past the record ``meta`` describes."""
    s = m.settings
    await wait_committed(
        KafkaAccess.of(s), s.consumer_group, meta.topic, meta.partition, meta.offset
    )


def certified(
    pid: str, product_id: str, category: str = "kriya", kinds: tuple[str, ...] = ("NIB",)
) -> ProductCertified:
    """As coaching says it: the product certified, ``kinds`` valid (revision 1)."""
    return ProductCertified(
        product_id=product_id,
        participant_id=pid,
        category=category,
        certificates=[
            CertificateRef(certificate_id=random_id(f"{k}-"), kind=k, number=f"{k}-1")
            for k in kinds
        ],
        valid_until=None,
        valid_kinds=sorted(kinds),
        validity_revision=1,
    )


def valid_kinds(
    pid: str, product_id: str, revision: int, kinds: tuple[str, ...], category: str = "kriya"
) -> ProductCertificatesChanged:
    """As coaching says it: ``kinds`` are valid for the product now (``revision``)."""
    return ProductCertificatesChanged(
        product_id=product_id,
        participant_id=pid,
        category=category,
        valid_kinds=sorted(kinds),
        validity_revision=revision,
    )


def review(
    product_id: str,
    level: str,
    decision: str = "approve",
    grade: str | None = None,
    notes: str = "",
) -> CurationReviewed:
    return CurationReviewed.model_validate(
        {
            "product_id": product_id,
            "level": level,
            "decision": decision,
            "grade": grade,
            "reviewer_id": f"{level}-1",
            "notes": notes,
            "reviewed_at": NOW,
        }
    )


def sales(pid: str, period: str, revenue: int = 2_500_000, ref: str | None = None) -> SalesReported:
    return SalesReported.model_validate(
        {
            "participant_id": pid,
            "period": period,
            "revenue_idr": revenue,
            "transactions": 40,
            "channel": "qris",
            "source_ref": ref or str(uuid.uuid4()),
        }
    )


@contextlib.asynccontextmanager
async def running_marketplace(
    servers: Servers, producer: AIOKafkaProducer, topic_prefix: str, **changes: Any
) -> AsyncIterator[MarketplaceUnderTest]:
    """A marketplace in this process on the real servers; ``changes`` to its settings."""
    settings = MarketplaceSettings(
        **{
            **servers.settings_for("marketplace", topic_prefix, random_id("marketplace_")),
            "http_port": free_port(),
            "outbox_relay_interval_s": 0.2,
            **changes,
        }
    )
    async with serving(create_app(settings), settings.http_port) as url:
        topics = [settings.topic(e.name) for e in PRODUCES]
        topics += [dlq_topic(settings.topic(e.name)) for e in CONSUMES]
        events = await Collector(servers.kafka, topics).start()
        try:
            yield MarketplaceUnderTest(settings, url, producer, events)
        finally:
            await events.stop()


@pytest_asyncio.fixture(scope="session")
async def marketplace(
    servers: Servers, producer: AIOKafkaProducer, topic_prefix: str
) -> AsyncIterator[MarketplaceUnderTest]:
    async with running_marketplace(servers, producer, topic_prefix) as m:
        yield m
