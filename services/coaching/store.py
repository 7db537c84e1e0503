"""Coaching's MongoDB repository: participants' coaching state, cohorts, mentors, and the
certificate index that lets a revocation (which names only a certificate) find its holder."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, InsertOne, ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.coaching import domain
from services.coaching.domain import Coaching, Cohort, Enrollment
from shared.mongo import Document, Parking, StateCache, StateDocuments

Session = AsyncClientSession


class CoachingStore:
    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self.client = client
        self.db: AsyncDatabase[Document] = client[database]
        self.states = StateDocuments(self.db.participants, Coaching)
        # Revocations that came before their certificate, under "certificate:<id>".
        self.parking = Parking(client, self.db)

    async def ensure_indexes(self) -> None:
        await self.db.participants.create_index("next_check_at", sparse=True)
        await self.db.cohorts.create_index([("sector", 1), ("city", 1), ("seq", 1)], unique=True)
        await self.db.mentors.create_index([("kecamatan", 1), ("active", 1)])
        await self.db.mentors.create_index([("city", 1), ("active", 1)])

    async def due_for_check(self, now: datetime, limit: int = 500) -> list[str]:
        cursor = self.db.participants.find({"next_check_at": {"$lte": now}}, {"_id": 1})
        return [str(doc["_id"]) async for doc in cursor.limit(limit)]

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
        self, session: Session, search: Sequence[Mapping[str, str | None]]
    ) -> tuple[str, str] | None:
        """The least-loaded pendamping of the first centres of ``search`` that have one
        (:func:`domain.pendamping_search`), and its centre; its load counted."""
        for query in search:
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


def _cohort(doc: Document) -> Cohort:
    return Cohort(
        cohort_id=doc["_id"],
        sector=doc["sector"],
        city=doc["city"],
        seq=doc["seq"],
        capacity=doc["capacity"],
        session_count=doc["session_count"],
        size=doc["size"],
    )


def _document(cohort: Cohort) -> Document:
    doc = asdict(cohort)
    return {"_id": doc.pop("cohort_id"), **doc}


class Seats:
    """Cohort seats given out in one transaction as the domain seats them
    (:func:`domain.cohort_with_room`): a (sector, city)'s open cohorts are read once, seats
    are taken in memory, and the sizes are written back in one bulk write. Another instance
    seating the same cohort concurrently makes one transaction conflict and decide again."""

    def __init__(
        self, cohorts: AsyncCollection[Document], session: Session, capacity: int, sessions: int
    ) -> None:
        self.cohorts, self.session = cohorts, session
        self.capacity, self.sessions = capacity, sessions
        self._open: dict[tuple[str, str], list[Cohort]] = {}
        self._last_seq: dict[tuple[str, str], int] = {}
        self._taken: dict[str, int] = {}  # existing cohort id -> seats taken here
        self._new: dict[str, Cohort] = {}

    async def take(self, sector: str, city: str) -> Enrollment:
        key = (sector, city)
        if key not in self._open:
            query = {"sector": sector, "city": city, "size": {"$lt": self.capacity}}
            cursor = self.cohorts.find(query, session=self.session).sort("seq", ASCENDING)
            self._open[key] = [_cohort(doc) for doc in await cursor.to_list()]
        open_ = self._open[key]
        cohort = domain.cohort_with_room(open_, self.capacity)
        if cohort is None:
            seq = await self._next_seq(key)
            cohort = domain.new_cohort(sector, city, seq, self.capacity, self.sessions)
            self._new[cohort.cohort_id] = cohort
            open_.append(cohort)
        elif cohort.cohort_id not in self._new:
            self._taken[cohort.cohort_id] = self._taken.get(cohort.cohort_id, 0) + 1
        return domain.take_seat(cohort)

    async def _next_seq(self, key: tuple[str, str]) -> int:
        if key not in self._last_seq:
            last = await self.cohorts.find_one(
                {"sector": key[0], "city": key[1]}, sort=[("seq", DESCENDING)], session=self.session
            )
            self._last_seq[key] = 0 if last is None else int(last["seq"])
        self._last_seq[key] += 1
        return self._last_seq[key]

    async def flush(self) -> None:
        writes: list[InsertOne[Document] | UpdateOne] = [
            UpdateOne({"_id": cohort_id}, {"$inc": {"size": n}})
            for cohort_id, n in self._taken.items()
        ]
        writes += [InsertOne(_document(c)) for c in self._new.values()]  # a race: DuplicateKeyError
        if writes:
            await self.cohorts.bulk_write(writes, ordered=False, session=self.session)
        self._taken.clear()
        self._new.clear()


class Unit:
    """One coaching transaction's working set: participants' states and cohort seats."""

    def __init__(self, store: CoachingStore, session: Session, capacity: int, sessions: int):
        self.states = StateCache(store.states, session)
        self.seats = Seats(store.db.cohorts, session, capacity, sessions)

    async def prefetch(self, participant_ids: Iterable[str]) -> None:
        await self.states.prefetch(participant_ids)

    async def flush(self) -> None:
        await self.states.flush()
        await self.seats.flush()
