"""Coaching and the PDP law (UU 27/2022): erasure and withdrawal of consent, on the real
Kafka and mongod; the database is scanned as MongoDB's admin."""

from __future__ import annotations

import uuid

import pytest

from shared.contracts import (
    MentoringAssigned,
    ProductCertified,
    ProductSubmitted,
    TrainingCompleted,
    TrainingEnrolled,
)
from tests.coaching.fixtures import CoachingUnderTest, participant
from tests.coaching.test_coaching_flow import (
    assessed,
    attendance,
    certificate,
    complete_training,
    processed,
)
from tests.conftest import random_id
from tests.personal_scan import confirmations, confirmed, erasure, traces, withdrawal

pytestmark = pytest.mark.integration


def submitted(pid: str, product_id: str, name: str) -> ProductSubmitted:
    return ProductSubmitted.model_validate(
        {"product_id": product_id, "participant_id": pid, "name": name, "category": "fashion",
         "production_started": "2023-06"}
    )  # fmt: skip


async def test_an_erasure_leaves_nothing_personal_is_confirmed_once_and_holds_for_late_facts(
    coaching: CoachingUnderTest,
) -> None:
    db_name = coaching.settings.mongodb_database
    db = coaching.mongo[db_name]
    pid = await coaching.register(kecamatan="Tebet")
    await complete_training(coaching, pid)
    [assigned] = await coaching.wait(MentoringAssigned, pid)
    mentor = assigned.json()["mentor_id"]
    name, nib = random_id("Batik Bu Siti "), random_id("NIB")
    await coaching.send(submitted(pid, random_id("prod-"), name))
    nib_cert = certificate(pid, "NIB", None).model_copy(update={"number": nib})
    await coaching.send(nib_cert)
    await coaching.wait(ProductCertified, pid)
    assert await traces(coaching.mongo, db_name, [name, nib])  # the scan does find them
    load = (await db.mentors.find_one({"_id": mentor}) or {})["active"]

    ce_id = str(uuid.uuid4())
    await coaching.send(erasure(pid), ce_id=ce_id)
    meta = await coaching.send(erasure(pid), ce_id=ce_id)  # a redelivery
    [erased] = await confirmed(coaching.events, pid, "coaching")
    await processed(coaching, meta)
    body = erased.json()
    assert (body["service"], body["categories"]) == ("coaching", ["business-id"])
    assert await traces(coaching.mongo, db_name, [name, nib]) == []
    assert (await db.mentors.find_one({"_id": mentor}) or {})["active"] == load - 1
    state = await db.participants.find_one({"_id": pid})
    assert state is not None and state["enrollment"] and state["training"]["outcome"]

    # Late facts store nothing personal: a product and a certificate after the erasure.
    late_name, late_number = random_id("Kopi Pak Budi "), random_id("NIB")
    await coaching.send(submitted(pid, random_id("prod-"), late_name))
    late_cert = certificate(pid, "NIB", None).model_copy(update={"number": late_number})
    await processed(coaching, await coaching.send(late_cert))
    assert await traces(coaching.mongo, db_name, [name, nib, late_name, late_number]) == []

    # A repeated request changes nothing and is confirmed alike.
    before = await db.participants.find_one({"_id": pid})
    await processed(coaching, await coaching.send(erasure(pid)))
    [_, again] = await confirmed(coaching.events, pid, "coaching", 2)
    assert again.json() == body
    assert await db.participants.find_one({"_id": pid}) == before
    await coaching.events.caught_up()
    assert len(confirmations(coaching.events, pid, "coaching")) == 2  # the redelivery added none


async def test_a_withdrawal_of_consent_stops_enrolment_and_mentoring_whatever_the_order(
    coaching: CoachingUnderTest,
) -> None:
    early = str(uuid.uuid4())  # withdrawn before its registration arrived
    # The two facts travel on different topics, so only a committed withdrawal is "before".
    await processed(coaching, await coaching.send(withdrawal(early)))
    late = await coaching.send(participant(early, "Gambir", random_id("sektor-")))
    pid = await coaching.register(kecamatan="Gambir")
    [enrolled] = await coaching.wait(TrainingEnrolled, pid)
    await coaching.send(withdrawal(pid))
    cohort = enrolled.json()["cohort_id"]
    for n in (1, 2, 3):
        await coaching.send(attendance(pid, cohort, n, True))
    meta = await coaching.send(assessed(pid, cohort, 85))
    await coaching.wait(TrainingCompleted, pid)  # what they did is still decided
    await processed(coaching, meta)
    await processed(coaching, late)
    await coaching.events.caught_up()
    assert coaching.of(TrainingEnrolled, early) == []
    assert coaching.of(MentoringAssigned, pid) == []
    db = coaching.mongo[coaching.settings.mongodb_database]
    for who in (early, pid):
        state = await db.participants.find_one({"_id": who})
        assert state is not None and state["consent_withdrawn_at"] is not None
