"""Feeding the registry's journey as the other services would, at a business time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import httpx

from shared.contracts import Event, ParticipantRegistered
from shared.envelope import new_envelope
from tests import auth_helpers
from tests.kafka_helpers import send
from tests.registry.fixtures import Registry
from tools.registrations import headers_for

T = TypeVar("T")


async def register(registry: Registry, at: datetime | None = None, **fields: Any) -> str:
    """A valid submission, made at business time ``at``; the participant id it got."""
    data = registry.generator.valid(**fields)
    headers = headers_for(data["submission_id"])
    if at is not None:
        headers["ce_businesstime"] = at.isoformat()
    await registry.submit(data, headers)
    [answer] = await registry.outcomes_for(data["submission_id"])
    assert answer.topic == registry.registered_topic
    return ParticipantRegistered.model_validate_json(answer.value).participant_id


async def publish(
    registry: Registry,
    event: Event,
    at: datetime | None,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """``event`` as its producer publishes it (its principal and ``ce_source``), at business
    time ``at``; ``headers`` replaces the envelope's (a redelivery repeats them). Returns
    the record's metadata and the headers sent."""
    if headers is None:
        headers = new_envelope(
            type=event.ce_type(),
            source=event.producers[0],
            subject=getattr(event, "participant_id", None),
            business_time=at,
        ).headers()
    pid = key or getattr(event, "participant_id")  # noqa: B009
    topic = registry.settings.topic(event.name)
    meta = await send(
        registry.producer, topic, event.model_dump_json().encode(), pid.encode(), headers
    )
    return meta, headers


async def until(what: str, probe: Callable[[], Awaitable[T | None]], timeout: float = 60) -> T:
    """Poll ``probe`` until it returns something (not None), or fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        await asyncio.sleep(0.1)


async def get(registry: Registry, path: str, **params: str) -> Any:
    async with httpx.AsyncClient(headers=auth_helpers.ops(), timeout=30) as http:
        answer = await http.get(f"{registry.url}{path}", params=params)
        answer.raise_for_status()
        return answer.json()


def rows(funnel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["stage"]: row for row in funnel["stages"]}
