"""What notifications writes: a message sent, or every failed attempt."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shared.contracts.base import MAX_ITEMS, Id, Name, Part, ParticipantEvent, Text


class NotificationSent(ParticipantEvent):
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


class NotificationFailed(ParticipantEvent):
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
