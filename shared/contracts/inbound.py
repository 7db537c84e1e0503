"""What the internal systems send: the portal's and JAKI's registrations, the LMS's attendance
and assessments, the pendamping app's sessions and products, the issuers' certificates, the
curators' reviews, QRIS/e-Order's sales and Bank DKI's decisions. Types are checked here;
the programme's rules are the consuming service's."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import Field

from shared.contracts.base import (
    MAX_COUNT,
    MAX_RUPIAH,
    MAX_SESSIONS,
    Digits,
    Email,
    Event,
    Id,
    Instant,
    Month,
    Name,
    ParticipantEvent,
    Phone,
    Text,
    pii,
)

CertificateKind = Literal["NIB", "PIRT", "HALAL", "BPOM_MD", "BPOM_NOTIFIKASI", "HKI_MEREK", "SNI"]
ProductCategory = Literal["makanan-minuman", "kosmetik", "fashion", "kriya", "jasa", "lainnya"]
CurationLevel = Literal["pendamping", "kecamatan", "dinas", "curator"]


class RegistrationSubmitted(Event):
    """A person asks to join Jakpreneur (portal, JAKI app or a kelurahan officer).

    Types are checked here; the programme's rules (NIK structure, age, phone format, known
    city and sector, ...) are the registry's, and each broken rule becomes a reason code.
    """

    name: ClassVar[str] = "registration-submitted"
    producers: ClassVar[tuple[str, ...]] = ("portal",)
    consumers: ClassVar[tuple[str, ...]] = ("registry",)

    submission_id: Id = Field(description="Unique per submission; idempotency key.")
    nik: Digits = Field(
        description="Nomor Induk Kependudukan, 16 digits, a DKI Jakarta KTP.",
        json_schema_extra=pii("identity-number"),
    )
    kk: Digits = Field(
        description="Nomor Kartu Keluarga, 16 digits.", json_schema_extra=pii("identity-number")
    )
    full_name: Name = Field(description="Name as on the KTP.", json_schema_extra=pii("name"))
    birth_date: date = Field(
        ge=date(1900, 1, 1),
        le=date(2099, 12, 31),
        description="YYYY-MM-DD; must agree with NIK digits 7-12.",
        json_schema_extra=pii("birth-date"),
    )
    gender: Name = Field(description="`L` (laki-laki) or `P` (perempuan).")
    phone: Phone = Field(
        description="Indonesian mobile number: 0812..., 62812... or +62812...",
        json_schema_extra=pii("contact"),
    )
    email: Email | None = Field(
        default=None, description="Optional e-mail address.", json_schema_extra=pii("contact")
    )
    city: Name = Field(
        description="Jakarta Pusat | Jakarta Utara | Jakarta Barat | Jakarta Selatan | "
        "Jakarta Timur | Kepulauan Seribu"
    )
    kecamatan: Name = Field(description="District of residence.")
    kelurahan: Name = Field(
        description="Sub-district of residence.", json_schema_extra=pii("address")
    )
    sector: Name = Field(description="kuliner | fashion | kriya | jasa | agribisnis | lainnya")
    has_business: bool = Field(description="Whether the person already runs a business.")
    business_name: Name | None = Field(
        default=None,
        description="Name of the business, if any.",
        json_schema_extra=pii("business-id"),
    )
    nib: Digits | None = Field(
        default=None,
        description="Nomor Induk Berusaha, 13 digits, if any.",
        json_schema_extra=pii("business-id"),
    )
    consent: bool = Field(description="Consent to processing of personal data; must be true.")
    channel: Literal["portal", "jaki", "kelurahan"] = Field(
        description="Where the submission was made."
    )


class TrainingAttendanceRecorded(ParticipantEvent):
    """The trainers' LMS recorded whether a participant attended one session of a cohort."""

    name: ClassVar[str] = "training-attendance-recorded"
    producers: ClassVar[tuple[str, ...]] = ("lms",)
    consumers: ClassVar[tuple[str, ...]] = ("coaching",)

    participant_id: Id = Field(description="The participant.")
    cohort_id: Id = Field(description="The cohort the session belongs to.")
    session_no: int = Field(
        ge=1, le=MAX_SESSIONS, description="1-based session number within the cohort."
    )
    present: bool = Field(description="Whether the participant attended.")
    recorded_at: Instant = Field(description="When the trainer recorded it.")
    trainer_id: Id = Field(description="Who recorded it.")


class TrainingAssessed(ParticipantEvent):
    """The post-test result of a participant in a cohort."""

    name: ClassVar[str] = "training-assessed"
    producers: ClassVar[tuple[str, ...]] = ("lms",)
    consumers: ClassVar[tuple[str, ...]] = ("coaching",)

    participant_id: Id = Field(description="The participant.")
    cohort_id: Id = Field(description="The cohort assessed.")
    score: int = Field(ge=0, le=100, description="Post-test score, 0-100.")
    assessed_at: Instant = Field(description="When the assessment was made.")


