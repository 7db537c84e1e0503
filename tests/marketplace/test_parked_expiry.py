"""A review that waits for its level's turn does not wait for ever: after the parked TTL it
goes to the DLQ as ``parked-expired``, and an operator's replay applies it once the ladder
has reached it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from shared.contracts import CurationReviewed, ProductCurated, ProductListed
from tests.conftest import Servers, random_id
from tests.marketplace.fixtures import (
    MarketplaceUnderTest,
    certified,
    review,
    running_marketplace,
)
from tools.cli import replay

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def impatient(
    servers: Servers, producer: AIOKafkaProducer
) -> AsyncIterator[MarketplaceUnderTest]:
    prefix = random_id("parked-") + "."
    async with running_marketplace(
        servers, producer, prefix, parked_ttl_s=1.0, parked_check_interval_s=0.2
    ) as m:
        yield m


async def test_a_review_waiting_too_long_expires_to_the_dlq_and_replays(
    impatient: MarketplaceUnderTest, servers: Servers
) -> None:
    m = impatient
    pid, prod = str(uuid.uuid4()), random_id("prod-")
    await m.send(certified(pid, prod))
    await m.send(review(prod, "curator", grade="A"))  # before pendamping's turn
    dead = await m.dead(prod.encode())
    assert dead.headers["dlq_error_type"] == "parked-expired"
    assert f"curation:{prod}:pendamping" in dead.headers["dlq_error_message"]
    assert dead.headers["dlq_failing_service"] == "marketplace"

    for level in ("pendamping", "kecamatan", "dinas"):
        await m.send(review(prod, level))
    record = {
        "topic": dead.topic,
        "partition": dead.partition,
        "offset": dead.offset,
        "key": dead.key,
        "value": dead.value,
        "headers": dead.headers,
    }
    await replay(servers.admin, record, "test-operator")  # it writes a service's topic
    [curated] = await m.wait(ProductCurated, pid)
    assert curated.json()["grade"] == "A"
    await m.wait(ProductListed, pid)


async def test_a_parked_review_refused_when_its_product_comes_goes_to_the_dlq_with_its_code(
    impatient: MarketplaceUnderTest,
) -> None:
    """Parked before its product's certification, refused once it comes (a curator's
    approval without a grade): dead-lettered with its own code, through the parking, so a
    crash between the taking transaction and the DLQ cannot lose it."""
    m = impatient
    pid, prod = str(uuid.uuid4()), random_id("prod-")
    await m.send(review(prod, "curator"))  # no grade; its product is not known yet
    await m.send(certified(pid, prod))
    dead = await m.dead(prod.encode())
    assert dead.headers["dlq_error_type"] == "grade-required"
    assert dead.headers["dlq_original_topic"] == m.topic(CurationReviewed)
