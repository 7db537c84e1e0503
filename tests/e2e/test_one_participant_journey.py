"""One participant carried from ``registration-submitted`` to ``financing-referred`` through
the events of registry, coaching and marketplace (the internal systems played by the test,
each reacting to what the services publish, as the real ones would)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.contracts import (
    CertificationIssued,
    FinancingReferred,
    MentoringAssigned,
    MentoringCompleted,
    MentoringSessionRecorded,
    ParticipantRegistered,
    ProductCertified,
    ProductListed,
    ProductSubmitted,
    TrainingCompleted,
    TrainingEnrolled,
)
from tests import auth_helpers
from tests.coaching.fixtures import CoachingUnderTest, days
from tests.coaching.test_coaching_flow import NOW, assessed, attendance
from tests.conftest import random_id
from tests.marketplace.fixtures import MarketplaceUnderTest, review, sales
from tests.registry.fixtures import Registry

pytestmark = pytest.mark.integration


async def test_from_registration_to_a_bank_dki_referral(
    registry: Registry, coaching: CoachingUnderTest, marketplace: MarketplaceUnderTest
) -> None:
    # P1: the portal submits; the registry registers
    submission = registry.generator.valid(sector="kriya")
    await registry.submit(submission)
    [registered] = await registry.outcomes_for(submission["submission_id"])
    assert registered.topic == registry.registered_topic
    pid = ParticipantRegistered.model_validate_json(registered.value).participant_id

    # P2: coaching enrols; the LMS records attendance and the post-test
    [enrolled] = await coaching.wait(TrainingEnrolled, pid)
    assert enrolled.headers["ce_causationid"] == registered.headers["ce_id"]
    cohort = enrolled.json()["cohort_id"]
    for session_no in range(1, 5):
        await coaching.send(attendance(pid, cohort, session_no, True))
    await coaching.send(assessed(pid, cohort, 88))
    await coaching.wait(TrainingCompleted, pid)

    # P3: the pendamping logs three sessions
    [assigned] = await coaching.wait(MentoringAssigned, pid)
    for _ in range(3):
        await coaching.send(
            MentoringSessionRecorded(
                participant_id=pid,
                mentor_id=assigned.json()["mentor_id"],
                session_at=NOW,
                notes="pemasaran online",
            )
        )
    await coaching.wait(MentoringCompleted, pid)

    # P4: a product, and OSS issues the NIB it needs (kriya)
    product_id = random_id("prod-")
    await coaching.send(
        ProductSubmitted.model_validate(
            {
                "product_id": product_id,
                "participant_id": pid,
                "name": "Tas Anyaman",
                "category": "kriya",
                "production_started": "2023-01",
            }
        )
    )
    await coaching.send(
        CertificationIssued.model_validate(
            {
                "certificate_id": random_id("nib-"),
                "participant_id": pid,
                "product_id": None,
                "kind": "NIB",
                "number": "9120001234567",
                "issued_at": NOW,
                "expires_at": days(3650),
                "issuer": "OSS",
            }
        )
    )
    await coaching.wait(ProductCertified, pid)

    # P5: the curation ladder approves; the marketplace lists the product
    for level in ("pendamping", "kecamatan", "dinas", "curator"):
        await marketplace.send(review(product_id, level, grade="A" if level == "curator" else None))
    [listed] = await marketplace.wait(ProductListed, pid)
    assert "export-candidate" in listed.json()["channels"]

    # P6: three months of QRIS sales; P7: the referral follows from the six stages
    for period in ("2024-02", "2024-03", "2024-04"):
        await marketplace.send(sales(pid, period))
    [referred] = await marketplace.wait(FinancingReferred, pid)
    assert len(referred.json()["stages"]) == 6

    # and the registry's journey shows every stage the participant passed
    deadline = asyncio.get_running_loop().time() + 60
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        while True:
            path = f"{registry.url}/participants/{pid}/journey"
            stages = set((await http.get(path)).json().get("stages", {}))
            if "financing-referred" in stages or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
    assert stages >= {
        "registered",
        "training-enrolled",
        "training-completed",
        "mentoring-assigned",
        "mentoring-completed",
        "product-certified",
        "product-curated",
        "product-listed",
        "sales-reported",
        "financing-referred",
    }
