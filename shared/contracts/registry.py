"""What the registry writes (P1): a participant registered, their contact, a rejection.
Nothing personal leaves the registry except the contact, on its own compacted topic."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shared.contracts.base import (
    MAX_ITEMS,
    Email,
    Event,
    Id,
    Instant,
    Name,
    Part,
    ParticipantEvent,
    Phone,
    Text,
    pii,
)


class ParticipantRegistered(ParticipantEvent):
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


class ParticipantContact(ParticipantEvent):
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
