"""Looking for a participant's personal data in a service's database, as MongoDB's admin:
every document of every collection, as text (bytes decoded, so a parked or outbox record's
value is searched too); and the requests and confirmations the services' PDP tests share."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient

from shared.contracts import ConsentWithdrawn, ParticipantDataErased, ParticipantErasureRequested
from tests.kafka_helpers import Collector, Seen


def _text(value: Any) -> str:
    def plain(v: Any) -> str:
        return bytes(v).decode("utf-8", "replace") if isinstance(v, bytes) else str(v)

    return json.dumps(value, default=plain, ensure_ascii=False)


async def traces(
    mongo: AsyncMongoClient[dict[str, Any]], database: str, needles: Iterable[str]
) -> list[str]:
    """``collection/_id: needle`` for every document of ``database`` that holds a needle."""
    wanted = [n for n in needles if n]
    db, found = mongo[database], []
    for name in await db.list_collection_names():
        async for doc in db[name].find():
            text = _text(doc)
            found += [f"{name}/{doc['_id']}: {n}" for n in wanted if n in text]
    return found


def erasure(pid: str) -> ParticipantErasureRequested:
    return ParticipantErasureRequested(
        participant_id=pid, requested_by="participant", reason="tidak ikut lagi",
        requested_at=datetime.now(UTC),
    )  # fmt: skip


def withdrawal(pid: str) -> ConsentWithdrawn:
    return ConsentWithdrawn(
        participant_id=pid, requested_by="participant", withdrawn_at=datetime.now(UTC)
    )


def _confirmation(record: Seen, pid: str, service: str) -> bool:
    """``service``'s confirmation for ``pid`` (the session's services answer on one topic)."""
    body = record.json()
    return bool(
        record.topic.endswith(ParticipantDataErased.name)
        and body.get("participant_id") == pid
        and body.get("service") == service
    )


async def confirmed(events: Collector, pid: str, service: str, count: int = 1) -> list[Seen]:
    """Wait for ``count`` of ``service``'s confirmations of erasing ``pid``."""
    return await events.wait_for(lambda r: _confirmation(r, pid, service), count)


def confirmations(events: Collector, pid: str, service: str) -> list[Seen]:
    return events.matching(lambda r: _confirmation(r, pid, service))
