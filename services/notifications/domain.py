"""Which channel, when, and what text: the notification rules. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo

from pydantic import BaseModel

JAKARTA = ZoneInfo("Asia/Jakarta")
Channel = Literal["whatsapp", "sms", "email"]
CHANNEL_ORDER: tuple[Channel, ...] = ("whatsapp", "sms", "email")


def channels_for(
    phone: str | None, email: str | None, preferred: str | None = None
) -> list[Channel]:
    """Preference first, else WhatsApp, SMS (both need a phone), then e-mail: the order in
    which a permanent failure falls through to the next."""
    usable: list[Channel] = [c for c in CHANNEL_ORDER if (phone if c != "email" else email)]
    for channel in usable:
        if channel == preferred:
            usable.remove(channel)
            usable.insert(0, channel)
            break
    return usable


def _local_at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=JAKARTA)


def day_window(now: datetime) -> tuple[datetime, datetime]:
    """The Jakarta calendar day ``now`` falls in, as aware datetimes."""
    day = now.astimezone(JAKARTA).date()
    return _local_at(day, 0), _local_at(day + timedelta(days=1), 0)


def defer_until(
    now: datetime, sent_today: int, daily_limit: int, quiet_start: int = 21, quiet_end: int = 7
) -> datetime | None:
    """When a message due ``now`` may go out instead, or None if it may go now.

    Quiet hours (21:00-07:00 Jakarta; equal hours mean none) push it to their end; past the
    daily limit it waits for the next day, after that day's quiet hours."""
    local = now.astimezone(JAKARTA)
    overnight = quiet_start > quiet_end
    if quiet_start != quiet_end and (
        (overnight and (local.hour >= quiet_start or local.hour < quiet_end))
        or (not overnight and quiet_start <= local.hour < quiet_end)
    ):
        after = local.date() + timedelta(days=1 if local.hour >= quiet_end else 0)
        return _local_at(after, quiet_end)
    if sent_today >= daily_limit:
        next_day = local.date() + timedelta(days=1)
        overnight_quiet = quiet_start != quiet_end and overnight
        return _local_at(next_day, quiet_end if overnight_quiet else 0)
    return None


# ------------------------------------------------------------------- PDP (UU 27/2022)
# Notifications holds a participant's first name, phone and e-mail (the contact book), and
# messages about them: "name" and "contact" are what an erasure takes. What stays: which
# templates went out, on which channel, when, with what status (delivery statistics).

ERASED_CATEGORIES = ("name", "contact")


def stopped(marker: Mapping[str, Any]) -> bool:
    """Consent withdrawn or data erased: no message is sent to the participant any more."""
    return marker.get("consent_withdrawn_at") is not None or erased(marker)


def erased(marker: Mapping[str, Any]) -> bool:
    return marker.get("erased_at") is not None


def first_time(earlier: datetime | None, now: datetime) -> datetime:
    """When a marker was first set: a repeat keeps it (``now`` at MongoDB's precision, so a
    repeat reports the same moment as the first)."""
    if earlier is not None:
        return earlier
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def split_message(text: str) -> tuple[str, str]:
    """A rendered template is ``Subjek: <subject>`` on its first line, then the body."""
    first, _, body = text.partition("\n")
    subject = first.removeprefix("Subjek:").strip()
    return subject, body.strip()


def example(model: type[BaseModel]) -> dict[str, Any]:
    """A plausible instance of a contract, as JSON data: templates are rendered against it
    at start-up, so a template naming a field that does not exist fails there."""
    return {name: _example(info.annotation) for name, info in model.model_fields.items()}


def _example(annotation: Any) -> Any:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return args[0]
    if origin is list:
        return [_example(args[0])]
    if args and type(None) in args:  # Optional[X]
        return _example(next(a for a in args if a is not type(None)))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return example(annotation)
    samples: dict[Any, Any] = {
        str: "contoh",
        int: 1,
        float: 0.75,
        bool: True,
        datetime: "2024-05-01T09:00:00+07:00",
        date: "2024-05-01",
    }
    return samples.get(annotation, "contoh")
