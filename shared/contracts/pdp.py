"""The data subject's requests under UU 27/2022 (PDP) and every service's answers: an erasure
or a withdrawal of consent comes from the portal (or the registry), and each service says
when it has erased what it held."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from shared.contracts.base import MAX_ITEMS, Id, Instant, Name, ParticipantEvent, Text


class ParticipantErasureRequested(ParticipantEvent):
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


class ParticipantDataErased(ParticipantEvent):
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


class ConsentWithdrawn(ParticipantEvent):
    """A participant withdraws consent: processing for them stops (no enrolment, referral
    or message; pending messages are cancelled). Their data is kept until an erasure."""

    name: ClassVar[str] = "consent-withdrawn"
    producers: ClassVar[tuple[str, ...]] = ("portal", "registry")
    consumers: ClassVar[tuple[str, ...]] = ("coaching", "marketplace", "notifications", "registry")

    participant_id: Id = Field(description="Whose consent.")
    requested_by: Name = Field(description="Who asked: the participant, or an officer's id.")
    withdrawn_at: Instant = Field(description="When.")
