"""The registry's MongoDB repository: participants, with NIK and KK never stored in clear.

A NIK is kept twice: as an HMAC (keyed hash) for the uniqueness index and look-ups, and
Fernet-encrypted for the rare need of the value itself. A database dump shows neither in clear.

Both keys are versioned, as key rings (:func:`parse_key_ring`): ``id:key`` pairs, the current
key first. A participant's document says which keys it was written with:

- ``nik_encrypted``/``kk_encrypted`` are Fernet tokens under the encryption key ``pii_key``;
  reading tries that key, then every key of the ring (``MultiFernet``), so a retired key
  still reads until ``jakpreneur keys rotate`` has re-encrypted under the current one.
- ``nik_hash`` is a list: the NIK's HMAC under *every* key of the hash ring (their ids, in
  ``nik_hash_keys``). A look-up computes the NIK's hash under every key of the ring (one
  HMAC per key, never a scan) and finds a record stored under any of them, so rolling the
  hash key loses no duplicate. Writing under every key, not only the current one, keeps the
  unique index a guard while a roll is under way: two replicas that disagree on which key
  is current still write one common hash for the same NIK, and the second insert fails.
  Documents from before key rings (a plain string ``nik_hash``, no key ids) are read the
  same way: the unique index and ``$in`` treat a string and a list alike.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pymongo import AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.registry import journey
from shared.mongo import Document

_HIDDEN = {"nik_hash": 0, "nik_hash_keys": 0, "nik_encrypted": 0, "kk_encrypted": 0, "pii_key": 0}

# The id of a key given alone (REGISTRY_PII_HASH_KEY, REGISTRY_PII_ENCRYPTION_KEY): a
# one-key ring. Name it so in a ring when it becomes a retired key (``2:<new>,0:<old>``).
SINGLE_KEY_ID = "0"
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")

KeyRing = Sequence[tuple[str, str]]


class KeyRingError(RuntimeError):
    """A key ring that cannot be used. Its text names the setting and the key's id or
    position, never a key; a RuntimeError, so pydantic does not add its input (the keys)."""


def parse_key_ring(text: str, setting: str) -> list[tuple[str, str]]:
    """``id:key,id:key,...`` (the current key first) -> ``[(id, key), ...]``.

    Ids are short names (letters, digits, ``_.-``), unique in the ring; a key is everything
    after its id's first colon (no comma in it). Whitespace around items is ignored.
    """
    ring: list[tuple[str, str]] = []
    for position, item in enumerate(text.split(","), start=1):
        key_id, colon, key = item.strip().partition(":")
        if not colon or not key.strip():
            raise KeyRingError(f"{setting}: item {position} is not id:key")
        if not _KEY_ID.fullmatch(key_id):
            raise KeyRingError(
                f"{setting}: item {position}'s id is not 1-32 letters, digits or _.-"
            )
        if any(key_id == seen for seen, _ in ring):
            raise KeyRingError(f"{setting}: key id {key_id!r} appears twice")
        ring.append((key_id, key.strip()))
    return ring


def _one_key(ring: str | KeyRing) -> KeyRing:
    return [(SINGLE_KEY_ID, ring)] if isinstance(ring, str) else ring


class PiiVault:
    """NIK look-up hashes and NIK/KK encryption, each under a key ring (a bare key: a
    one-key ring with the id :data:`SINGLE_KEY_ID`). Never shows a key: not in a repr,
    not in an error."""

    def __init__(self, hash_keys: str | KeyRing, encryption_keys: str | KeyRing) -> None:
        hashes, ciphers = _one_key(hash_keys), _one_key(encryption_keys)
        if not hashes or not ciphers:
            raise KeyRingError("a PII key ring is empty")
        self._hash_keys = [(key_id, key.encode()) for key_id, key in hashes]
        self._fernets: dict[str, Fernet] = {}
        for key_id, key in ciphers:
            try:
                self._fernets[key_id] = Fernet(key.encode())
            except (ValueError, TypeError):
                raise KeyRingError(
                    f"encryption key {key_id!r} is not a Fernet key (base64url of 32 bytes)"
                ) from None
        self.hash_key_ids = [key_id for key_id, _ in self._hash_keys]
        self.encryption_key_id = ciphers[0][0]
        self._multi = MultiFernet(list(self._fernets.values()))

    def __repr__(self) -> str:
        return f"PiiVault(hash keys {self.hash_key_ids}, encryption keys {list(self._fernets)})"

    def lookup_hash(self, value: str) -> str:
        """The value's hash under the current hash key."""
        return self.lookup_hashes(value)[0]

    def lookup_hashes(self, value: str) -> list[str]:
        """The value's hash under every key of the hash ring, in ring order."""
        data = value.encode()
        return [hmac.new(key, data, hashlib.sha256).hexdigest() for _, key in self._hash_keys]

    def encrypt(self, value: str) -> bytes:
        """Under the current encryption key (:attr:`encryption_key_id`)."""
        return self._fernets[self.encryption_key_id].encrypt(value.encode())

    def decrypt(self, token: bytes, key_id: str | None = None) -> str:
        """Under the key named (one attempt), else under whichever key of the ring opens it.
        ``cryptography.fernet.InvalidToken`` when none does."""
        named = self._fernets.get(key_id) if key_id is not None else None
        if named is not None:
            try:
                return named.decrypt(token).decode()
            except InvalidToken:
                pass  # the id was wrong (or the document older than its id): try them all
        return self._multi.decrypt(token).decode()

    def sealed(self, nik: str, kk: str | None) -> dict[str, Any]:
        """The stored form of a NIK (and KK, where there is one) under the current keys:
        the fields of a participant's document that :meth:`stale` checks."""
        fields: dict[str, Any] = {
            "nik_hash": self.lookup_hashes(nik),
            "nik_hash_keys": list(self.hash_key_ids),
            "nik_encrypted": self.encrypt(nik),
            "pii_key": self.encryption_key_id,
        }
        if kk is not None:
            fields["kk_encrypted"] = self.encrypt(kk)
        return fields

    def stale(self) -> dict[str, Any]:
        """A MongoDB filter: participants whose NIK or KK is stored under other keys than
        this vault's (another current encryption key, or another set of hash keys), or
        from before key ids. Only documents that hold an encrypted NIK are concerned."""
        ids = self.hash_key_ids
        return {
            "nik_encrypted": {"$exists": True},
            "$or": [
                {"pii_key": {"$ne": self.encryption_key_id}},
                {"$nor": [{"nik_hash_keys": {"$size": len(ids), "$all": ids}}]},
            ],
        }


