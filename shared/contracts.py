"""The contract catalogue: one pydantic model per event type, every field described.

Consumers read tolerantly (unknown fields are ignored). A breaking change is a new type with a
higher major version; ``tests/shared/test_contracts.py`` compares each model with its
checked-in JSON-Schema snapshot under ``shared/schemas`` and fails on an incompatible change.
Run ``python -m shared.contracts`` to write the snapshots after a compatible change.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

SCHEMA_DIR = Path(__file__).with_name("schemas")

# ------------------------------------------------------------------ limits, as data
# Every value a contract carries is bounded, so a hostile record is refused where it is read
# (a reason code, or the DLQ) and never reaches a store, a log or a comparison that would
# choke on it. The JSON Schemas (and so the AsyncAPI documents) show each bound.

MAX_RECORD_BYTES = 64 * 1024  # a record's value; the largest real one is under 2 KB
MAX_ITEMS = 50  # entries of a list
MAX_SESSIONS = 100  # training or mentoring sessions
MAX_COUNT = 1_000_000_000  # transactions in a month
MAX_RUPIAH = 10**15  # Rp 1,000 trillion: above any UMKM figure, far inside int64
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

# C0/C1 controls (but tab and newlines in free text), DEL, and lone surrogates, which no
# store or provider can encode.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def in_bounds(time: datetime) -> datetime:
    """``time`` in UTC if it lies in [2000, 2100), else ValueError: no later conversion or
    comparison can overflow (a year 9999 at -12:00 does) and no producer's clock can pass a
    date this programme cannot have. A time without an offset is taken as UTC."""
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    try:
        utc = time.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"time outside [{EARLIEST.year}, {LATEST.year})")
    return utc


def is_plain(value: str) -> bool:
    """No control characters and no lone surrogates."""
    return _CONTROL.search(value) is None


def _plain(value: str) -> str:
    if not is_plain(value):
        raise ValueError("control characters and lone surrogates are not allowed")
    return value


def _plain_multiline(value: str) -> str:
    if _CONTROL_MULTILINE.search(value):
        raise ValueError("control characters and lone surrogates are not allowed")
    return value


def _nfkc(value: str) -> str:
    """Fullwidth and other compatibility digits become ASCII ones (U+FF13 -> "3"), so one
    number has one spelling; what is still not ASCII digits its owner's rule refuses."""
    return _plain(unicodedata.normalize("NFKC", value))


Id = Annotated[str, AfterValidator(_plain), Field(min_length=1, max_length=100)]
Name = Annotated[str, AfterValidator(_plain), Field(max_length=200)]
Text = Annotated[str, AfterValidator(_plain_multiline), Field(max_length=2000)]
Digits = Annotated[str, AfterValidator(_nfkc), Field(max_length=32)]
Phone = Annotated[str, AfterValidator(_nfkc), Field(max_length=32)]
Email = Annotated[str, AfterValidator(_nfkc), Field(max_length=254)]
Month = Annotated[str, Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", max_length=7)]
Instant = Annotated[datetime, AfterValidator(in_bounds)]


# ------------------------------------------------------------------ personal data, as data
# Every field that says something about a person carries its category here
# (``json_schema_extra={"pii": ...}``, shown in the JSON Schemas and the AsyncAPI documents).
# docs/personal-data.md is generated from these marks and shared/personal_data.py (where
# each category is stored, for how long and why); a test fails when a contract gains a
# personal field the map does not account for.
PII_CATEGORIES = (
    "identity-number",  # NIK, KK: identify a person and their family
    "name",  # a person's name, whole or first
    "birth-date",  # the full date of birth
    "contact",  # phone number, e-mail address
    "address",  # below the kecamatan: the kelurahan
    "business-id",  # NIB, the business's and products' names, certificate numbers: identify
    # a sole trader
    "free-text",  # notes written by officers or pendamping: may name or describe the person
)


def pii(category: str) -> dict[str, Any]:
    """A field's ``json_schema_extra`` marking it personal data of ``category``."""
    assert category in PII_CATEGORIES, category
    return {"pii": category}


class Refusal(Exception):
    """A fact that cannot be applied, now or later, for a reason with a code (``code``): it
    goes to its topic's DLQ under that code (``dlq_error_type``). The one refusal type of
    the kernel and of every service's domain rules."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Part(BaseModel):
    """Base of every contract and of the models nested in them: read tolerantly. A field
    whose wire name clashes with Python (``name``) is declared with that name as alias."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, serialize_by_alias=True, validate_by_name=True
    )


