"""Notifications' MongoDB: the contact book and the delivery log (one job per message).

A job's ``_id`` is ``<cause event id>:<participant id>``: however often an event is
delivered, it becomes one job, and so one message.

A job being sent is *leased*: ``status`` "sending" with ``lease_owner`` (the instance),
``lease_token`` (the dispatch round) and ``lease_until``. Only the holder of the token may
record the job's outcome or put it back; anyone may take a job whose lease ran out, since
its holder crashed or stalled. Nothing resets "sending" jobs wholesale: another replica's
jobs in flight look exactly like a crashed one's, and only the lease tells them apart.
Lease times are wall-clock times of the instances (which must agree to within a few
seconds, as NTP keeps them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure

from shared.mongo import Document

PENDING, WAITING, SENDING, SENT, FAILED = "pending", "waiting-contact", "sending", "sent", "failed"
CANCELLED = "cancelled"  # consent withdrawn or data erased before it went out
UNSENT = (PENDING, WAITING, SENDING)
# What a job keeps after an erasure: its template, channel, status and times (the delivery
# statistics); not the event it told about, the provider's id of it, nor the problems met.
ERASED_JOB_FIELDS = {"provider_message_id": "", "problems": ""}  # for $unset, and data={}
DUPLICATE_KEY = 11000  # MongoDB's error code
_LEASE_FIELDS = {"lease_owner": "", "lease_token": "", "lease_until": ""}  # for $unset


@dataclass(frozen=True)
class Lease:
    owner: str
    token: str
    until: datetime


def _expired(wall: datetime) -> dict[str, Any]:
    """Jobs being sent by someone whose lease ran out (or who predates leases)."""
    return {"status": SENDING, "lease_until": {"$not": {"$gt": wall}}}


def _held(token: str) -> dict[str, Any]:
    return {"status": SENDING, "lease_token": token}


class NotificationStore:
    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self.client = client
        self.db: AsyncDatabase[Document] = client[database]
        self.jobs = self.db.jobs
        self.contacts = self.db.contacts
        # PDP markers per participant (consent_withdrawn_at, erased_at), kept for good.
        self.participants = self.db.participants

    # The dispatcher's queues: each index holds only the jobs in its state (a partial
    # index), so a job's state change touches the entries of the states it leaves and
    # enters, and the finished jobs (nearly all of them, in time) are in none of them.
    QUEUES: ClassVar[dict[str, tuple[str, str]]] = {
        "due_pending": ("not_before", PENDING),
        "waiting_until": ("wait_until", WAITING),
        "sending_lease": ("lease_until", SENDING),
    }
    # Indexes of earlier versions, over every job whatever its state: dropped.
    _OLD = ("status_1_not_before_1", "status_1_wait_until_1", "status_1_lease_until_1")

    async def ensure_indexes(self) -> None:
        for name, (field, status) in self.QUEUES.items():
            await self.jobs.create_index(
                [(field, ASCENDING)], name=name, partialFilterExpression={"status": status}
            )
        existing = await self.jobs.index_information()
        for old in self._OLD:
            if old in existing:
                with contextlib.suppress(OperationFailure):  # another replica dropped it
                    await self.jobs.drop_index(old)
        await self.jobs.create_index([("participant_id", ASCENDING), ("sent_at", ASCENDING)])

    # ------------------------------------------------------------ PDP: consent, erasure

    async def markers_of(self, participant_ids: Iterable[str]) -> dict[str, Document]:
        cursor = self.participants.find({"_id": {"$in": list(set(participant_ids))}})
        return {str(doc["_id"]): doc async for doc in cursor}

    async def marker(self, session: AsyncClientSession, participant_id: str) -> Document:
        found = await self.participants.find_one({"_id": participant_id}, session=session)
        return found or {}

    async def mark(
        self, session: AsyncClientSession, participant_id: str, fields: dict[str, Any]
    ) -> None:
        await self.participants.update_one(
            {"_id": participant_id}, {"$set": fields}, upsert=True, session=session
        )

    async def cancel_unsent(
        self, session: AsyncClientSession, participant_id: str, at: datetime
    ) -> int:
        """Every message of the participant not sent yet is cancelled, also one being sent
        (its round then finds it no longer held and records nothing)."""
        result = await self.jobs.update_many(
            {"participant_id": participant_id, "status": {"$in": list(UNSENT)}},
            {"$set": {"status": CANCELLED, "cancelled_at": at}, "$unset": _LEASE_FIELDS},
            session=session,
        )
        return result.modified_count

    async def erase(self, session: AsyncClientSession, participant_id: str) -> None:
        """The contact goes, and the delivery log keeps nothing but what was sent how and
        when. The outbox holds none of the participant's published events (a provider's
        message id): a row is deleted when its event is published; one still to be sent is
        deleted when it goes out."""
        await self.contacts.delete_one({"_id": participant_id}, session=session)
        await self.jobs.update_many(
            {"participant_id": participant_id},
            {"$set": {"data": {}}, "$unset": ERASED_JOB_FIELDS},
            session=session,
        )

    async def forget_contacts(self, participant_ids: Iterable[str]) -> int:
        result = await self.contacts.delete_many({"_id": {"$in": list(set(participant_ids))}})
        return result.deleted_count

    async def save_contacts(self, contacts: dict[str, dict[str, Any]]) -> None:
        """Each participant's latest contact. Inserted (a new participant's, nearly always:
        a quarter of an upsert's cost to MongoDB), and only those already there updated."""
        if not contacts:
            return
        try:
            await self.contacts.insert_many(
                [{"_id": pid, **c} for pid, c in contacts.items()], ordered=False
            )
            return
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            known = [error["op"]["_id"] for error in errors]
        await self.contacts.bulk_write(
            [UpdateOne({"_id": pid}, {"$set": contacts[pid]}, upsert=True) for pid in known],
            ordered=False,
        )

    async def contacts_of(self, participant_ids: Iterable[str]) -> dict[str, Document]:
        cursor = self.contacts.find({"_id": {"$in": list(set(participant_ids))}})
        return {str(doc["_id"]): doc async for doc in cursor}

    async def add_jobs(self, jobs: list[dict[str, Any]]) -> int:
        """Insert each job unless its (event, participant) already has one; how many were new."""
        return len(await self.insert_new(jobs))

    async def insert_new(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert each job unless its (event, participant) already has one; the jobs inserted
        (as given: no read back). Inserted, not upserted: a redelivered event's job is refused
        by its ``_id``, and the others go in all the same (unordered)."""
        if not jobs:
            return []
        try:
            await self.jobs.insert_many(jobs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise  # not only duplicates (e.g. a write concern error): not for us to judge
            refused = {int(error["index"]) for error in errors}
            return [job for i, job in enumerate(jobs) if i not in refused]
        return jobs

    async def release_waiting(self, participant_ids: Iterable[str], now: datetime) -> int:
        result = await self.jobs.update_many(
            {"participant_id": {"$in": list(participant_ids)}, "status": WAITING},
            {"$set": {"status": PENDING, "not_before": now}},
        )
        return result.modified_count

    async def claim_expired_waiting(self, now: datetime, lease: Lease) -> list[Document]:
        """Take the jobs that waited for a contact past their time (to fail them)."""
        waited_out = {"status": WAITING, "wait_until": {"$lte": now}}
        cursor = self.jobs.find(waited_out, {"_id": 1})
        return await self._claim([str(doc["_id"]) async for doc in cursor], waited_out, lease)

    async def claim_due(
        self, now: datetime, wall: datetime, lease: Lease, limit: int
    ) -> list[Document]:
        """Take up to ``limit`` jobs to send: first those whose sender's lease ran out, then
        pending ones due by ``now`` (the rules' clock), oldest first. ``wall`` is the real
        time leases are measured in."""
        expired = self.jobs.find(_expired(wall), {"_id": 1}).sort("lease_until", ASCENDING)
        ids = [str(doc["_id"]) async for doc in expired.limit(limit)]
        if len(ids) < limit:
            due = self.jobs.find({"status": PENDING, "not_before": {"$lte": now}}, {"_id": 1})
            due = due.sort("not_before", ASCENDING).limit(limit - len(ids))
            ids += [str(doc["_id"]) async for doc in due]
        claimable = {"$or": [{"status": PENDING, "not_before": {"$lte": now}}, _expired(wall)]}
        return await self._claim(ids, claimable, lease)

    async def _claim(
        self, job_ids: list[str], claimable: dict[str, Any], lease: Lease
    ) -> list[Document]:
        """Lease the jobs that are still ``claimable``, each atomically (the filter is
        checked again as each document is written): a job another dispatcher took first is
        not returned. Oldest first: by due time, then by arrival (a participant's messages
        deferred to one time, e.g. the end of the quiet hours, go out in the order they came;
        read by _id, ties would come in the random order of the ids)."""
        if not job_ids:
            return []
        await self.jobs.update_many(
            {"_id": {"$in": job_ids}, **claimable},
            {
                "$set": {
                    "status": SENDING,
                    "lease_owner": lease.owner,
                    "lease_token": lease.token,
                    "lease_until": lease.until,
                }
            },
        )
        cursor = self.jobs.find({"_id": {"$in": job_ids}, **_held(lease.token)})
        return await cursor.sort([("not_before", ASCENDING), ("created_at", ASCENDING)]).to_list()

    async def held(self, lease: Lease, job_ids: list[str]) -> list[Document]:
        """Those of ``job_ids`` that the round of ``lease`` holds, their lease renewed to it:
        one inserted by an earlier attempt (an outage in between) may carry an older end,
        which another dispatcher would take for a crashed round's."""
        if not job_ids:
            return []
        held = {"_id": {"$in": job_ids}, **_held(lease.token)}
        stale = {**held, "lease_until": {"$lt": lease.until}}  # none, but after an outage
        await self.jobs.update_many(stale, {"$set": {"lease_until": lease.until}})
        return await self.jobs.find(held).to_list()

    async def renew(self, token: str, until: datetime) -> int:
        """Extend a round's lease on the jobs it still holds; how many it holds. Through the
        queue of jobs being sent (no index leads with the status or the token any more: the
        planner would scan every job ever made)."""
        result = await self.jobs.update_many(
            _held(token), {"$set": {"lease_until": until}}, hint="sending_lease"
        )
        return result.matched_count

    async def reschedule(self, token: str, later: dict[str, datetime]) -> None:
        """Deferred jobs back to pending, if this round still holds them."""
        if later:
            await self.jobs.bulk_write(
                [
                    UpdateOne(
                        {"_id": job_id, **_held(token)},
                        {"$set": {"status": PENDING, "not_before": when}, "$unset": _LEASE_FIELDS},
                    )
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

    async def finish(
        self, session: AsyncClientSession, token: str, fields: dict[str, dict[str, Any]]
    ) -> set[str]:
        """Each job's final state, by job id, for the jobs round ``token`` still holds; returns
        those. In the caller's transaction, so a concurrent taker conflicts instead of both
        writing."""
        if len(fields) == 1:  # the common case, one send: one write
            [(job_id, f)] = fields.items()
            result = await self.jobs.update_one(
                {"_id": job_id, **_held(token)},
                {"$set": f, "$unset": _LEASE_FIELDS},
                session=session,
            )
            return {job_id} if result.matched_count else set()
        cursor = self.jobs.find(
            {"_id": {"$in": list(fields)}, **_held(token)}, {"_id": 1}, session=session
        )
        held = {str(doc["_id"]) async for doc in cursor}
        if held:
            await self.jobs.bulk_write(
                [
                    UpdateOne({"_id": job_id}, {"$set": fields[job_id], "$unset": _LEASE_FIELDS})
                    for job_id in held
                ],
                ordered=False,
                session=session,
            )
        return held

    async def log_of(self, participant_id: str) -> list[Document]:
        """The delivery log as anyone may see it: which messages, how, when; no addresses."""
        projection = {"data": 0, "cause": 0, "claim": 0, **dict.fromkeys(_LEASE_FIELDS, 0)}
        cursor = self.jobs.find({"participant_id": participant_id}, projection)
        return await cursor.sort("created_at", ASCENDING).to_list()
