"""Marketplace's MongoDB repository: participants' marketplace state, the index that maps a
product or a referral to its participant, and the facts parked until that mapping exists."""

from __future__ import annotations

from collections.abc import Callable

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from services.marketplace.domain import Marketplace
from shared.mongo import Document, Parking, StateDocuments

Session = AsyncClientSession


class MarketplaceStore:
    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self.client = client
        self.db: AsyncDatabase[Document] = client[database]
        self.states = StateDocuments(self.db.participants, Marketplace)
        # Reviews of a product whose certification has not arrived, under "product:<id>".
        self.parking = Parking(client, self.db)

    async def rewrite_parked(
        self, session: Session, keys: list[str], rewrite: Callable[[bytes], bytes]
    ) -> int:
        """Rewrite the values of the records parked under ``keys`` (an erasure blanks what is
        personal in them); how many."""
        docs = await self.db.parked.find(
            {"key": {"$in": keys}}, {"value": 1}, session=session
        ).to_list()
        for doc in docs:
            await self.db.parked.update_one(
                {"_id": doc["_id"]},
                {"$set": {"value": rewrite(bytes(doc["value"]))}},
                session=session,
            )
        return len(docs)

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