class Event(Part):
    """Base of every contract. ``name`` is also the topic; ``ce_type`` carries the version."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    max_bytes: ClassVar[int] = MAX_RECORD_BYTES
    # Who writes and who reads the topic: services by name, internal systems by their
    # principal (a system reads what it reacts to: the LMS a cohort, Bank DKI a referral,
    # the portal an outcome). The one source of the Kafka ACLs (shared/access.py), of the
    # ce_source a consumer accepts and of each service's subscriptions (``consumed_by``).
    producers: ClassVar[tuple[str, ...]] = ()
    consumers: ClassVar[tuple[str, ...]] = ()
    compacted: ClassVar[bool] = False  # the topic keeps each key's latest record

    @classmethod
    def ce_type(cls) -> str:
        return f"jakpreneur.{cls.name}.v{cls.version}"


# --------------------------------------------------------------------------- P1 registry


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


class ParticipantRegistered(Event):
    """A submission passed every rule; the participant now exists. Carries nothing personal:
    no NIK or KK, no name, no contact, no address below the kecamatan (v2; the contact and the
    first name travel on ``participant-contact``, to notifications only)."""

    name: ClassVar[str] = "participant-registered"
    version: ClassVar[int] = 2
    producers: ClassVar[tuple[str, ...]] = ("registry",)
    consumers: ClassVar[tuple[str, ...]] = ("coaching", "marketplace", "notifications")

    participant_id: Id = Field(description="Random UUID; not derivable from the NIK.")
    submission_id: Id = Field(description="The submission this answers.")
    registered_at: Instant = Field(description="When the registry accepted it.")
    city: Name = Field(description="City of residence.")
    kecamatan: Name = Field(description="District of residence.")
    sector: Name = Field(description="Business sector.")
    has_business: bool = Field(description="Whether the participant already runs a business.")
    gender: Literal["L", "P"] = Field(description="L or P.")
    birth_year: int = Field(
        ge=1900, le=2100, description="Year of birth (for age bands; no full date)."
    )


class ParticipantContact(Event):
    """How to reach a participant and how to greet them: the one place contacts travel.

    Its topic is compacted and keyed by participant id, so it keeps each participant's
    latest record: a contact change is a new record, an erasure a tombstone (a record with
    no value). Read by notifications only."""

    name: ClassVar[str] = "participant-contact"
    producers: ClassVar[tuple[str, ...]] = ("registry",)
    consumers: ClassVar[tuple[str, ...]] = ("notifications",)
    compacted: ClassVar[bool] = True

    participant_id: Id = Field(description="The participant; also the record's key.")
    display_name: Name = Field(
        description="First name, for greetings.", json_schema_extra=pii("name")
    )
    phone: Phone = Field(
        description="E.164 mobile number, e.g. +6281234567890.", json_schema_extra=pii("contact")
    )
    email: Email | None = Field(
        default=None, description="E-mail address, if given.", json_schema_extra=pii("contact")
    )
    updated_at: Instant = Field(description="When the registry recorded this contact.")


class Reason(Part):
    code: Name = Field(description="Machine-readable reason, e.g. `invalid-nik`.")
    field: Name | None = Field(description="The submission field at fault, if one is.")
    message: Text = Field(description="Human-readable explanation (never echoes NIK or KK).")


class RegistrationRejected(Event):
    """A submission broke one or more rules; every problem found is listed."""

    name: ClassVar[str] = "registration-rejected"
    producers: ClassVar[tuple[str, ...]] = ("registry",)
    consumers: ClassVar[tuple[str, ...]] = ("portal",)

    submission_id: Id = Field(description="The submission this answers.")
    rejected_at: Instant = Field(description="When the registry decided.")
    reasons: list[Reason] = Field(
        min_length=1, max_length=MAX_ITEMS, description="Every problem found."
    )
    participant_id: Id | None = Field(
        default=None,
        description="Deprecated, always null: the NIK's owner is not told to the submitter "
        "(ops read it at the registry's GET /submissions/{submission_id}).",
    )


# --------------------------------------------------------------------------- P2-P4 coaching

CertificateKind = Literal["NIB", "PIRT", "HALAL", "BPOM_MD", "BPOM_NOTIFIKASI", "HKI_MEREK", "SNI"]
ProductCategory = Literal["makanan-minuman", "kosmetik", "fashion", "kriya", "jasa", "lainnya"]


class TrainingAttendanceRecorded(Event):
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


class TrainingAssessed(Event):
    """The post-test result of a participant in a cohort."""

    name: ClassVar[str] = "training-assessed"
    producers: ClassVar[tuple[str, ...]] = ("lms",)
    consumers: ClassVar[tuple[str, ...]] = ("coaching",)

    participant_id: Id = Field(description="The participant.")
    cohort_id: Id = Field(description="The cohort assessed.")
    score: int = Field(ge=0, le=100, description="Post-test score, 0-100.")
    assessed_at: Instant = Field(description="When the assessment was made.")


class MentoringSessionRecorded(Event):
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


class ProductSubmitted(Event):
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


class CertificationIssued(Event):
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


class TrainingEnrolled(Event):
    """A registered participant was placed in a training cohort (P2)."""

    name: ClassVar[str] = "training-enrolled"
    producers: ClassVar[tuple[str, ...]] = ("coaching",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications", "lms")

    participant_id: Id = Field(description="The participant.")
    cohort_id: Id = Field(description="The cohort.")
    sector: Name = Field(description="The cohort's sector.")
    city: Name = Field(description="The cohort's city.")
    session_count: int = Field(ge=1, le=MAX_SESSIONS, description="Sessions in the cohort.")


class TrainingCompleted(Event):
    """Attendance >= 75 % and post-test score >= 70."""

    name: ClassVar[str] = "training-completed"
    producers: ClassVar[tuple[str, ...]] = ("coaching",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "marketplace", "notifications")

    participant_id: Id = Field(description="The participant.")
    cohort_id: Id = Field(description="The cohort.")
    score: int = Field(ge=0, le=100, description="Post-test score.")
    attendance_rate: float = Field(ge=0, le=1, description="Sessions attended / sessions, 0-1.")


class Finding(Part):
    code: Name = Field(description="Machine-readable reason code.")
    message: Text = Field(description="Human-readable explanation.")


class TrainingNotCompleted(Event):
    """All sessions and the assessment are in and the completion rule failed."""

    name: ClassVar[str] = "training-not-completed"
    producers: ClassVar[tuple[str, ...]] = ("coaching",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications")

    participant_id: Id = Field(description="The participant.")
    cohort_id: Id = Field(description="The cohort.")
    score: int = Field(ge=0, le=100, description="Post-test score.")
    attendance_rate: float = Field(ge=0, le=1, description="Sessions attended / sessions, 0-1.")
    reasons: list[Finding] = Field(max_length=MAX_ITEMS, description="Every rule that failed.")


class MentoringAssigned(Event):
    """A pendamping from the participant's kecamatan (or city) centre was assigned (P3)."""

    name: ClassVar[str] = "mentoring-assigned"
    producers: ClassVar[tuple[str, ...]] = ("coaching",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications", "pendamping-app")

    participant_id: Id = Field(description="The mentee.")
    mentor_id: Id = Field(description="The pendamping.")
    centre: Name = Field(description="The centre the pendamping works from.")


class MentoringCompleted(Event):
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


class ProductCertified(Event):
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


class ProductCertificationLapsed(Event):
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


class ProductCertificatesChanged(Event):
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


class CertificationExpiring(Event):
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


# --------------------------------------------------------------------------- P5-P7 marketplace

CurationLevel = Literal["pendamping", "kecamatan", "dinas", "curator"]


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


class SalesReported(Event):
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


class ProductCurationRejected(Event):
    """A curation level rejected the product; curation ends there."""

    name: ClassVar[str] = "product-curation-rejected"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("notifications",)

    product_id: Id = Field(description="The product.")
    participant_id: Id = Field(description="Its owner.")
    level: Name = Field(description="The level that rejected it.")
    notes: Text = Field(description="The reviewer's notes.", json_schema_extra=pii("free-text"))


class ProductCurated(Event):
    """Every level approved; the curator graded the product."""

    name: ClassVar[str] = "product-curated"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("registry",)

    product_id: Id = Field(description="The product.")
    participant_id: Id = Field(description="Its owner.")
    grade: Name = Field(description="A, B or C.")


class ProductListed(Event):
    """The product is listed on the channels its grade opens."""

    name: ClassVar[str] = "product-listed"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications")

    product_id: Id = Field(description="The product.")
    participant_id: Id = Field(description="Its owner.")
    grade: Name = Field(description="Its curation grade.")
    channels: list[Name] = Field(
        max_length=MAX_ITEMS, description="e-order, retail, mall, online, bazaar, ..."
    )


class ProductDelisted(Event):
    """The product left every channel (its certification lapsed)."""

    name: ClassVar[str] = "product-delisted"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ()

    product_id: Id = Field(description="The product.")
    participant_id: Id = Field(description="Its owner.")
    reason: Name = Field(description="Why, as a code.")


class ExportFacilitated(Event):
    """A grade-A product with steady sales and the right certificates goes international."""

    name: ClassVar[str] = "export-facilitated"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications")

    product_id: Id = Field(description="The product.")
    participant_id: Id = Field(description="Its owner.")
    programme: Name = Field(description="The export facilitation programme.")
    reasons: list[Finding] = Field(max_length=MAX_ITEMS, description="The conditions met.")


class FinancialReportRecorded(Event):
    """A month of sales was recorded (or replaced the month's earlier report)."""

    name: ClassVar[str] = "financial-report-recorded"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("registry",)

    participant_id: Id = Field(description="The participant.")
    period: Month = Field(description="YYYY-MM.")
    revenue_idr: int = Field(ge=0, le=MAX_RUPIAH, description="Revenue in rupiah.")
    transactions: int = Field(ge=0, le=MAX_COUNT, description="Number of transactions.")
    channel: Name = Field(description="Where the sales were recorded.")
    replaced: bool = Field(description="Whether it replaced an earlier report of the month.")


BusinessClass = Literal["mikro", "kecil", "menengah", "besar"]


class BusinessClassChanged(Event):
    """The business class the sales ledger gives (PP 7/2021, by annual sales) differs from
    the last one announced: the first class known, a move up (naik kelas), or a move down
    when a replaced monthly report lowers the annual figure."""

    name: ClassVar[str] = "business-class-changed"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("registry",)

    participant_id: Id = Field(description="The participant.")
    from_class: BusinessClass | None = Field(
        description="The class announced before; null the first time a class is known."
    )
    to_class: BusinessClass = Field(description="The class the ledger gives now.")
    annual_sales_idr: int = Field(
        ge=0,
        le=MAX_RUPIAH,
        description="Annual sales in rupiah: the last 12 reported months, or fewer annualised.",
    )
    basis_months: int = Field(
        ge=3, le=12, description="How many reported months (of the last 12) the figure uses."
    )
    annualised: bool = Field(
        description="Whether fewer than 12 months were scaled up (sum x 12 / basis_months)."
    )
    assessed_at: Instant = Field(description="When the ledger gave this class.")


class FinancingReferred(Event):
    """The participant passed six of the seven stages: referred to Bank DKI micro credit."""

    name: ClassVar[str] = "financing-referred"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications", "bank-dki")

    referral_id: Id = Field(description="The referral; the bank answers with it.")
    participant_id: Id = Field(description="The participant.")
    stages: list[Name] = Field(max_length=MAX_ITEMS, description="The stages met.")
    product_name: Name = Field(description="The credit product.")
    max_amount_idr: int = Field(ge=0, le=MAX_RUPIAH, description="The most the product lends.")
    rate_percent: float = Field(ge=0, le=100, description="Yearly interest rate.")


class FinancingApproved(Event):
    """Bank DKI approved the referral."""

    name: ClassVar[str] = "financing-approved"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications")

    referral_id: Id = Field(description="The referral.")
    participant_id: Id = Field(description="The participant.")
    amount_idr: int = Field(ge=0, le=MAX_RUPIAH, description="Amount approved.")
    bank_ref: Id = Field(description="The bank's reference.")


class FinancingDeclined(Event):
    """Bank DKI declined the referral."""

    name: ClassVar[str] = "financing-declined"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications")

    referral_id: Id = Field(description="The referral.")
    participant_id: Id = Field(description="The participant.")
    bank_ref: Id = Field(description="The bank's reference.")


# --------------------------------------------------------------------------- notifications


class NotificationSent(Event):
    """A participant-facing message was handed to a provider."""

    name: ClassVar[str] = "notification-sent"
    producers: ClassVar[tuple[str, ...]] = ("notifications",)
    consumers: ClassVar[tuple[str, ...]] = ()

    participant_id: Id = Field(description="The recipient.")
    channel: Literal["whatsapp", "sms", "email"] = Field(description="How it went out.")
    template: Name = Field(description="The template (the event it tells about).")
    provider_message_id: Name = Field(description="The provider's id of the message.")
    cause_event_id: Id = Field(description="ce_id of the event the message tells about.")


class DeliveryProblem(Part):
    code: Name = Field(description="e.g. provider-rejected, provider-unavailable, no-contact.")
    channel: Name | None = Field(description="The channel that failed, if one did.")
    message: Text = Field(description="What happened (never the address itself).")


class NotificationFailed(Event):
    """No channel could deliver the message; every attempt is listed."""

    name: ClassVar[str] = "notification-failed"
    producers: ClassVar[tuple[str, ...]] = ("notifications",)
    consumers: ClassVar[tuple[str, ...]] = ()

    participant_id: Id = Field(description="The recipient.")
    template: Name = Field(description="The template (the event it tells about).")
    cause_event_id: Id = Field(description="ce_id of the event the message tells about.")
    reasons: list[DeliveryProblem] = Field(
        max_length=MAX_ITEMS, description="Each failed attempt, in order."
    )


# --------------------------------------------------------------------------- PDP requests


class ParticipantErasureRequested(Event):
    """A data subject (or someone for them) asks that their personal data be erased (UU
    27/2022). Every service erases or irreversibly pseudonymises what it holds and answers
    with ``participant-data-erased``; what the programme's statistics need stays, with
    nothing that identifies the person."""

    name: ClassVar[str] = "participant-erasure-requested"
    producers: ClassVar[tuple[str, ...]] = ("portal", "registry")
    consumers: ClassVar[tuple[str, ...]] = ("coaching", "marketplace", "notifications", "registry")

    participant_id: Id = Field(description="Whose data.")
    requested_by: Name = Field(description="Who asked: the participant, or an officer's id.")
    reason: Text = Field(description="Why, as given.")
    requested_at: Instant = Field(description="When it was asked.")


class ParticipantDataErased(Event):
    """One service has erased (or irreversibly pseudonymised) what it held about a
    participant; the registry tracks a request until all four have answered."""

    name: ClassVar[str] = "participant-data-erased"
    producers: ClassVar[tuple[str, ...]] = ("registry", "coaching", "marketplace", "notifications")
    consumers: ClassVar[tuple[str, ...]] = ("registry",)  # it tracks each request

    participant_id: Id = Field(description="Whose data.")
    service: Name = Field(description="The service that erased it.")
    erased_at: Instant = Field(description="When.")
    categories: list[Name] = Field(
        max_length=MAX_ITEMS, description="The categories of personal data it erased."
    )


class ConsentWithdrawn(Event):
    """A participant withdraws consent: processing for them stops (no enrolment, referral
    or message; pending messages are cancelled). Their data is kept until an erasure."""

    name: ClassVar[str] = "consent-withdrawn"
    producers: ClassVar[tuple[str, ...]] = ("portal", "registry")
    consumers: ClassVar[tuple[str, ...]] = ("coaching", "marketplace", "notifications", "registry")

    participant_id: Id = Field(description="Whose consent.")
    requested_by: Name = Field(description="Who asked: the participant, or an officer's id.")
    withdrawn_at: Instant = Field(description="When.")


CATALOGUE: tuple[type[Event], ...] = (
    RegistrationSubmitted,
    ParticipantRegistered,
    ParticipantContact,
    RegistrationRejected,
    TrainingAttendanceRecorded,
    TrainingAssessed,
    MentoringSessionRecorded,
    ProductSubmitted,
    CertificationIssued,
    CertificationRevoked,
    TrainingEnrolled,
    TrainingCompleted,
    TrainingNotCompleted,
    MentoringAssigned,
    MentoringCompleted,
    ProductCertified,
    ProductCertificationLapsed,
    ProductCertificatesChanged,
    CertificationExpiring,
    CurationReviewed,
    SalesReported,
    FinancingDecided,
    ProductCurationRejected,
    ProductCurated,
    ProductListed,
    ProductDelisted,
    ExportFacilitated,
    FinancialReportRecorded,
    BusinessClassChanged,
    FinancingReferred,
    FinancingApproved,
    FinancingDeclined,
    NotificationSent,
    NotificationFailed,
    ParticipantErasureRequested,
    ParticipantDataErased,
    ConsentWithdrawn,
)


def personal_fields(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """Each personal field of ``model`` (nested ones as ``a.b``) and its category."""
    found: dict[str, str] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and "pii" in extra:
            found[prefix + (info.alias or name)] = str(extra["pii"])
        for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, Part):
                found |= personal_fields(arg, f"{prefix}{info.alias or name}.")
    return found


def produced_by(principal: str) -> tuple[type[Event], ...]:
    """The events ``principal`` (a service or an internal system) writes, in catalogue order."""
    return tuple(event for event in CATALOGUE if principal in event.producers)


def event_of_topic(topic: str) -> type[Event] | None:
    """The event published on ``topic`` (a name under any prefix), or None."""
    matches = [e for e in CATALOGUE if topic.endswith(e.name)]
    return max(matches, key=lambda e: len(e.name), default=None)


def consumed_by(principal: str) -> tuple[type[Event], ...]:
    """The events ``principal`` reads, in catalogue order."""
    return tuple(event for event in CATALOGUE if principal in event.consumers)


def validate_fields(
    model: type[BaseModel], raw: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate ``raw`` (parsed JSON) field by field, strictly, as JSON would be.

    Returns the values that are valid and, per field, why the others are not. Unlike a plain
    ``model_validate`` this keeps the good fields, so rules over them can still run and a
    rejection can name every problem, not only the schema's.
    """
    try:
        whole = model.model_validate_json(json.dumps(raw), strict=True)
        return whole.model_dump(), {}
    except ValidationError:
        pass
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, info in model.model_fields.items():
        if name not in raw:
            if info.is_required():
                errors[name] = "field required"
            else:
                values[name] = info.get_default(call_default_factory=True)
            continue
        # Annotated with the field's metadata, so constraints such as min_length still apply.
        adapter: TypeAdapter[Any] = TypeAdapter(Annotated[info.annotation, info])  # type: ignore[arg-type]
        try:
            values[name] = adapter.validate_json(json.dumps(raw[name]), strict=True)
        except ValidationError as exc:
            errors[name] = "; ".join(err["msg"] for err in exc.errors())
    return values, errors


_DOC_KEYS = frozenset({"description", "title", "examples"})


def _shape(schema: Any) -> Any:
    """A schema without its prose, for comparing what a field accepts."""
    if isinstance(schema, dict):
        return {k: _shape(v) for k, v in schema.items() if k not in _DOC_KEYS}
    if isinstance(schema, list):
        return [_shape(v) for v in schema]
    return schema


def incompatibilities(old: dict[str, Any], new: dict[str, Any], where: str = "") -> list[str]:
    """What in ``new`` breaks a consumer or producer written against ``old``: a removed or
    retyped field, or a new required field (also inside nested models' ``$defs``)."""
    problems = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_field in old_props.items():
        if name not in new_props:
            problems.append(f"{where}{name}: removed")
        elif _shape(old_field) != _shape(new_props[name]):
            problems.append(f"{where}{name}: type changed")
    for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        problems.append(f"{where}{name}: newly required")
    for name, old_def in old.get("$defs", {}).items():
        if name not in new.get("$defs", {}):
            problems.append(f"{where}{name}: nested model removed")
        else:
            problems += incompatibilities(old_def, new["$defs"][name], f"{where}{name}.")
    return problems


def write_snapshots(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event in CATALOGUE:
        path = directory / f"{event.ce_type()}.json"
        path.write_text(json.dumps(event.model_json_schema(), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_snapshots():
        sys.stdout.write(f"wrote {written_path}\n")
