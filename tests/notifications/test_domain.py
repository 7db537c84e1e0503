"""Notification rules and templates, without I/O."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.notifications import domain
from services.notifications.domain import JAKARTA, channels_for, defer_until
from services.notifications.handlers import CONSUMES, MESSAGES
from services.notifications.templates import TEMPLATE_DIR, TemplateProblem, Templates
from shared.contracts import ParticipantRegistered, TrainingEnrolled


def at(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2024, 5, day, hour, minute, tzinfo=JAKARTA)


def test_channel_order_preference_first_then_whatsapp_sms_email() -> None:
    assert channels_for("+628123", "a@b.id") == ["whatsapp", "sms", "email"]
    assert channels_for("+628123", None) == ["whatsapp", "sms"]
    assert channels_for(None, "a@b.id") == ["email"]
    assert channels_for("", None) == []
    assert channels_for("+628123", "a@b.id", preferred="email") == ["email", "whatsapp", "sms"]
    assert channels_for("+628123", None, preferred="email") == ["whatsapp", "sms"]


@pytest.mark.parametrize(
    ("now", "sent", "expected"),
    [
        (at(10), 0, None),
        (at(20, 59), 4, None),
        (at(21), 0, at(7, day=2)),  # quiet hours start at 21:00 Jakarta
        (at(23, 30), 0, at(7, day=2)),
        (at(3), 0, at(7)),
        (at(6, 59), 0, at(7)),
        (at(7), 0, None),
        (at(10), 5, at(7, day=2)),  # the daily limit: tomorrow, after quiet hours
    ],
)
def test_quiet_hours_and_daily_limit(now: datetime, sent: int, expected: datetime | None) -> None:
    assert defer_until(now.astimezone(UTC), sent, daily_limit=5) == expected


def test_quiet_hours_can_be_switched_off_or_fall_in_the_day() -> None:
    assert defer_until(at(23).astimezone(UTC), 0, 5, quiet_start=0, quiet_end=0) is None
    assert defer_until(at(12).astimezone(UTC), 0, 5, quiet_start=12, quiet_end=13) == at(13)
    assert defer_until(at(14).astimezone(UTC), 0, 5, quiet_start=12, quiet_end=13) is None
    assert defer_until(at(14).astimezone(UTC), 5, 5, quiet_start=0, quiet_end=0) == at(0, day=2)


def test_the_day_is_jakartas() -> None:
    start, end = domain.day_window(datetime(2024, 5, 1, 18, 0, tzinfo=UTC))  # 01:00 on 2 May
    assert (start, end) == (at(0, day=2), at(0, day=3))


def test_every_event_told_to_a_participant_has_a_template_in_bahasa_indonesia() -> None:
    templates = Templates(list(MESSAGES.values()))
    example = domain.example(TrainingEnrolled)
    subject, body = templates.render("training-enrolled", "Budi", example)
    assert subject and body.startswith("Halo Budi")
    assert {p.stem.removesuffix(".txt") for p in TEMPLATE_DIR.glob("*.j2")} == set(MESSAGES)
    kept_or_stopping = {"participant-contact", "participant-erasure-requested", "consent-withdrawn"}
    assert set(MESSAGES) == {e.name for e in CONSUMES} - kept_or_stopping


def test_a_missing_or_broken_template_fails_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "participant-registered.j2").write_text("Subjek: Hai\nHalo {{ nama }")
    with pytest.raises(TemplateProblem, match=r"participant-registered\.j2"):
        Templates([ParticipantRegistered], tmp_path)
    (tmp_path / "participant-registered.j2").write_text("Subjek: Hai\n{{ event.no_such_field }}")
    with pytest.raises(TemplateProblem, match="no_such_field"):
        Templates([ParticipantRegistered], tmp_path)
    with pytest.raises(TemplateProblem, match=r"training-enrolled\.j2"):
        Templates([TrainingEnrolled], tmp_path)
    (tmp_path / "training-enrolled.j2").write_text("no subject line")
    with pytest.raises(TemplateProblem, match="Subjek"):
        Templates([TrainingEnrolled], tmp_path)


def test_consent_and_erasure_markers_stop_messages_and_keep_their_first_moment() -> None:
    assert not domain.stopped({}) and not domain.erased({})
    withdrawn = {"consent_withdrawn_at": at(9)}
    assert domain.stopped(withdrawn) and not domain.erased(withdrawn)
    erased = {"erased_at": at(9)}
    assert domain.stopped(erased) and domain.erased(erased)
    first = domain.first_time(None, at(9).replace(microsecond=123456))
    assert first == at(9).replace(microsecond=123000)
    assert domain.first_time(first, at(10)) == first
