"""Notifications' MongoDB: the contact book and the delivery log (one job per message).

A job's ``_id`` is ``<cause event id>:<participant id>``: however often an event is
delivered, it becomes one job, and so one message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
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

    async def save_contact(self, participant_id: str, contact: dict[str, Any]) -> None:
        await self.contacts.update_one({"_id": participant_id}, {"$set": contact}, upsert=True)

    async def contact(self, participant_id: str) -> Document | None:
        return await self.contacts.find_one({"_id": participant_id})

    async def add_job(self, job: dict[str, Any]) -> bool:
        """Insert unless this (event, participant) already has one; True if it is new."""
        result = await self.jobs.update_one({"_id": job["_id"]}, {"$setOnInsert": job}, upsert=True)
        return result.upserted_id is not None

    async def release_waiting(self, participant_id: str, now: datetime) -> int:
        result = await self.jobs.update_many(
            {"participant_id": participant_id, "status": WAITING},
            {"$set": {"status": PENDING, "not_before": now}},
        )
        return result.modified_count

    async def expired_waiting(self, now: datetime) -> list[Document]:
        return await self.jobs.find({"status": WAITING, "wait_until": {"$lte": now}}).to_list()

    async def due(self, now: datetime, limit: int) -> list[Document]:
        cursor = self.jobs.find({"status": PENDING, "not_before": {"$lte": now}})
        return await cursor.sort("not_before", ASCENDING).limit(limit).to_list()

    async def claim(self, job_id: str, from_status: str = PENDING) -> Document | None:
        """Take a job for sending; None if another dispatcher already took it."""
        return await self.jobs.find_one_and_update(
            {"_id": job_id, "status": from_status},
            {"$set": {"status": SENDING}},
            return_document=ReturnDocument.AFTER,
        )

    async def reschedule(self, job_id: str, not_before: datetime) -> None:
        await self.jobs.update_one(
            {"_id": job_id}, {"$set": {"status": PENDING, "not_before": not_before}}
        )

    async def sent_between(self, participant_id: str, start: datetime, end: datetime) -> int:
        return await self.jobs.count_documents(
            {
                "participant_id": participant_id,
                "status": SENT,
                "sent_at": {"$gte": start, "$lt": end},
            }
        )

    async def finish(
        self, session: AsyncClientSession, job_id: str, fields: dict[str, Any]
    ) -> None:
        await self.jobs.update_one({"_id": job_id}, {"$set": fields}, session=session)

    async def log_of(self, participant_id: str) -> list[Document]:
        """The delivery log as anyone may see it: which messages, how, when; no addresses."""
        projection = {"data": 0, "cause": 0}
        cursor = self.jobs.find({"participant_id": participant_id}, projection)
        return await cursor.sort("created_at", ASCENDING).to_list()
