"""The registry's MongoDB repository: participants, with NIK and KK never stored in clear.

A NIK is kept twice: as an HMAC (keyed hash) for the uniqueness index and look-ups, and
Fernet-encrypted for the rare need of the value itself. A database dump shows neither in clear.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cryptography.fernet import Fernet
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from shared.mongo import Document

T = TypeVar("T")
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

    async def ensure_indexes(self) -> None:
        await self.participants.create_index("nik_hash", unique=True)
        await self.participants.create_index("submission_id", unique=True)

    async def in_transaction(self, work: Callable[[AsyncClientSession], Awaitable[T]]) -> T:
        """Run ``work`` in one majority-committed transaction, retried on transient conflicts."""
        async with self.client.start_session() as session:
            result: T = await session.with_transaction(
                work,
                read_concern=ReadConcern("snapshot"),
                write_concern=WriteConcern("majority"),
            )
            return result

    async def participant_by_nik(self, session: AsyncClientSession, nik: str) -> str | None:
        doc = await self.participants.find_one(
            {"nik_hash": self.vault.lookup_hash(nik)}, {"_id": 1}, session=session
        )
        return None if doc is None else str(doc["_id"])

    async def insert_participant(
        self, session: AsyncClientSession, participant: dict[str, Any], nik: str, kk: str
    ) -> None:
        await self.participants.insert_one(
            {
                **participant,
                "nik_hash": self.vault.lookup_hash(nik),
                "nik_encrypted": self.vault.encrypt(nik),
                "kk_encrypted": self.vault.encrypt(kk),
            },
            session=session,
        )

    async def get_participant(self, participant_id: str) -> Document | None:
        """The participant as other callers may see it: no NIK or KK, not even encrypted."""
        return await self.participants.find_one({"_id": participant_id}, _HIDDEN)

    async def count_participants(self) -> int:
        return await self.participants.count_documents({})
