"""What coaching writes (P2-P4): enrolments and training outcomes, mentoring, products'
certification and its changes, certificates about to expire."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from shared.contracts.base import (
    MAX_COUNT,
    MAX_ITEMS,
    MAX_SESSIONS,
    Finding,
    Id,
    Instant,
    Name,
    Part,
    ParticipantEvent,
    pii,
)


class TrainingEnrolled(ParticipantEvent):
    """A registered participant was placed in a training cohort (P2)."""

    name: ClassVar[str] = "training-enrolled"
    producers: ClassVar[tuple[str, ...]] = ("coaching",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications", "lms")

    participant_id: Id = Field(description="The participant.")
    cohort_id: Id = Field(description="The cohort.")
    sector: Name = Field(description="The cohort's sector.")
    city: Name = Field(description="The cohort's city.")
    session_count: int = Field(ge=1, le=MAX_SESSIONS, description="Sessions in the cohort.")


class TrainingCompleted(ParticipantEvent):
    """Attendance >= 75 % and post-test score >= 70."""

    name: ClassVar[str] = "training-completed"
    producers: ClassVar[tuple[str, ...]] = ("coaching",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "marketplace", "notifications")

    participant_id: Id = Field(description="The participant.")
    cohort_id: Id = Field(description="The cohort.")
    score: int = Field(ge=0, le=100, description="Post-test score.")
    attendance_rate: float = Field(ge=0, le=1, description="Sessions attended / sessions, 0-1.")


class TrainingNotCompleted(ParticipantEvent):
    """All sessions and the assessment are in and the completion rule failed."""

    name: ClassVar[str] = "training-not-completed"
    producers: ClassVar[tuple[str, ...]] = ("coaching",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications")

    participant_id: Id = Field(description="The participant.")
    cohort_id: Id = Field(description="The cohort.")
    score: int = Field(ge=0, le=100, description="Post-test score.")
    attendance_rate: float = Field(ge=0, le=1, description="Sessions attended / sessions, 0-1.")
    reasons: list[Finding] = Field(max_length=MAX_ITEMS, description="Every rule that failed.")


class MentoringAssigned(ParticipantEvent):
    """A pendamping from the participant's kecamatan (or city) centre was assigned (P3)."""

    name: ClassVar[str] = "mentoring-assigned"
    producers: ClassVar[tuple[str, ...]] = ("coaching",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications", "pendamping-app")

    participant_id: Id = Field(description="The mentee.")
    mentor_id: Id = Field(description="The pendamping.")
    centre: Name = Field(description="The centre the pendamping works from.")


class MentoringCompleted(ParticipantEvent):
    """Three mentoring sessions were recorded."""

    name: ClassVar[str] = "mentoring-completed"
    producers: ClassVar[tuple[str, ...]] = ("coaching",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "marketplace")

    participant_id: Id = Field(description="The mentee.")
    mentor_id: Id = Field(description="The pendamping.")
    sessions: int = Field(ge=0, le=MAX_SESSIONS, description="Sessions recorded.")


VALID_KINDS = (
    "The kinds with a valid certificate (issued, unexpired, unrevoked) for the product now, "
    "its own or the business's (NIB, HKI_MEREK), sorted; as coaching, their one owner, "
    "decided it."
)
VALIDITY_REVISION = (
    "Counts the changes of the product's valid kinds (coaching's, per product); a consumer "
    "keeps the highest it has seen, so a late or replayed one changes nothing. 0 from a "
    "producer that predates it (no valid_kinds)."
)


class CertificateRef(Part):
    certificate_id: Id = Field(description="The certificate.")
    kind: Name = Field(description="Its kind.")
    number: Name = Field(description="Its number.", json_schema_extra=pii("business-id"))
    expires_at: Instant | None = Field(default=None, description="Its expiry, if any.")


class ProductCertified(ParticipantEvent):
    """A product satisfies its category's requirement set with valid certificates (P4)."""

    name: ClassVar[str] = "product-certified"
    producers: ClassVar[tuple[str, ...]] = ("coaching",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "marketplace", "notifications", "curators")

    product_id: Id = Field(description="The product.")
    participant_id: Id = Field(description="Its owner.")
    category: Name = Field(description="The product's category.")
    certificates: list[CertificateRef] = Field(
        max_length=MAX_ITEMS, description="The certificates that satisfy it."
    )
    valid_until: Instant | None = Field(description="Earliest expiry among them; null = none.")
    valid_kinds: list[Name] = Field(
        default_factory=list, max_length=MAX_ITEMS, description=VALID_KINDS
    )
    validity_revision: int = Field(default=0, ge=0, le=MAX_COUNT, description=VALIDITY_REVISION)


class ProductCertificationLapsed(ParticipantEvent):
    """A revocation or an expiry broke a certified product's requirement set."""

    name: ClassVar[str] = "product-certification-lapsed"
    producers: ClassVar[tuple[str, ...]] = ("coaching",)
    consumers: ClassVar[tuple[str, ...]] = ("marketplace", "notifications")

    product_id: Id = Field(description="The product.")
    participant_id: Id = Field(description="Its owner.")
    category: Name = Field(description="The product's category.")
    reasons: list[Finding] = Field(
        max_length=MAX_ITEMS, description="Each requirement no longer met."
    )
    valid_kinds: list[Name] = Field(
        default_factory=list, max_length=MAX_ITEMS, description=VALID_KINDS
    )
    validity_revision: int = Field(default=0, ge=0, le=MAX_COUNT, description=VALIDITY_REVISION)


class ProductCertificatesChanged(ParticipantEvent):
    """The kinds of certificate valid for a certified product changed without changing its
    certification: one was issued, revoked or expired (an HKI_MEREK, say). Coaching is the
    one owner of validity (issued, unexpired, unrevoked); the marketplace's export rule
    reads only what this event, ``product-certified`` and ``product-certification-lapsed``
    say, each carrying the product's valid kinds and their revision. Sent from a product's
    first certification on, and not while it is lapsed (its next certification carries
    them)."""

    name: ClassVar[str] = "product-certificates-changed"
    producers: ClassVar[tuple[str, ...]] = ("coaching",)
    consumers: ClassVar[tuple[str, ...]] = ("marketplace",)

    product_id: Id = Field(description="The product.")
    participant_id: Id = Field(description="Its owner.")
    category: Name = Field(description="The product's category.")
    valid_kinds: list[Name] = Field(max_length=MAX_ITEMS, description=VALID_KINDS)
    validity_revision: int = Field(ge=1, le=MAX_COUNT, description=VALIDITY_REVISION)


class CertificationExpiring(ParticipantEvent):
    """A certificate expires within 30 days; sent once per certificate."""

    name: ClassVar[str] = "certification-expiring"
    producers: ClassVar[tuple[str, ...]] = ("coaching",)
    consumers: ClassVar[tuple[str, ...]] = ("notifications",)

    certificate_id: Id = Field(description="The certificate.")
    participant_id: Id = Field(description="Its holder.")
    product_id: Id | None = Field(description="Its product, if product-level.")
    kind: Name = Field(description="Its kind.")
    number: Name = Field(description="Its number.", json_schema_extra=pii("business-id"))
    expires_at: Instant = Field(description="When it expires.")
