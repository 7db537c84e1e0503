"""Coaching's MongoDB repository: participants' coaching state, cohorts, mentors, and the
certificate index that lets a revocation (which names only a certificate) find its holder."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from services.coaching.domain import Coaching, Enrollment
from shared.mongo import Document, StateDocuments

Session = AsyncClientSession


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class CoachingStore:
    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self.client = client
        self.db: AsyncDatabase[Document] = client[database]
        self.states = StateDocuments(self.db.participants, Coaching)

    async def ensure_indexes(self) -> None:
        await self.db.participants.create_index("next_check_at", sparse=True)
        await self.db.cohorts.create_index([("sector", 1), ("city", 1), ("seq", 1)], unique=True)
        await self.db.mentors.create_index([("kecamatan", 1), ("active", 1)])
        await self.db.mentors.create_index([("city", 1), ("active", 1)])

    async def due_for_check(self, now: datetime, limit: int = 500) -> list[str]:
        cursor = self.db.participants.find({"next_check_at": {"$lte": now}}, {"_id": 1})
        return [str(doc["_id"]) async for doc in cursor.limit(limit)]

    # ---------------------------------------------------------------------------- cohorts

    async def enroll(
        self, session: Session, sector: str, city: str, capacity: int, session_count: int
    ) -> Enrollment:
        """A seat in the oldest open cohort for (sector, city); a new cohort when all are full."""
        cohort = await self.db.cohorts.find_one_and_update(
            {"sector": sector, "city": city, "size": {"$lt": capacity}},
            {"$inc": {"size": 1}},
            sort=[("seq", ASCENDING)],
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        if cohort is None:
            seq = (
                await self.db.cohorts.count_documents(
                    {"sector": sector, "city": city}, session=session
                )
                + 1
            )
            cohort = {
                "_id": f"{_slug(city)}-{sector}-{seq:04d}",
                "sector": sector,
                "city": city,
                "seq": seq,
                "capacity": capacity,
                "session_count": session_count,
                "size": 1,
            }
            await self.db.cohorts.insert_one(cohort, session=session)  # a race: DuplicateKeyError
        return Enrollment(
            cohort_id=cohort["_id"],
            session_count=cohort["session_count"],
            sector=sector,
            city=city,
        )

    # ---------------------------------------------------------------------------- mentors

    async def load_mentors(self, centres: list[dict[str, Any]]) -> int:
        """Upsert the mentor roster from data; keeps each mentor's current load."""
        count = 0
        for centre in centres:
            for mentor_id in centre["mentors"]:
                await self.db.mentors.update_one(
                    {"_id": mentor_id},
                    {
                        "$set": {
                            "centre": centre["centre"],
                            "city": centre["city"],
                            "kecamatan": centre.get("kecamatan"),
                        },
                        "$setOnInsert": {"active": 0},
                    },
                    upsert=True,
                )
                count += 1
        return count

    async def assign_mentor(
        self, session: Session, kecamatan: str, city: str
    ) -> tuple[str, str] | None:
        """The least-loaded pendamping of the kecamatan centre; else of the city centre; else
        of any centre in the city."""
        queries = ({"kecamatan": kecamatan, "city": city}, {"kecamatan": None, "city": city},
                   {"city": city})  # fmt: skip
        for query in queries:
            mentor = await self.db.mentors.find_one_and_update(
                query,
                {"$inc": {"active": 1}},
                sort=[("active", ASCENDING), ("_id", ASCENDING)],
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            if mentor is not None:
                return str(mentor["_id"]), str(mentor["centre"])
        return None

    async def release_mentor(self, session: Session, mentor_id: str) -> None:
        await self.db.mentors.update_one(
            {"_id": mentor_id}, {"$inc": {"active": -1}}, session=session
        )

    # ---------------------------------------------------------------------- certificates

    async def index_certificate(
        self, session: Session, certificate_id: str, participant_id: str
    ) -> None:
        await self.db.certificate_index.update_one(
            {"_id": certificate_id},
            {"$set": {"participant_id": participant_id}},
            upsert=True,
            session=session,
        )

    async def holder_of(self, session: Session, certificate_id: str) -> str | None:
        doc = await self.db.certificate_index.find_one({"_id": certificate_id}, session=session)
        return None if doc is None else str(doc["participant_id"])

    async def park_revocation(self, session: Session, certificate_id: str, reason: str) -> None:
        """A revocation that came before its certificate waits here for it."""
        await self.db.parked_revocations.update_one(
            {"_id": certificate_id}, {"$set": {"reason": reason}}, upsert=True, session=session
        )

    async def take_parked_revocation(self, session: Session, certificate_id: str) -> bool:
        result = await self.db.parked_revocations.delete_one(
            {"_id": certificate_id}, session=session
        )
        return result.deleted_count > 0