class MentoringSessionRecorded(ParticipantEvent):
    """A pendamping logged a mentoring session with a participant."""

    name: ClassVar[str] = "mentoring-session-recorded"
    producers: ClassVar[tuple[str, ...]] = ("pendamping-app",)
    consumers: ClassVar[tuple[str, ...]] = ("coaching",)

    participant_id: Id = Field(description="The mentee.")
    mentor_id: Id = Field(description="The pendamping.")
    session_at: Instant = Field(description="When the session took place.")
    notes: Text = Field(
        default="", description="Free text notes.", json_schema_extra=pii("free-text")
    )


class ProductSubmitted(ParticipantEvent):
    """A participant submitted a product for licensing help."""

    name: ClassVar[str] = "product-submitted"
    producers: ClassVar[tuple[str, ...]] = ("pendamping-app", "portal")
    consumers: ClassVar[tuple[str, ...]] = ("coaching",)

    product_id: Id = Field(description="The product.")
    participant_id: Id = Field(description="Its owner.")
    name_: Name = Field(
        alias="name", description="Product name.", json_schema_extra=pii("business-id")
    )
    category: ProductCategory = Field(description="Decides which certificates it needs.")
    description: Text = Field(
        default="", description="What the product is.", json_schema_extra=pii("free-text")
    )
    production_started: Month = Field(description="YYYY-MM production started.")


class CertificationIssued(ParticipantEvent):
    """OSS, BPJPH, BPOM, DJKI ... issued a licence or certificate."""

    name: ClassVar[str] = "certification-issued"
    producers: ClassVar[tuple[str, ...]] = ("certificate-issuers",)
    consumers: ClassVar[tuple[str, ...]] = ("coaching",)  # validity is coaching's alone

    certificate_id: Id = Field(description="The certificate.")
    participant_id: Id = Field(description="Its holder.")
    product_id: Id | None = Field(
        default=None, description="The product; null for business-level ones such as NIB."
    )
    kind: CertificateKind = Field(description="NIB | PIRT | HALAL | BPOM_MD | ... ")
    number: Name = Field(
        description="The certificate's number.", json_schema_extra=pii("business-id")
    )
    issued_at: Instant = Field(description="When it was issued.")
    expires_at: Instant | None = Field(default=None, description="Expiry; null = none.")
    issuer: Name = Field(description="The issuing body.")


class CertificationRevoked(Event):
    """An issuer revoked a certificate."""

    name: ClassVar[str] = "certification-revoked"
    producers: ClassVar[tuple[str, ...]] = ("certificate-issuers",)
    consumers: ClassVar[tuple[str, ...]] = ("coaching",)

    certificate_id: Id = Field(description="The certificate revoked.")
    reason: Name = Field(description="Why.")
    revoked_at: Instant = Field(description="When.")


class CurationReviewed(Event):
    """One level of the curation ladder reviewed a product."""

    name: ClassVar[str] = "curation-reviewed"
    producers: ClassVar[tuple[str, ...]] = ("curators",)
    consumers: ClassVar[tuple[str, ...]] = ("marketplace",)

    product_id: Id = Field(description="The product reviewed.")
    level: CurationLevel = Field(description="pendamping -> kecamatan -> dinas -> curator.")
    decision: Literal["approve", "reject"] = Field(description="The level's decision.")
    grade: Literal["A", "B", "C"] | None = Field(
        default=None, description="Required when the curator approves."
    )
    reviewer_id: Id = Field(description="Who reviewed.")
    notes: Text = Field(
        default="", description="The reviewer's notes.", json_schema_extra=pii("free-text")
    )
    reviewed_at: Instant = Field(description="When.")


class SalesReported(ParticipantEvent):
    """A month of sales of a participant (QRIS, e-Order, marketplaces, offline books)."""

    name: ClassVar[str] = "sales-reported"
    producers: ClassVar[tuple[str, ...]] = ("qris-eorder",)
    consumers: ClassVar[tuple[str, ...]] = ("marketplace",)

    participant_id: Id = Field(description="The participant.")
    period: Month = Field(description="YYYY-MM.")
    revenue_idr: int = Field(ge=0, le=MAX_RUPIAH, description="Revenue in rupiah.")
    transactions: int = Field(ge=0, le=MAX_COUNT, description="Number of transactions.")
    channel: Literal["qris", "e-order", "marketplace", "offline"] = Field(
        description="Where the sales were recorded."
    )
    source_ref: Id = Field(description="The source system's reference; a repeat is a no-op.")


class FinancingDecided(Event):
    """Bank DKI decided on a referral."""

    name: ClassVar[str] = "financing-decided"
    producers: ClassVar[tuple[str, ...]] = ("bank-dki",)
    consumers: ClassVar[tuple[str, ...]] = ("marketplace",)

    referral_id: Id = Field(description="The referral decided.")
    decision: Literal["approved", "declined"] = Field(description="The bank's decision.")
    amount_idr: int = Field(ge=0, le=MAX_RUPIAH, description="Amount approved (0 when declined).")
    decided_at: Instant = Field(description="When.")
    bank_ref: Id = Field(description="The bank's reference.")
