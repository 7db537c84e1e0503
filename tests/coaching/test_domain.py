"""Coaching rules, without I/O."""

from datetime import UTC, datetime, timedelta
from itertools import permutations

import pytest

from services.coaching import domain
from services.coaching.domain import (
    Certificate,
    Certified,
    Coaching,
    Enrollment,
    Expiring,
    Lapsed,
    Product,
    ValidityChanged,
)
from shared.contracts import Refusal

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def enrolled(sessions: int = 4) -> Coaching:
    state = Coaching(participant_id="p1")
    state.enrollment = Enrollment(
        cohort_id="c1", session_count=sessions, sector="kuliner", city="X"
    )
    return state


def cert(cid: str, kind: str, product: str | None = "prod", days: int | None = 365) -> Certificate:
    return Certificate(
        certificate_id=cid,
        product_id=product,
        kind=kind,
        number=f"N-{cid}",
        issued_at=NOW - timedelta(days=10),
        expires_at=None if days is None else NOW + timedelta(days=days),
    )


@pytest.mark.parametrize(
    ("present", "score", "expected", "codes"),
    [
        ([True, True, True, False], 70, True, []),
        ([True, True, True, True], 100, True, []),
        ([True, True, False, False], 90, False, ["attendance-below-75"]),
        ([True, True, True, True], 69, False, ["score-below-70"]),
        ([False, False, False, True], 10, False, ["attendance-below-75", "score-below-70"]),
    ],
)
def test_training_completion_rule(
    present: list[bool], score: int, expected: bool, codes: list[str]
) -> None:
    state = enrolled()
    for i, p in enumerate(present, start=1):
        domain.record_attendance(state, "c1", i, p)
    domain.record_assessment(state, "c1", score)
    decision = domain.decide_training(state)
    assert decision is not None
    assert decision.completed is expected
    assert [r.code for r in decision.reasons] == codes
    assert domain.decide_training(state) is None  # decided once


def test_completion_comes_early_but_failure_waits_for_every_session() -> None:
    state = enrolled()
    domain.record_assessment(state, "c1", 90)
    for i in (1, 2, 3):
        domain.record_attendance(state, "c1", i, True)
    decision = domain.decide_training(state)
    assert decision is not None and decision.completed and decision.attendance_rate == 0.75

    failing = enrolled()
    domain.record_assessment(failing, "c1", 90)
    domain.record_attendance(failing, "c1", 1, False)
    domain.record_attendance(failing, "c1", 2, False)
    assert domain.decide_training(failing) is None  # sessions 3 and 4 may still come
    domain.record_attendance(failing, "c1", 3, True)
    domain.record_attendance(failing, "c1", 4, True)
    decision = domain.decide_training(failing)
    assert decision is not None and not decision.completed


def test_attendance_outside_the_participants_cohort_is_not_applicable() -> None:
    with pytest.raises(Refusal) as not_enrolled:
        domain.record_attendance(Coaching(participant_id="p"), "c1", 1, True)
    assert not_enrolled.value.code == "not-in-cohort"
    with pytest.raises(Refusal) as other:
        domain.record_attendance(enrolled(), "c2", 1, True)
    assert other.value.code == "not-in-cohort"
    with pytest.raises(Refusal) as session:
        domain.record_attendance(enrolled(4), "c1", 5, True)
    assert session.value.code == "unknown-session"
    with pytest.raises(Refusal):
        domain.record_assessment(enrolled(), "c9", 80)


def test_mentoring_completes_after_three_sessions_with_the_assigned_mentor() -> None:
    state = Coaching(participant_id="p")
    with pytest.raises(Refusal) as unassigned:
        domain.record_mentoring_session(state, "m1")
    assert unassigned.value.code == "not-a-mentee"
    state.mentoring = domain.Mentoring(mentor_id="m1", centre="c")
    with pytest.raises(Refusal) as wrong:
        domain.record_mentoring_session(state, "m2")
    assert wrong.value.code == "wrong-mentor"
    for _ in range(2):
        domain.record_mentoring_session(state, "m1")
        assert not domain.decide_mentoring_completed(state)
    domain.record_mentoring_session(state, "m1")
    assert domain.decide_mentoring_completed(state)
    assert not domain.decide_mentoring_completed(state)


