"""Coaching on the real Kafka broker and the real mongod."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shared.contracts import (
    CertificationExpiring,
    CertificationIssued,
    CertificationRevoked,
    Event,
    MentoringAssigned,
    MentoringCompleted,
    MentoringSessionRecorded,
    ProductCertificatesChanged,
    ProductCertificationLapsed,
    ProductCertified,
    ProductSubmitted,
    TrainingAssessed,
    TrainingAttendanceRecorded,
    TrainingCompleted,
    TrainingEnrolled,
    TrainingNotCompleted,
)
from shared.kafka import KafkaAccess
from tests import auth_helpers
from tests.coaching.fixtures import CoachingUnderTest, days, participant
from tests.conftest import random_id
from tests.kafka_helpers import send, wait_committed

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


def attendance(pid: str, cohort: str, session_no: int, present: bool) -> Event:
    return TrainingAttendanceRecorded(
        participant_id=pid, cohort_id=cohort, session_no=session_no, present=present,
        recorded_at=NOW, trainer_id="trainer-1",
    )  # fmt: skip


def assessed(pid: str, cohort: str, score: int) -> Event:
    return TrainingAssessed(participant_id=pid, cohort_id=cohort, score=score, assessed_at=NOW)


def product(pid: str, product_id: str, category: str = "makanan-minuman") -> Event:
    return ProductSubmitted.model_validate(
        {"product_id": product_id, "participant_id": pid, "name": "Keripik Tempe",
         "category": category, "production_started": "2023-06"}
    )  # fmt: skip


def certificate(
    pid: str, kind: str, product_id: str | None, expires: datetime | None = None, cid: str = ""
) -> CertificationIssued:
    return CertificationIssued(
        certificate_id=cid or random_id(f"{kind.lower()}-"), participant_id=pid,
        product_id=product_id, kind=kind, number=f"{kind}-{uuid.uuid4().hex[:8]}",  # type: ignore[arg-type]
        issued_at=NOW, expires_at=expires if expires else days(365), issuer="test",
    )  # fmt: skip


async def processed(c: CoachingUnderTest, meta: Any) -> None:
    """Wait until coaching has committed past the record ``meta`` describes."""
    settings = c.settings
    await wait_committed(
        KafkaAccess.of(settings), settings.consumer_group, meta.topic, meta.partition,
        meta.offset,
    )  # fmt: skip


async def complete_training(c: CoachingUnderTest, pid: str) -> str:
    [enrolled] = await c.wait(TrainingEnrolled, pid)
    cohort = enrolled.json()["cohort_id"]
    for n in (1, 2, 3):
        await c.send(attendance(pid, cohort, n, True))
    await c.send(assessed(pid, cohort, 85))
    await c.wait(TrainingCompleted, pid)
    return str(cohort)


async def carry_through_coaching(c: CoachingUnderTest, pid: str, nib: str) -> str:
    """P2-P4 for a registered participant: training completed, three mentoring sessions, a
    kriya product and the NIB (``nib``) it needs, until it is certified; its product id."""
    await complete_training(c, pid)
    [assigned] = await c.wait(MentoringAssigned, pid)
    for _ in range(3):
        await c.send(
            MentoringSessionRecorded(
                participant_id=pid,
                mentor_id=assigned.json()["mentor_id"],
                session_at=NOW,
                notes="pemasaran online",
            )
        )
    await c.wait(MentoringCompleted, pid)
    product_id = random_id("prod-")
    await c.send(
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
    await c.send(
        CertificationIssued.model_validate(
            {
                "certificate_id": random_id("nib-"),
                "participant_id": pid,
                "product_id": None,
                "kind": "NIB",
                "number": nib,
                "issued_at": NOW,
                "expires_at": days(3650),
                "issuer": "OSS",
            }
        )
    )
    await c.wait(ProductCertified, pid)
    return product_id


async def test_registered_participants_fill_cohorts_of_their_sector_and_city(
    coaching: CoachingUnderTest,
) -> None:
    sector = random_id("sektor-")
    pids = [await coaching.register(sector=sector) for _ in range(4)]
    enrolled = [(await coaching.wait(TrainingEnrolled, pid))[0].json() for pid in pids]
    cohorts = [e["cohort_id"] for e in enrolled]
    assert sorted(Counter(cohorts).values()) == [1, 3]  # capacity 3: a full cohort opens another
    db = coaching.mongo[coaching.settings.mongodb_database]
    stored = await db.cohorts.find({"sector": sector}).sort("seq", 1).to_list()
    assert [(c["_id"], c["seq"], c["size"]) for c in stored] == [
        (cohort, seq, count)
        for seq, (cohort, count) in enumerate(
            sorted(Counter(cohorts).items(), key=lambda i: -i[1]), 1
        )
    ]
    assert all(e["sector"] == sector and e["session_count"] == 4 for e in enrolled)
    record = (await coaching.wait(TrainingEnrolled, pids[0]))[0]
    assert record.key == pids[0].encode()
    assert record.headers["ce_type"] == "jakpreneur.training-enrolled.v1"
    assert record.headers["ce_source"] == "coaching" and record.headers["ce_subject"] == pids[0]


async def test_training_completed_then_a_pendamping_from_the_kecamatan(
    coaching: CoachingUnderTest,
) -> None:
    pid = await coaching.register(kecamatan="Gambir")
    await complete_training(coaching, pid)
    [done] = coaching.of(TrainingCompleted, pid)
    assert done.json()["attendance_rate"] == 0.75 and done.json()["score"] == 85
    [assigned] = await coaching.wait(MentoringAssigned, pid)
    assert assigned.json()["mentor_id"] == "g-1"
    assert assigned.json()["centre"] == "PLUT Gambir"
    assert assigned.headers["ce_causationid"] == done.headers["ce_causationid"]


async def test_training_not_completed_names_every_failed_rule(coaching: CoachingUnderTest) -> None:
    pid = await coaching.register()
    [enrolled] = await coaching.wait(TrainingEnrolled, pid)
    cohort = enrolled.json()["cohort_id"]
    await coaching.send(assessed(pid, cohort, 55))
    for n, present in enumerate([True, False, True, False], start=1):
        await coaching.send(attendance(pid, cohort, n, present))
    [failed] = await coaching.wait(TrainingNotCompleted, pid)
    body = failed.json()
    assert [r["code"] for r in body["reasons"]] == ["attendance-below-75", "score-below-70"]
    assert body["attendance_rate"] == 0.5 and body["score"] == 55
    assert coaching.of(TrainingCompleted, pid) == [] and coaching.of(MentoringAssigned, pid) == []


async def test_attendance_for_someone_not_in_the_cohort_goes_to_the_dlq(
    coaching: CoachingUnderTest,
) -> None:
    pid = await coaching.register()
    await coaching.wait(TrainingEnrolled, pid)
    meta = await coaching.send(attendance(pid, "some-other-cohort", 1, True))
    dead = await coaching.dead(pid.encode())
    assert dead.headers["dlq_error_type"] == "not-in-cohort"
    assert dead.headers["dlq_original_topic"] == coaching.topic(TrainingAttendanceRecorded)
    assert dead.headers["dlq_original_offset"] == str(meta.offset)
    assert dead.headers["dlq_failing_service"] == "coaching"


async def test_an_invalid_fact_goes_to_the_dlq_with_its_fields(coaching: CoachingUnderTest) -> None:
    key = uuid.uuid4().hex.encode()
    headers = {
        "ce_specversion": "1.0", "ce_id": str(uuid.uuid4()), "ce_source": "lms",
        "ce_type": TrainingAssessed.ce_type(), "ce_time": NOW.isoformat(),
    }  # fmt: skip
    value = b'{"participant_id": "p", "cohort_id": "c", "score": 140, "assessed_at": "x"}'
    await send(coaching.producer, coaching.topic(TrainingAssessed), value, key, headers)
    dead = await coaching.dead(key)
    assert dead.headers["dlq_error_type"] == "invalid-payload"
    assert "score" in dead.headers["dlq_error_message"]
    assert "assessed_at" in dead.headers["dlq_error_message"]


async def test_pendamping_load_is_balanced_and_a_kecamatan_without_one_uses_the_city(
    coaching: CoachingUnderTest,
) -> None:
    tebet = [await coaching.register(kecamatan="Tebet") for _ in range(2)]
    elsewhere = await coaching.register(kecamatan="Cilandak")
    for pid in tebet:
        await complete_training(coaching, pid)
        await coaching.wait(MentoringAssigned, pid)
    mentors = {(await coaching.wait(MentoringAssigned, p))[0].json()["mentor_id"] for p in tebet}
    assert mentors == {"t-1", "t-2"}
    await complete_training(coaching, elsewhere)
    [assigned] = await coaching.wait(MentoringAssigned, elsewhere)
    assert (assigned.json()["mentor_id"], assigned.json()["centre"]) == (
        "kota-1",
        "PLUT Kota Jaksel",
    )


async def test_three_sessions_complete_mentoring_and_a_stranger_is_refused(
    coaching: CoachingUnderTest,
) -> None:
    pid = await coaching.register(kecamatan="Gambir")
    await complete_training(coaching, pid)
    [assigned] = await coaching.wait(MentoringAssigned, pid)
    mentor = assigned.json()["mentor_id"]

    def session(mentor_id: str) -> Event:
        return MentoringSessionRecorded(
            participant_id=pid, mentor_id=mentor_id, session_at=NOW, notes="pembukuan"
        )

    await coaching.send(session("impostor"))
    assert (await coaching.dead(pid.encode())).headers["dlq_error_type"] == "wrong-mentor"
    for _ in range(3):
        await coaching.send(session(mentor))
    [completed] = await coaching.wait(MentoringCompleted, pid)
    assert completed.json() | {"participant_id": pid} == {
        "participant_id": pid, "mentor_id": mentor, "sessions": 3,
    }  # fmt: skip


async def test_every_order_of_a_products_facts_certifies_it_once(
    coaching: CoachingUnderTest,
) -> None:
    """participant-registered, product-submitted and three certificates, in all 120 orders."""
    runs = []
    for order in itertools.permutations(range(5)):
        pid, prod = str(uuid.uuid4()), random_id("prod-")
        halal_expiry = days(100)
        facts: list[Event] = [
            participant(pid, "Gambir", random_id("sektor-")),
            product(pid, prod),
            certificate(pid, "NIB", None, days(700)),
            certificate(pid, "PIRT", prod, days(300)),
            certificate(pid, "HALAL", prod, halal_expiry),
        ]
        runs.append((pid, prod, halal_expiry, [facts[i] for i in order]))
    for step in range(5):  # interleave participants; each one's facts stay in its order
        await asyncio.gather(*(coaching.send(facts[step]) for _, _, _, facts in runs))

    for pid, prod, halal_expiry, _ in runs:
        [certified] = await coaching.wait(ProductCertified, pid)
        body = certified.json()
        assert body["product_id"] == prod and body["category"] == "makanan-minuman"
        assert sorted(c["kind"] for c in body["certificates"]) == ["HALAL", "NIB", "PIRT"]
        assert datetime.fromisoformat(body["valid_until"]) == halal_expiry
    await coaching.events.caught_up()
    assert all(len(coaching.of(ProductCertified, pid)) == 1 for pid, *_ in runs)


async def test_revocations_lapse_and_a_revocation_before_its_certificate_is_kept(
    coaching: CoachingUnderTest,
) -> None:
    pid = await coaching.register()
    prod = random_id("prod-")
    await coaching.send(product(pid, prod, "kosmetik"))
    nib = certificate(pid, "NIB", None)
    bpom = certificate(pid, "BPOM_NOTIFIKASI", prod)
    # the revocation of the BPOM certificate is applied before its issuance arrives
    revoked = await coaching.send(
        CertificationRevoked(certificate_id=bpom.certificate_id, reason="recall", revoked_at=NOW)
    )
    await processed(coaching, revoked)
    await coaching.send(nib)
    await processed(coaching, await coaching.send(bpom))
    await coaching.events.caught_up()
    assert coaching.of(ProductCertified, pid) == []  # the revoked one does not count

    await coaching.send(certificate(pid, "BPOM_NOTIFIKASI", prod))
    await coaching.wait(ProductCertified, pid)
    await coaching.send(
        CertificationRevoked(certificate_id=nib.certificate_id, reason="closed", revoked_at=NOW)
    )
    [lapsed] = await coaching.wait(ProductCertificationLapsed, pid)
    assert lapsed.json()["product_id"] == prod
    assert "NIB" in lapsed.json()["reasons"][0]["message"]


async def test_expiry_notices_once_and_an_expired_certificate_lapses_the_product(
    coaching: CoachingUnderTest,
) -> None:
    pid = await coaching.register()
    prod = random_id("prod-")
    await coaching.send(product(pid, prod, "fashion"))
    soon = datetime.now(UTC).replace(microsecond=0) + (days(0) - days(0))
    expiring = certificate(pid, "NIB", None, expires=soon + (days(3 / 86400) - days(0)))
    await coaching.send(expiring)
    await coaching.wait(ProductCertified, pid)
    [notice] = await coaching.wait(CertificationExpiring, pid)
    assert notice.json()["certificate_id"] == expiring.certificate_id
    [lapsed] = await coaching.wait(ProductCertificationLapsed, pid)  # the periodic check
    assert lapsed.json()["product_id"] == prod
    await coaching.events.caught_up()
    assert len(coaching.of(CertificationExpiring, pid)) == 1


async def test_coaching_says_which_certificates_are_valid_as_they_come_go_and_expire(
    coaching: CoachingUnderTest,
) -> None:
    """The one owner of validity: from the certification on, each change of the kinds valid
    for a product (an HKI_MEREK issued, expired, issued again, revoked) is published once,
    with a revision one higher; the certification itself carries the kinds of then."""
    pid, prod = str(uuid.uuid4()), random_id("prod-")
    await coaching.send(product(pid, prod, "fashion"))
    await coaching.send(certificate(pid, "NIB", None))
    [certified] = await coaching.wait(ProductCertified, pid)
    assert (certified.json()["valid_kinds"], certified.json()["validity_revision"]) == (
        ["NIB"],
        1,
    )
    await coaching.send(certificate(pid, "HKI_MEREK", None, expires=days(3 / 86400)))
    await coaching.wait(ProductCertificatesChanged, pid, 2)  # valid, then expired (the check)
    renewed = certificate(pid, "HKI_MEREK", prod)
    await coaching.send(renewed)
    await coaching.wait(ProductCertificatesChanged, pid, 3)
    await coaching.send(
        CertificationRevoked(certificate_id=renewed.certificate_id, reason="batal", revoked_at=NOW)
    )
    changes = await coaching.wait(ProductCertificatesChanged, pid, 4)
    await coaching.events.caught_up()
    said = [(c.json()["valid_kinds"], c.json()["validity_revision"]) for c in changes]
    assert said == [
        (["HKI_MEREK", "NIB"], 2),
        (["NIB"], 3),  # expired
        (["HKI_MEREK", "NIB"], 4),
        (["NIB"], 5),  # revoked
    ]
    assert len(coaching.of(ProductCertificatesChanged, pid)) == 4
    assert coaching.of(ProductCertificationLapsed, pid) == []  # fashion needs only the NIB
    assert changes[0].key == pid.encode() and changes[0].json()["category"] == "fashion"


async def test_a_redelivered_fact_is_applied_once(coaching: CoachingUnderTest) -> None:
    pid = str(uuid.uuid4())
    fact = participant(pid, "Gambir", random_id("sektor-"))
    ce_id = str(uuid.uuid4())
    metas = [await coaching.send(fact, ce_id=ce_id) for _ in range(3)]
    for meta in metas:
        await processed(coaching, meta)
    await coaching.events.caught_up()
    assert len(coaching.of(TrainingEnrolled, pid)) == 1


async def test_the_coaching_view_over_http(coaching: CoachingUnderTest) -> None:
    pid = await coaching.register(kecamatan="Gambir")
    cohort = await complete_training(coaching, pid)
    prod = random_id("prod-")
    await coaching.send(product(pid, prod, "jasa"))
    await coaching.send(certificate(pid, "NIB", None))
    await coaching.wait(ProductCertified, pid)
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        view = (await http.get(f"{coaching.url}/participants/{pid}/coaching")).json()
        missing = await http.get(f"{coaching.url}/participants/{uuid.uuid4()}/coaching")
    assert view["enrollment"]["cohort_id"] == cohort
    assert view["training"]["outcome"] == "completed"
    assert view["mentoring"]["mentor_id"] == "g-1"
    assert view["products"][0]["product_id"] == prod and view["products"][0]["certified"]
    assert view["certificates"][0]["kind"] == "NIB"
    assert missing.status_code == 404
