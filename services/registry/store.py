"""The registry's MongoDB repository: participants, with NIK and KK never stored in clear.

A NIK is kept twice: as an HMAC (keyed hash) for the uniqueness index and look-ups, and
Fernet-encrypted for the rare need of the value itself. A database dump shows neither in clear.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import Document

_HIDDEN = {"nik_hash": 0, "nik_encrypted": 0, "kk_encrypted": 0}


class PiiVault:
    def __init__(self, hash_key: str, encryption_key: str) -> None:
        self._hash_key = hash_key.encode()
        self._fernet = Fernet(encryption_key.encode())

    def lookup_hash(self, value: str) -> str:
        return hmac.new(self._hash_key, value.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, value: str) -> bytes:
        return self._fernet.encrypt(value.encode())

    def decrypt(self, token: bytes) -> str:
        return self._fernet.decrypt(token).decode()


class RegistryStore:
    def __init__(self, client: AsyncMongoClient[Document], database: str, vault: PiiVault):
        self.client = client
        self.db: AsyncDatabase[Document] = client[database]
        self.vault = vault
        self.participants = self.db.participants
        self.journeys = self.db.journeys
        # The outcome of each rejected submission, for ops: an already-registered one names
        # the NIK's owner here, never in the event the submitter's system reads.
        self.rejections = self.db.rejections

    async def ensure_indexes(self) -> None:
        await self.participants.create_index("nik_hash", unique=True)
        await self.participants.create_index("submission_id", unique=True)
        for name in ("city", "kecamatan", "sector", "has_business", "registered_month"):
            await self.journeys.create_index(f"profile.{name}")
        await self.journeys.create_index("mentor_id", sparse=True)  # a pendamping's funnel

    async def participants_by_hash(
        self, session: AsyncClientSession, nik_hashes: set[str]
    ) -> dict[str, str]:
        """NIK look-up hash -> participant id, for those already registered."""
        if not nik_hashes:
            return {}
        cursor = self.participants.find(
            {"nik_hash": {"$in": list(nik_hashes)}}, {"nik_hash": 1}, session=session
        )
        return {doc["nik_hash"]: str(doc["_id"]) async for doc in cursor}

    async def insert_participants(
        self, session: AsyncClientSession, participants: list[dict[str, Any]]
    ) -> None:
        """Each given with ``nik`` and ``kk`` in clear; stored as hash and ciphertext only."""
        if not participants:
            return
        docs = []
        for p in participants:
            doc = {k: v for k, v in p.items() if k not in ("nik", "kk")}
            doc["nik_hash"] = self.vault.lookup_hash(p["nik"])
            doc["nik_encrypted"] = self.vault.encrypt(p["nik"])
            doc["kk_encrypted"] = self.vault.encrypt(p["kk"])
            docs.append(doc)
        await self.participants.insert_many(docs, session=session)

    async def get_participant(self, participant_id: str) -> Document | None:
        """The participant as other callers may see it: no NIK or KK, not even encrypted."""
        return await self.participants.find_one({"_id": participant_id}, _HIDDEN)

    async def record_rejections(
        self, session: AsyncClientSession, rejections: list[dict[str, Any]]
    ) -> None:
        """Each ``{"_id": submission_id, ...}`` once (a submission is decided once)."""
        if rejections:
            await self.rejections.insert_many(rejections, session=session)

    async def submission(self, submission_id: str) -> Document | None:
        """A submission's outcome: the participant it registered, or why it was rejected."""
        registered = await self.participants.find_one(
            {"submission_id": submission_id}, {"registered_at": 1}
        )
        if registered is not None:
            return {
                "submission_id": submission_id,
                "outcome": "registered",
                "participant_id": registered["_id"],
                "registered_at": registered["registered_at"],
            }
        rejected = await self.rejections.find_one({"_id": submission_id})
        if rejected is None:
            return None
        return {"submission_id": rejected.pop("_id"), "outcome": "rejected", **rejected}

    # ----------------------------------------------------------------- the journey model

    async def start_journeys(
        self, session: AsyncClientSession, journeys: list[dict[str, Any]]
    ) -> None:
        """Registration opens the journey (inside the registration's transaction)."""
        if journeys:
            await self.journeys.bulk_write(
                [
                    UpdateOne(
                        {"_id": j["_id"]},
                        {
                            "$set": {"profile": j["profile"]},
                            "$min": {"stages.registered": j["registered_at"]},
                        },
                        upsert=True,
                    )
                    for j in journeys
                ],
                session=session,
            )

    async def backfill_journeys(self) -> None:
        """Open the journey of every participant registered before the journey model existed
        (or whose opening was lost): idempotent, run at start-up."""
        await self.participants.aggregate(
            [
                {
                    "$project": {
                        "profile": {
                            "city": "$city",
                            "kecamatan": "$kecamatan",
                            "sector": "$sector",
                            "has_business": "$has_business",
                            "registered_month": {
                                "$dateToString": {
                                    "date": "$registered_at",
                                    "format": "%Y-%m",
                                    "timezone": "Asia/Jakarta",
                                }
                            },
                        },
                        "stages.registered": "$registered_at",
                    }
                },
                {
                    "$merge": {
                        "into": "journeys",
                        "on": "_id",
                        "whenNotMatched": "insert",
                        "whenMatched": [
                            {
                                "$set": {
                                    "profile": "$$new.profile",
                                    "stages.registered": "$$new.stages.registered",
                                }
                            }
                        ],
                    }
                },
            ]
        )

    async def record_stages(
        self, reached: list[tuple[str, str, datetime, str | None, str | None]]
    ) -> None:
        """(participant, stage, when, sales month, pendamping): first time wins, so replays
        change nothing; the pendamping, named by the mentoring events, scopes their reads."""
        if not reached:
            return
        updates = []
        for participant_id, stage, at, month, mentor in reached:
            update: dict[str, Any] = {"$min": {f"stages.{stage}": at}}
            if month:
                update["$addToSet"] = {"sales_months": month}
            if mentor:
                update["$set"] = {"mentor_id": mentor}
            updates.append(UpdateOne({"_id": participant_id}, update, upsert=True))
        await self.journeys.bulk_write(updates, ordered=True)

    async def journey(self, participant_id: str) -> Document | None:
        return await self.journeys.find_one({"_id": participant_id})

    async def scope_of(self, participant_id: str) -> Document | None:
        """The participant's city, kecamatan and pendamping, as the journey knows them."""
        return await self.journeys.find_one(
            {"_id": participant_id}, {"profile.city": 1, "profile.kecamatan": 1, "mentor_id": 1}
        )

    async def journeys_matching(self, match: dict[str, Any]) -> list[Document]:
        return await self.journeys.find(match, {"stages": 1}).to_list()

    async def count_participants(self) -> int:
        return await self.participants.count_documents({})