@pytest.mark.parametrize(
    ("category", "kinds", "certified"),
    [
        ("makanan-minuman", ["NIB", "PIRT", "HALAL"], True),
        ("makanan-minuman", ["NIB", "BPOM_MD", "HALAL"], True),
        ("makanan-minuman", ["NIB", "HALAL"], False),
        ("makanan-minuman", ["PIRT", "BPOM_MD", "HALAL"], False),
        ("kosmetik", ["NIB", "BPOM_NOTIFIKASI"], True),
        ("kosmetik", ["NIB", "HALAL"], False),
        ("fashion", ["NIB"], True),
        ("kriya", ["HKI_MEREK"], False),
        ("jasa", ["NIB"], True),
        ("lainnya", ["NIB", "SNI"], True),
    ],
)
def test_requirement_sets(category: str, kinds: list[str], certified: bool) -> None:
    state = Coaching(participant_id="p")
    state.products.append(Product(product_id="prod", name="x", category=category))
    state.certificates = [
        cert(f"c{i}", k, None if k == "NIB" else "prod") for i, k in enumerate(kinds)
    ]
    changes = domain.certification_changes(state, NOW)
    assert [type(c) for c in changes] == ([Certified] if certified else [])


def test_valid_until_is_the_earliest_expiry_and_no_expiry_counts_as_none() -> None:
    state = Coaching(participant_id="p")
    state.products.append(Product(product_id="prod", name="x", category="makanan-minuman"))
    state.certificates = [
        cert("nib", "NIB", None, days=None),
        cert("pirt", "PIRT", days=200),
        cert("halal", "HALAL", days=100),
        cert("halal-old", "HALAL", days=50),  # the longer-lasting one is chosen
        cert("other", "PIRT", product="another-product", days=900),
    ]
    [change] = domain.certification_changes(state, NOW)
    assert isinstance(change, Certified)
    assert {c.certificate_id for c in change.certificates} == {"nib", "pirt", "halal"}
    assert change.valid_until == NOW + timedelta(days=100)


def test_revocation_and_expiry_lapse_a_certified_product_and_renewal_certifies_again() -> None:
    state = Coaching(participant_id="p")
    state.products.append(Product(product_id="prod", name="x", category="kosmetik"))
    state.certificates = [cert("nib", "NIB", None, None), cert("bpom", "BPOM_NOTIFIKASI", days=60)]
    assert [type(c) for c in domain.certification_changes(state, NOW)] == [Certified]
    state.certificates[1].revoked = True
    [lapsed] = domain.certification_changes(state, NOW)
    assert isinstance(lapsed, Lapsed) and lapsed.reasons[0].code == "requirement-unmet"
    assert "BPOM_NOTIFIKASI" in lapsed.reasons[0].message
    domain.issue_certificate(state, cert("bpom2", "BPOM_NOTIFIKASI", days=45))
    changes = domain.certification_changes(state, NOW)
    assert [type(c) for c in changes] == [Certified]
    later = NOW + timedelta(days=46)  # bpom2 has expired
    assert [type(c) for c in domain.certification_changes(state, later)] == [Lapsed]


def test_expiry_notice_once_30_days_before_and_the_next_check_time() -> None:
    state = Coaching(participant_id="p")
    state.certificates = [cert("a", "NIB", None, days=40), cert("b", "SNI", None, days=10)]
    changes = domain.certification_changes(state, NOW)
    assert [c.certificate.certificate_id for c in changes if isinstance(c, Expiring)] == ["b"]
    assert state.next_check_at == NOW + timedelta(days=10)  # a's window opens, b expires
    assert domain.certification_changes(state, NOW + timedelta(days=5)) == []
    changes = domain.certification_changes(state, NOW + timedelta(days=10, seconds=1))
    assert [c.certificate.certificate_id for c in changes if isinstance(c, Expiring)] == ["a"]
    assert state.next_check_at == NOW + timedelta(days=40)
    assert domain.certification_changes(state, NOW + timedelta(days=41)) == []
    assert state.next_check_at is None


def test_a_reissued_certificate_keeps_a_known_revocation() -> None:
    state = Coaching(participant_id="p")
    revoked = cert("x", "NIB", None)
    revoked.revoked = True
    domain.issue_certificate(state, revoked)
    domain.issue_certificate(state, cert("x", "NIB", None))
    assert len(state.certificates) == 1 and state.certificates[0].revoked


