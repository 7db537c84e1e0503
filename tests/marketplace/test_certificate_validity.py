"""One owner for certificate validity, on the real Kafka broker and the real mongod:
coaching and the marketplace run together on one topic prefix, the certificates go to
coaching only (as the issuers send them), and the marketplace facilitates export only on
what coaching says is valid."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.contracts import (
    CertificationRevoked,
    ExportFacilitated,
    ProductCertificatesChanged,
    ProductCertificationLapsed,
    ProductCertified,
    ProductListed,
)
from tests.coaching.fixtures import CoachingUnderTest, days
from tests.coaching.test_coaching_flow import certificate, product
from tests.conftest import random_id
from tests.kafka_helpers import Seen
from tests.marketplace.fixtures import MarketplaceUnderTest, processed, sales
from tests.marketplace.test_marketplace_flow import NOW, approve_all, recent_periods

pytestmark = pytest.mark.integration


async def coaching_says(
    c: CoachingUnderTest, pid: str, kinds: list[str], after: Seen | None = None
) -> Seen:
    """Coaching's event that says ``kinds`` are what is valid for the participant's
    product (a certification, a lapse or a change of the valid kinds), later than
    ``after`` (a higher revision)."""
    newer_than = 0 if after is None else after.json()["validity_revision"]
    topics = {c.topic(e) for e in (ProductCertified, ProductCertificatesChanged)}
    topics.add(c.topic(ProductCertificationLapsed))

    def says(r: Seen) -> bool:
        body: dict[str, Any] = r.json()
        return (
            r.topic in topics
            and body["participant_id"] == pid
            and body["valid_kinds"] == kinds
            and body["validity_revision"] > newer_than
        )

    [record] = await c.events.wait_for(says)
    return record


async def sales_in_3_of_the_last_6_months(m: MarketplaceUnderTest, pid: str) -> None:
    for period in recent_periods(3):
        meta = await m.send(sales(pid, period))
    await processed(m, meta)


async def test_a_revoked_hki_merek_prevents_export(
    coaching: CoachingUnderTest, marketplace: MarketplaceUnderTest
) -> None:
    pid, prod = str(uuid.uuid4()), random_id("prod-")
    await coaching.send(product(pid, prod, "kriya"))
    await coaching.send(certificate(pid, "NIB", None))
    hki = certificate(pid, "HKI_MEREK", None)
    await coaching.send(hki)
    both = await coaching_says(coaching, pid, ["HKI_MEREK", "NIB"])
    await coaching.send(
        CertificationRevoked(
            certificate_id=hki.certificate_id, reason="sengketa merek", revoked_at=NOW
        )
    )
    revoked = await coaching_says(coaching, pid, ["NIB"], after=both)
    assert revoked.topic == coaching.topic(ProductCertificatesChanged)  # still certified
    await processed(marketplace, revoked)  # the marketplace has taken coaching's word

    await approve_all(marketplace, prod, "A")
    await marketplace.wait(ProductListed, pid)  # listed, grade A
    await sales_in_3_of_the_last_6_months(marketplace, pid)
    await marketplace.events.caught_up()
    assert marketplace.of(ExportFacilitated, pid) == []  # its HKI_MEREK is revoked

    await coaching.send(certificate(pid, "HKI_MEREK", None))  # a new registration of the mark
    [exported] = await marketplace.wait(ExportFacilitated, pid)
    assert "HKI_MEREK valid" in {r["message"] for r in exported.json()["reasons"]}


async def test_an_expired_halal_prevents_export(
    coaching: CoachingUnderTest, marketplace: MarketplaceUnderTest
) -> None:
    """Food needs HALAL (and HKI_MEREK) to go international. The HALAL expires seconds
    after the product is certified; coaching's periodic check says so (a lapse: HALAL is in
    food's requirement set too), and grade-A reviews and steady sales after it give neither
    a listing nor an export, until a renewed HALAL."""
    pid, prod = str(uuid.uuid4()), random_id("prod-")
    await coaching.send(product(pid, prod, "makanan-minuman"))
    for kind, of_product in (("NIB", None), ("PIRT", prod), ("HKI_MEREK", None)):
        await coaching.send(certificate(pid, kind, of_product))
    await coaching.send(certificate(pid, "HALAL", prod, expires=days(4 / 86400)))
    certified = await coaching_says(coaching, pid, ["HALAL", "HKI_MEREK", "NIB", "PIRT"])
    assert certified.topic == coaching.topic(ProductCertified)
    expired = await coaching_says(coaching, pid, ["HKI_MEREK", "NIB", "PIRT"], after=certified)
    assert expired.topic == coaching.topic(ProductCertificationLapsed)
    await processed(marketplace, expired)

    await approve_all(marketplace, prod, "A")
    await sales_in_3_of_the_last_6_months(marketplace, pid)
    await marketplace.events.caught_up()
    assert marketplace.of(ExportFacilitated, pid) == []
    assert marketplace.of(ProductListed, pid) == []

    await coaching.send(certificate(pid, "HALAL", prod, expires=days(365)))  # renewed
    [exported] = await marketplace.wait(ExportFacilitated, pid)
    assert "HKI_MEREK and HALAL valid" in {r["message"] for r in exported.json()["reasons"]}
    assert len(marketplace.of(ProductListed, pid)) == 1
