"""Looking for a participant's personal data in a service's database, as MongoDB's admin:
every document of every collection, as text (bytes decoded, so a parked or outbox record's
value is searched too)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pymongo import AsyncMongoClient


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
