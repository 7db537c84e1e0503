"""The marketplace and the PDP law (UU 27/2022): erasure and withdrawal of consent, on the
real Kafka and mongod; the database is scanned as MongoDB's admin."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from shared.contracts import (
    ConsentWithdrawn,
    FinancialReportRecorded,
    FinancingReferred,
    MentoringCompleted,
    ProductCurationRejected,
    ProductListed,
    TrainingCompleted,
)
from tests.coaching.fixtures import participant
from tests.conftest import Servers, random_id
from tests.marketplace.fixtures import MarketplaceUnderTest, certified, processed, review, sales
from tests.marketplace.test_marketplace_flow import approve_all
from tests.personal_scan import confirmations, confirmed, erasure, traces

pytestmark = pytest.mark.integration


@pytest.fixture
async def mongo(servers: Servers) -> Any:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_uri)
    yield client
    await client.close()


async def test_an_erasure_blanks_notes_everywhere_once_and_for_late_facts(
    marketplace: MarketplaceUnderTest, mongo: Any
) -> None:
    m, pid = marketplace, str(uuid.uuid4())
    db_name = m.settings.mongodb_database
    rejected_prod, parked_prod = random_id("prod-"), random_id("prod-")
    notes = [random_id("Bu Siti Rahayu "), random_id("Toko Berkah ")]
    await m.send(participant(pid, "Gambir", "kriya"))
    await m.send(certified(pid, rejected_prod))
    rejecting = await m.send(review(rejected_prod, "pendamping", decision="reject", notes=notes[0]))
    await m.wait(ProductCurationRejected, pid)
    await processed(m, rejecting)  # committed after its rejection was published
    await m.send(certified(pid, parked_prod))
    # before its level's turn: parked, notes and all, until the pendamping's review comes
    await processed(m, await m.send(review(parked_prod, "kecamatan", notes=notes[1])))
    # in the state and the parking; the published rejection's outbox row is already gone
    found = await traces(mongo, db_name, notes)
    assert sorted({trace.split("/")[0] for trace in found}) == ["parked", "participants"], found

    ce_id = str(uuid.uuid4())
    await m.send(erasure(pid), ce_id=ce_id)
    meta = await m.send(erasure(pid), ce_id=ce_id)  # a redelivery
    [erased] = await confirmed(m.events, pid, "marketplace")
    await processed(m, meta)
    body = erased.json()
    assert (body["service"], body["categories"]) == ("marketplace", ["business-id"])
    assert await traces(mongo, db_name, notes) == []

    # Late facts keep nothing personal either; the parked review still applies, notes blank.
    late = random_id("Pak Budi ")
    await m.send(review(parked_prod, "pendamping", notes=late))
    await m.send(review(parked_prod, "dinas", notes=late))
    await m.send(review(parked_prod, "curator", grade="B", notes=late))
    await m.wait(ProductListed, pid)
    await processed(m, await m.send(sales(pid, "2024-01")))
    await m.wait(FinancialReportRecorded, pid)  # the ledger (statistics) still counts
    assert await traces(mongo, db_name, [*notes, late]) == []

    # A repeated request changes nothing and is confirmed alike.
    state = mongo[db_name].participants
    before = await state.find_one({"_id": pid})
    await processed(m, await m.send(erasure(pid)))
    [_, again] = await confirmed(m.events, pid, "marketplace", 2)
    assert again.json() == body
    assert await state.find_one({"_id": pid}) == before
    await m.events.caught_up()
    assert len(confirmations(m.events, pid, "marketplace")) == 2  # the redelivery added none


async def test_a_withdrawal_of_consent_stops_the_referral(
    marketplace: MarketplaceUnderTest, mongo: Any
) -> None:
    m, pid, prod = marketplace, str(uuid.uuid4()), random_id("prod-")
    await processed(m, await m.send(ConsentWithdrawn(
        participant_id=pid, requested_by="participant", withdrawn_at=datetime.now(UTC)
    )))  # fmt: skip
    await m.send(participant(pid, "Gambir", "kriya"))
    await m.send(TrainingCompleted(participant_id=pid, cohort_id="c", score=80, attendance_rate=1))
    await m.send(MentoringCompleted(participant_id=pid, mentor_id="g-1", sessions=3))
    await m.send(certified(pid, prod))
    await approve_all(m, prod, "B")
    await m.wait(ProductListed, pid)  # what they did is still recorded
    metas = [await m.send(sales(pid, period)) for period in ("2024-01", "2024-02", "2024-03")]
    await processed(m, metas[-1])
    await m.events.caught_up()
    assert m.of(FinancingReferred, pid) == []
    doc = await mongo[m.settings.mongodb_database].participants.find_one({"_id": pid})
    assert doc is not None and doc["consent_withdrawn_at"] and doc["referral"] is None
