"""Marketplace's MongoDB repository: participants' marketplace state, the index that maps a
product or a referral to its participant, and the facts parked until that mapping exists."""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from services.marketplace.domain import Marketplace
from shared.kafka import Record
from shared.mongo import Document, StateDocuments

Session = AsyncClientSession


class MarketplaceStore:
    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self.client = client
        self.db: AsyncDatabase[Document] = client[database]
        self.states = StateDocuments(self.db.participants, Marketplace)

    async def ensure_indexes(self) -> None:
        await self.db.parked.create_index([("key", 1), ("parked_at", 1)])

    async def index(self, session: Session, kind: str, entity_id: str, participant_id: str) -> None:
        await self.db.entity_index.update_one(
            {"_id": f"{kind}:{entity_id}"},
            {"$set": {"participant_id": participant_id}},
            upsert=True,
            session=session,
        )

    async def holder(self, session: Session, kind: str, entity_id: str) -> str | None:
        doc = await self.db.entity_index.find_one({"_id": f"{kind}:{entity_id}"}, session=session)
        return None if doc is None else str(doc["participant_id"])

    async def park(self, session: Session, key: str, record: Record) -> None:
        """Keep a fact that names an entity not known yet (e.g. a review of a product
        whose certification has not arrived); :meth:`take_parked` returns it then."""
        await self.db.parked.insert_one(
            {
                "key": key,
                "parked_at": datetime.now(UTC),
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "record_key": record.key,
                "value": record.value,
                "headers": dict(record.headers),
            },
            session=session,
        )

    async def take_parked(self, session: Session, key: str) -> list[Record]:
        cursor = self.db.parked.find({"key": key}, session=session).sort("parked_at", 1)
        docs = await cursor.to_list()
        if docs:
            await self.db.parked.delete_many({"key": key}, session=session)
        return [
            Record(
                d["topic"],
                d["partition"],
                d["offset"],
                d["record_key"],
                bytes(d["value"]),
                d["headers"],
            )
            for d in docs
        ]