def test_any_order_of_facts_certifies_the_product_exactly_once() -> None:
    facts = ["product", "nib", "pirt", "halal"]
    for order in permutations(facts):
        state = Coaching(participant_id="p")
        certified = 0
        for fact in order:
            if fact == "product":
                state.products.append(
                    Product(product_id="prod", name="x", category="makanan-minuman")
                )
            else:
                kind = fact.upper()
                domain.issue_certificate(state, cert(fact, kind, None if kind == "NIB" else "prod"))
            certified += sum(
                isinstance(c, Certified) for c in domain.certification_changes(state, NOW)
            )
        assert certified == 1, order


def about_products(changes: list[domain.CertificationChange]) -> list[object]:
    return [c for c in changes if not isinstance(c, Expiring)]


def test_coaching_publishes_a_certified_products_valid_kinds_with_each_change() -> None:
    """The marketplace's export rule reads validity from coaching alone: the kinds valid for
    a product (its own and the business's), with a revision one higher at each change,
    from its certification on; nothing while it is lapsed."""
    state = Coaching(participant_id="p")
    state.products.append(Product(product_id="prod", name="x", category="makanan-minuman"))
    state.certificates = [
        cert("nib", "NIB", None, days=None),
        cert("pirt", "PIRT"),
        cert("halal-other", "HALAL", product="another-product"),  # not this product's
    ]
    assert domain.certification_changes(state, NOW) == []  # not certified: nothing said
    product = state.products[0]
    assert (product.valid_kinds, product.validity_revision) == ([], 0)
    domain.issue_certificate(state, cert("halal", "HALAL", days=30))
    domain.issue_certificate(state, cert("hki-old", "HKI_MEREK", None, days=-1))  # expired
    [certified] = about_products(domain.certification_changes(state, NOW))
    assert isinstance(certified, Certified)
    assert (product.valid_kinds, product.validity_revision) == (["HALAL", "NIB", "PIRT"], 1)
    domain.issue_certificate(state, cert("hki", "HKI_MEREK", None))
    [changed] = domain.certification_changes(state, NOW)
    assert isinstance(changed, ValidityChanged) and changed.product is product
    assert (product.valid_kinds, product.validity_revision) == (
        ["HALAL", "HKI_MEREK", "NIB", "PIRT"],
        2,
    )
    assert domain.certification_changes(state, NOW) == []  # said once
    state.certificate("hki").revoked = True  # type: ignore[union-attr]
    [revoked] = domain.certification_changes(state, NOW)
    assert isinstance(revoked, ValidityChanged)
    assert (product.valid_kinds, product.validity_revision) == (["HALAL", "NIB", "PIRT"], 3)
    assert state.next_check_at == NOW + timedelta(days=30)  # HALAL's expiry (its notice sent)
    [lapsed] = about_products(domain.certification_changes(state, NOW + timedelta(days=31)))
    assert isinstance(lapsed, Lapsed)  # the HALAL expired: the lapse carries the kinds
    assert (product.valid_kinds, product.validity_revision) == (["NIB", "PIRT"], 4)
    domain.issue_certificate(state, cert("hki2", "HKI_MEREK", None, days=400))
    assert domain.certification_changes(state, NOW + timedelta(days=31)) == []  # lapsed
    assert product.validity_revision == 4


def test_a_product_certified_before_revisions_publishes_at_its_first_change() -> None:
    state = Coaching(participant_id="p")
    state.products.append(Product(product_id="prod", name="x", category="kriya", certified=True))
    state.certificates = [cert("nib", "NIB", None, days=None)]
    [changed] = domain.certification_changes(state, NOW)
    assert isinstance(changed, ValidityChanged)
    assert (changed.product.valid_kinds, changed.product.validity_revision) == (["NIB"], 1)


# ------------------------------------------------------------------- PDP: consent, erasure


def test_an_erasure_blanks_product_names_and_certificate_numbers_once() -> None:
    state = enrolled()
    state.products.append(Product(product_id="prod", name="Keripik Bu Siti", category="kriya"))
    state.certificates.append(cert("nib", "NIB", None))
    assert not domain.stopped(state)
    first = domain.erase(state, NOW.replace(microsecond=123456))
    assert first == NOW.replace(microsecond=123000)  # MongoDB's precision: a repeat agrees
    assert [p.name for p in state.products] == [""]
    assert [c.number for c in state.certificates] == [""]
    assert domain.erase(state, NOW + timedelta(days=1)) == first and domain.stopped(state)
    # what the funnel needs stays
    assert state.enrollment is not None and state.products[0].category == "kriya"


