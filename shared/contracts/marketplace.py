"""What the marketplace writes (P5-P7): curation outcomes, listings, export facilitation, the
sales ledger and business class, financing referrals and the bank's answers."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shared.contracts.base import (
    MAX_COUNT,
    MAX_ITEMS,
    MAX_RUPIAH,
    Finding,
    Id,
    Instant,
    Month,
    Name,
    ParticipantEvent,
    Text,
    pii,
)

BusinessClass = Literal["mikro", "kecil", "menengah", "besar"]


class ProductCurationRejected(ParticipantEvent):
    """A curation level rejected the product; curation ends there."""

    name: ClassVar[str] = "product-curation-rejected"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("notifications",)

    product_id: Id = Field(description="The product.")
    participant_id: Id = Field(description="Its owner.")
    level: Name = Field(description="The level that rejected it.")
    notes: Text = Field(description="The reviewer's notes.", json_schema_extra=pii("free-text"))


class ProductCurated(ParticipantEvent):
    """Every level approved; the curator graded the product."""

    name: ClassVar[str] = "product-curated"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("registry",)

    product_id: Id = Field(description="The product.")
    participant_id: Id = Field(description="Its owner.")
    grade: Name = Field(description="A, B or C.")


class ProductListed(ParticipantEvent):
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


class ProductDelisted(ParticipantEvent):
    """The product left every channel (its certification lapsed)."""

    name: ClassVar[str] = "product-delisted"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ()

    product_id: Id = Field(description="The product.")
    participant_id: Id = Field(description="Its owner.")
    reason: Name = Field(description="Why, as a code.")


class ExportFacilitated(ParticipantEvent):
    """A grade-A product with steady sales and the right certificates goes international."""

    name: ClassVar[str] = "export-facilitated"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications")

    product_id: Id = Field(description="The product.")
    participant_id: Id = Field(description="Its owner.")
    programme: Name = Field(description="The export facilitation programme.")
    reasons: list[Finding] = Field(max_length=MAX_ITEMS, description="The conditions met.")


class FinancialReportRecorded(ParticipantEvent):
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


class BusinessClassChanged(ParticipantEvent):
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


class FinancingReferred(ParticipantEvent):
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


class FinancingApproved(ParticipantEvent):
    """Bank DKI approved the referral."""

    name: ClassVar[str] = "financing-approved"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications")

    referral_id: Id = Field(description="The referral.")
    participant_id: Id = Field(description="The participant.")
    amount_idr: int = Field(ge=0, le=MAX_RUPIAH, description="Amount approved.")
    bank_ref: Id = Field(description="The bank's reference.")


class FinancingDeclined(ParticipantEvent):
    """Bank DKI declined the referral."""

    name: ClassVar[str] = "financing-declined"
    producers: ClassVar[tuple[str, ...]] = ("marketplace",)
    consumers: ClassVar[tuple[str, ...]] = ("registry", "notifications")

    referral_id: Id = Field(description="The referral.")
    participant_id: Id = Field(description="The participant.")
    bank_ref: Id = Field(description="The bank's reference.")
