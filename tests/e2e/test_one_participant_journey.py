"""One participant carried from ``registration-submitted`` to ``financing-referred`` through
the events of registry, coaching and marketplace (the internal systems played by the test,
each reacting to what the services publish, as the real ones would)."""

from __future__ import annotations

import httpx
import pytest

from shared.contracts import (
    FinancingReferred,
    ParticipantRegistered,
    ProductListed,
    TrainingEnrolled,
)
from tests import auth_helpers, waiting
from tests.coaching.fixtures import CoachingUnderTest
from tests.coaching.test_coaching_flow import carry_through_coaching
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

    # P2: coaching enrols (in answer to the registration); P2-P4 as the LMS, the pendamping
    # app and OSS would: training, three mentoring sessions, a product and its NIB
    [enrolled] = await coaching.wait(TrainingEnrolled, pid)
    assert enrolled.headers["ce_causationid"] == registered.headers["ce_id"]
    product_id = await carry_through_coaching(coaching, pid, nib="9120001234567")

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
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:

        async def journey_stages() -> set[str]:
            path = f"{registry.url}/participants/{pid}/journey"
            return set((await http.get(path)).json().get("stages", {}))

        stages = await waiting.until(
            "the journey to reach financing-referred",
            journey_stages,
            done=lambda stages: "financing-referred" in stages,
        )
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
