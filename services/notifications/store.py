"""Notifications' MongoDB: the contact book and the delivery log (one job per message).

A job's ``_id`` is ``<cause event id>:<participant id>``: however often an event is
delivered, it becomes one job, and so one message.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import Document

PENDING, WAITING, SENDING, SENT, FAILED = "pending", "waiting-contact", "sending", "sent", "failed"


class NotificationStore:
    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self.client = client
        self.db: AsyncDatabase[Document] = client[database]
        self.jobs = self.db.jobs
        self.contacts = self.db.contacts

    async def ensure_indexes(self) -> None:
        await self.jobs.create_index([("status", ASCENDING), ("not_before", ASCENDING)])
        await self.jobs.create_index([("participant_id", ASCENDING), ("sent_at", ASCENDING)])
        await self.jobs.create_index([("status", ASCENDING), ("wait_until", ASCENDING)])

    async def recover_interrupted(self) -> int:
        """Jobs a crash left mid-send go out again (providers get the same idempotency key)."""
        result = await self.jobs.update_many({"status": SENDING}, {"$set": {"status": PENDING}})
        return result.modified_count

    async def save_contacts(self, contacts: dict[str, dict[str, Any]]) -> None:
        if contacts:
            await self.contacts.bulk_write(
                [UpdateOne({"_id": pid}, {"$set": c}, upsert=True) for pid, c in contacts.items()],
                ordered=False,
            )

    async def contacts_of(self, participant_ids: Iterable[str]) -> dict[str, Document]:
        cursor = self.contacts.find({"_id": {"$in": list(set(participant_ids))}})
        return {str(doc["_id"]): doc async for doc in cursor}

    async def add_jobs(self, jobs: list[dict[str, Any]]) -> int:
        """Insert each job unless its (event, participant) already has one; how many were new."""
        if not jobs:
            return 0
        result = await self.jobs.bulk_write(
            [UpdateOne({"_id": job["_id"]}, {"$setOnInsert": job}, upsert=True) for job in jobs],
            ordered=False,
        )
        return result.upserted_count

    async def release_waiting(self, participant_ids: Iterable[str], now: datetime) -> int:
        result = await self.jobs.update_many(
            {"participant_id": {"$in": list(participant_ids)}, "status": WAITING},
            {"$set": {"status": PENDING, "not_before": now}},
        )
        return result.modified_count

    async def expired_waiting(self, now: datetime) -> list[str]:
        cursor = self.jobs.find({"status": WAITING, "wait_until": {"$lte": now}}, {"_id": 1})
        return [str(doc["_id"]) async for doc in cursor]

    async def due(self, now: datetime, limit: int) -> list[str]:
        cursor = self.jobs.find({"status": PENDING, "not_before": {"$lte": now}}, {"_id": 1})
        return [str(doc["_id"]) async for doc in cursor.sort("not_before", ASCENDING).limit(limit)]

    async def claim(self, job_ids: list[str], from_status: str = PENDING) -> list[Document]:
        """Take jobs for sending, atomically each: those another dispatcher took first are not
        returned. Oldest first."""
        if not job_ids:
            return []
        token = uuid.uuid4().hex
        await self.jobs.update_many(
            {"_id": {"$in": job_ids}, "status": from_status},
            {"$set": {"status": SENDING, "claim": token}},
        )
        cursor = self.jobs.find({"_id": {"$in": job_ids}, "claim": token})
        return await cursor.sort("not_before", ASCENDING).to_list()

    async def reschedule(self, later: dict[str, datetime]) -> None:
        if later:
            await self.jobs.bulk_write(
                [
                    UpdateOne({"_id": job_id}, {"$set": {"status": PENDING, "not_before": when}})
                    for job_id, when in later.items()
                ],
                ordered=False,
            )

    async def sent_between(
        self, participant_ids: Iterable[str], start: datetime, end: datetime
    ) -> dict[str, int]:
        """Messages sent to each participant in [start, end)."""
        cursor = await self.jobs.aggregate(
            [
                {
                    "$match": {
                        "participant_id": {"$in": list(set(participant_ids))},
                        "status": SENT,
                        "sent_at": {"$gte": start, "$lt": end},
                    }
                },
                {"$group": {"_id": "$participant_id", "count": {"$sum": 1}}},
            ]
        )
        return {str(doc["_id"]): int(doc["count"]) async for doc in cursor}

    async def finish(self, session: AsyncClientSession, fields: dict[str, dict[str, Any]]) -> None:
        """Each job's final state, by job id."""
        if fields:
            await self.jobs.bulk_write(
                [UpdateOne({"_id": job_id}, {"$set": f}) for job_id, f in fields.items()],
                ordered=False,
                session=session,
            )

    async def log_of(self, participant_id: str) -> list[Document]:
        """The delivery log as anyone may see it: which messages, how, when; no addresses."""
        projection = {"data": 0, "cause": 0}
        cursor = self.jobs.find({"participant_id": participant_id}, projection)
        return await cursor.sort("created_at", ASCENDING).to_list()