@dataclass
class Rotation:
    """What one ``keys rotate`` did; participant ids only (pseudonymous), never a value."""

    encryption_key: str
    hash_keys: list[str]
    stale_before: int = 0
    rotated: int = 0
    unreadable: list[str] = field(default_factory=list)  # no key of the ring opens them
    conflicts: list[str] = field(default_factory=list)  # their NIK is another's (duplicate)
    changed_meanwhile: int = 0  # changed by someone else while rotating: left as they were

    @property
    def complete(self) -> bool:
        return not (self.unreadable or self.conflicts)

    def summary(self) -> dict[str, Any]:
        return {
            "encryption_key": self.encryption_key,
            "hash_keys": self.hash_keys,
            "stale_before": self.stale_before,
            "rotated": self.rotated,
            "unreadable": self.unreadable,
            "conflicts": self.conflicts,
            "changed_meanwhile": self.changed_meanwhile,
            "complete": self.complete,
        }


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
        # Erasure requests, by participant: when asked, and which services have confirmed.
        # Nothing personal: ids, services and times.
        self.erasures = self.db.erasures

    async def ensure_indexes(self) -> None:
        await self.participants.create_index("nik_hash", unique=True)
        await self.participants.create_index("submission_id", unique=True)
        for name in ("city", "kecamatan", "sector", "has_business", "registered_month"):
            await self.journeys.create_index(f"profile.{name}")
        await self.journeys.create_index("mentor_id", sparse=True)  # a pendamping's funnel
        await self.erasures.create_index([("completed_at", 1), ("requested_at", 1)])

    async def participants_by_hash(
        self, session: AsyncClientSession, nik_hashes: set[str]
    ) -> dict[str, str]:
        """NIK look-up hash (under any key) -> participant id, for those already registered."""
        if not nik_hashes:
            return {}
        cursor = self.participants.find(
            {"nik_hash": {"$in": list(nik_hashes)}}, {"nik_hash": 1}, session=session
        )
        found: dict[str, str] = {}
        async for doc in cursor:
            stored = doc["nik_hash"]  # a list; a string in documents from before key rings
            for nik_hash in [stored] if isinstance(stored, str) else stored:
                if nik_hash in nik_hashes:
                    found[nik_hash] = str(doc["_id"])
        return found

    async def participants_by_nik(
        self, session: AsyncClientSession, niks: set[str]
    ) -> dict[str, str]:
        """The NIK's hash under the *current* key -> participant id, for those already
        registered under any key of the hash ring: one HMAC per key and NIK, one query."""
        current_of: dict[str, str] = {}  # a hash under any key -> the NIK's current one
        for nik in niks:
            hashes = self.vault.lookup_hashes(nik)
            current_of.update((h, hashes[0]) for h in hashes)
        found = await self.participants_by_hash(session, set(current_of))
        return {current_of[h]: participant for h, participant in found.items()}

    async def insert_participants(
        self, session: AsyncClientSession, participants: list[dict[str, Any]]
    ) -> None:
        """Each given with ``nik`` and ``kk`` in clear; stored as hash and ciphertext only."""
        if not participants:
            return
        docs = []
        for p in participants:
            doc = {k: v for k, v in p.items() if k not in ("nik", "kk")}
            doc.update(self.vault.sealed(p["nik"], p["kk"]))
            docs.append(doc)
        await self.participants.insert_many(docs, session=session)

    async def rotate_keys(
        self, batch_size: int = 500, progress: Callable[[int, int], None] | None = None
    ) -> Rotation:
        """Re-encrypt every stored NIK and KK under the current encryption key and re-hash
        every NIK under the hash ring's keys (``jakpreneur keys rotate``).

        Only :meth:`PiiVault.stale` documents are read, in ``_id`` order and in batches; each
        is rewritten by one single-document update, so a crash (even ``kill -9``) leaves
        every document either as it was or rotated, both readable while the old key stays
        in the ring, and a re-run carries on; a second run finds nothing to do. An update
        applies only if the document still holds the ciphertext that was read, so a change
        made meanwhile (an erasure) is never overwritten. ``progress(done, total)``.
        """
        vault = self.vault
        stale = vault.stale()
        rotation = Rotation(vault.encryption_key_id, list(vault.hash_key_ids))
        rotation.stale_before = await self.participants.count_documents(stale)
        fields = {"nik_encrypted": 1, "kk_encrypted": 1, "pii_key": 1}
        done, after = 0, None
        while True:
            query = stale if after is None else {"$and": [stale, {"_id": {"$gt": after}}]}
            docs = await self.participants.find(query, fields).sort("_id", 1).to_list(batch_size)
            if not docs:
                break
            after = docs[-1]["_id"]
            updates, ids = [], []
            for doc in docs:
                try:
                    nik = vault.decrypt(doc["nik_encrypted"], doc.get("pii_key"))
                    kk = doc.get("kk_encrypted")
                    kk = vault.decrypt(kk, doc.get("pii_key")) if kk is not None else None
                except InvalidToken:
                    rotation.unreadable.append(str(doc["_id"]))
                    continue
                sealed = vault.sealed(nik, kk)
                # As read: a document changed meanwhile (an erasure) is left alone.
                kept = ("_id", "nik_encrypted", "kk_encrypted")
                unchanged: dict[str, Any] = {k: doc[k] for k in kept if k in doc}
                updates.append(UpdateOne(unchanged, {"$set": sealed}))
                ids.append(str(doc["_id"]))
            if updates:
                conflicts: list[str] = []
                try:
                    written = await self.participants.bulk_write(updates, ordered=False)
                    matched = written.matched_count
                except BulkWriteError as exc:
                    errors = exc.details.get("writeErrors", [])
                    if any(e.get("code") != 11000 for e in errors):  # not a duplicate hash
                        raise
                    conflicts = [ids[e["index"]] for e in errors]
                    matched = exc.details.get("nMatched", 0)
                rotation.conflicts += conflicts
                rotation.rotated += matched
                rotation.changed_meanwhile += len(updates) - matched - len(conflicts)
            done += len(docs)
            if progress is not None:
                progress(done, rotation.stale_before)
        return rotation

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
        """Registration opens the journey (:func:`journey.opening`), inside the
        registration's transaction: inserted (a quarter of an upsert's cost to MongoDB), but
        for a journey already there (one read finds those), which is updated."""
        if not journeys:
            return
        ids = [j["_id"] for j in journeys]
        cursor = self.journeys.find({"_id": {"$in": ids}}, {"_id": 1}, session=session)
        there = {doc["_id"] async for doc in cursor}
        new = [
            {"_id": j["_id"], "profile": j["profile"], "stages": {"registered": j["registered_at"]}}
            for j in journeys
            if j["_id"] not in there
        ]
        if new:
            await self.journeys.insert_many(new, session=session)
        if there:
            await self.journeys.bulk_write(
                [
                    UpdateOne(
                        {"_id": j["_id"]},
                        {
                            "$set": {"profile": j["profile"]},
                            "$min": {"stages.registered": j["registered_at"]},
                        },
                    )
                    for j in journeys
                    if j["_id"] in there
                ],
                session=session,
            )

    async def backfill_journeys(self) -> None:
        """Open the journey of every participant registered before the journey model existed
        (or whose opening was lost), as registration opens it (:func:`journey.opening_stages`,
        on the server): idempotent, run at start-up."""
        await self.participants.aggregate(
            [
                *journey.opening_stages(),
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

    async def update_journeys(self, updates: Mapping[str, dict[str, Any]]) -> None:
        """Apply one merged update per participant (:func:`journey.merged_updates`): a
        batch's whole journey work in one bulk write, unordered."""
        if updates:
            await self.journeys.bulk_write(
                [UpdateOne({"_id": pid}, update, upsert=True) for pid, update in updates.items()],
                ordered=False,
            )

    async def journey(self, participant_id: str) -> Document | None:
        return await self.journeys.find_one({"_id": participant_id})

    async def scope_of(self, participant_id: str) -> Document | None:
        """The participant's city, kecamatan and pendamping, as the journey knows them."""
        return await self.journeys.find_one(
            {"_id": participant_id}, {"profile.city": 1, "profile.kecamatan": 1, "mentor_id": 1}
        )

    async def journeys_matching(
        self, match: dict[str, Any], fields: Mapping[str, int]
    ) -> list[Document]:
        return await self.journeys.find(match, dict(fields)).to_list()

    async def count_participants(self) -> int:
        return await self.participants.count_documents({})

    # ------------------------------------------------------------- erasure (UU 27/2022)

    async def knows(self, participant_id: str) -> bool:
        """Whether the participant was ever registered here (their journey outlives an
        erasure, so a repeated request is still answered)."""
        found = await self.journeys.find_one({"_id": participant_id}, {"_id": 1})
        return (
            found is not None
            or await self.participants.find_one({"_id": participant_id}, {"_id": 1}) is not None
        )

    async def erase_participant(
        self, session: AsyncClientSession, participant_id: str
    ) -> list[str]:
        """Erase what identifies the participant; returns the categories erased.

        The participant's document goes as a whole: name, display name, birth date,
        contact, kelurahan, business name, NIB, gender, the submission id (which the portal
        can map back to a person) and the NIK and KK, whose ciphertexts *and keyed hash* are
        deleted with it. So the stored data no longer hold anything that leads back to the
        person, not even by trying NIKs against the hash key; the price is that the
        registry cannot tell that a later registration with that NIK is the same person:
        it registers them afresh, under a new participant id (see README, "Erasure").
        A rejection that named the participant as a NIK's owner no longer does. What the
        funnel needs stays in the journey, which holds no identifying field (city,
        kecamatan, sector, whether a business, registration month, stage times)."""
        doc = await self.participants.find_one_and_delete({"_id": participant_id}, session=session)
        await self.rejections.update_many(
            {"existing_participant_id": participant_id},
            {"$set": {"existing_participant_id": None, "existing_participant_erased": True}},
            session=session,
        )
        if doc is None:
            return []
        held = {
            "identity-number": ("nik_hash", "nik_encrypted", "kk_encrypted"),
            "name": ("full_name", "display_name"),
            "birth-date": ("birth_date",),
            "contact": ("contact",),
            "address": ("kelurahan",),
            "business-id": ("business_name", "nib"),
        }
        return [cat for cat, names in held.items() if any(doc.get(n) for n in names)]

    async def record_erasure_request(
        self, session: AsyncClientSession | None, participant_id: str, request_id: str, at: datetime
    ) -> Document:
        """Track a request (each request's id once); the tracking document as it is now."""
        doc = await self.erasures.find_one_and_update(
            {"_id": participant_id},
            {
                "$min": {"requested_at": at},
                "$max": {"last_requested_at": at},
                "$addToSet": {"requests": request_id},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        assert doc is not None  # upserted
        return doc

    async def record_confirmation(
        self,
        session: AsyncClientSession | None,
        participant_id: str,
        service: str,
        at: datetime,
        expected: Sequence[str],
    ) -> Document:
        """A service's ``participant-data-erased`` (its first time counts); the request is
        complete once every ``expected`` service has confirmed."""
        doc = await self.erasures.find_one_and_update(
            {"_id": participant_id},
            {"$min": {f"confirmed.{service}": at}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        assert doc is not None  # upserted
        confirmed = doc.get("confirmed", {})
        if "completed_at" not in doc and all(s in confirmed for s in expected):
            doc["completed_at"] = max(confirmed[s] for s in expected)
            await self.erasures.update_one(
                {"_id": participant_id, "completed_at": {"$exists": False}},
                {"$set": {"completed_at": doc["completed_at"]}},
                session=session,
            )
        return doc

    async def erasure(self, participant_id: str) -> Document | None:
        return await self.erasures.find_one({"_id": participant_id})

    async def overdue_erasures(self, cutoff: datetime, expected: Sequence[str]) -> list[Document]:
        """Requests made before ``cutoff`` that some ``expected`` service has not confirmed."""
        docs = await self.erasures.find(
            {"completed_at": {"$exists": False}, "requested_at": {"$lt": cutoff}},
            {"confirmed": 1, "requested_at": 1, "overdue_flagged_at": 1},
        ).to_list()
        return [d for d in docs if not all(s in d.get("confirmed", {}) for s in expected)]

    async def flag_overdue(self, participant_ids: list[str], at: datetime) -> None:
        if participant_ids:
            await self.erasures.update_many(
                {"_id": {"$in": participant_ids}, "overdue_flagged_at": {"$exists": False}},
                {"$set": {"overdue_flagged_at": at}},
            )

    async def withdraw_consent(
        self, session: AsyncClientSession, participant_id: str, at: datetime
    ) -> None:
        """Consent withdrawn: marked (the first time counts); nothing if already erased."""
        await self.participants.update_one(
            {"_id": participant_id}, {"$min": {"consent_withdrawn_at": at}}, session=session
        )