def test_after_an_erasure_a_late_fact_is_scrubbed_and_before_it_nothing_is() -> None:
    state = enrolled()
    state.products.append(Product(product_id="prod", name="Keripik", category="kriya"))
    domain.scrub(state)
    assert state.products[0].name == "Keripik"
    domain.erase(state, NOW)
    domain.issue_certificate(state, cert("late", "NIB", None))
    domain.scrub(state)
    assert state.certificate("late") is not None and state.certificate("late").number == ""


def test_a_stop_gives_a_pendamping_back_once_and_never_after_completion() -> None:
    state = enrolled()
    state.mentoring = domain.Mentoring(mentor_id="m1", centre="PLUT")
    assert domain.release_mentor(state) is None  # not stopped
    domain.withdraw_consent(state, NOW)
    domain.withdraw_consent(state, NOW + timedelta(days=1))
    assert state.consent_withdrawn_at == NOW and domain.stopped(state)
    assert domain.release_mentor(state) == "m1"
    assert domain.release_mentor(state) is None
    done = enrolled()
    done.mentoring = domain.Mentoring(mentor_id="m2", centre="PLUT", sessions=3, completed=True)
    domain.erase(done, NOW)
    assert domain.release_mentor(done) is None  # its completion gave it back


# ------------------------------------------------------- next steps, seats, pendamping search


def test_the_next_steps_enrol_then_assign_a_pendamping_then_complete_mentoring() -> None:
    state = Coaching(participant_id="p1")
    state.profile = domain.Profile(sector="kuliner", city="Jakarta Selatan", kecamatan="Tebet")
    assert domain.next_steps(state, NOW) == [domain.Enrol("kuliner", "Jakarta Selatan")]
    state.enrollment = Enrollment(
        cohort_id="c1", session_count=4, sector="kuliner", city="Jakarta Selatan"
    )
    assert domain.next_steps(state, NOW) == []
    for i in range(1, 5):
        domain.record_attendance(state, "c1", i, True)
    domain.record_assessment(state, "c1", 90)
    [trained, assign] = domain.next_steps(state, NOW)
    assert isinstance(trained, domain.TrainingDecision) and trained.completed
    assert assign == domain.AssignPendamping(
        [
            {"kecamatan": "Tebet", "city": "Jakarta Selatan"},
            {"kecamatan": None, "city": "Jakarta Selatan"},
            {"city": "Jakarta Selatan"},
        ]
    )
    state.mentoring = domain.Mentoring(mentor_id="m1", centre="PLUT Tebet")
    for _ in range(3):
        domain.record_mentoring_session(state, "m1")
    [done] = domain.next_steps(state, NOW)
    assert done == domain.MentoringDone(state.mentoring, release=True)
    assert domain.next_steps(state, NOW) == []


def test_after_a_stop_nothing_new_starts_and_the_pendamping_is_given_back() -> None:
    state = Coaching(participant_id="p1")
    state.profile = domain.Profile(sector="kuliner", city="X", kecamatan="Y")
    domain.withdraw_consent(state, NOW)
    assert domain.next_steps(state, NOW) == []
    state.enrollment = Enrollment(cohort_id="c1", session_count=1, sector="kuliner", city="X")
    state.mentoring = domain.Mentoring(mentor_id="m1", centre="PLUT")
    assert domain.next_steps(state, NOW) == [domain.ReleasePendamping("m1")]


def test_a_seat_goes_to_the_oldest_cohort_with_room_and_the_next_opens_when_all_are_full() -> None:
    full = domain.new_cohort("kuliner", "Jakarta Selatan", 1, capacity=2, sessions=4)
    full.size = 2
    roomy = domain.new_cohort("kuliner", "Jakarta Selatan", 2, capacity=2, sessions=4)
    assert roomy.cohort_id == "jakarta-selatan-kuliner-0002"
    open_ = [full, roomy]
    assert domain.cohort_with_room(open_, 2) is roomy and open_ == [roomy]
    enrollment = domain.take_seat(roomy)
    assert (enrollment.cohort_id, enrollment.session_count, roomy.size) == (roomy.cohort_id, 4, 1)
    domain.take_seat(roomy)
    assert domain.cohort_with_room(open_, 2) is None and open_ == []
