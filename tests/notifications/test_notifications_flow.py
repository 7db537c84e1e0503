"""Notifications on the real Kafka broker and mongod, delivered to real protocol peers: an
HTTP stand-in for the WhatsApp and SMS providers and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from shared.contracts import NotificationFailed, NotificationSent
from tests import auth_helpers
from tests.notifications.fixtures import (
    NotificationsUnderTest,
    enrolled,
    jakarta,
    new_phone,
    registered,
    until,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("daytime_and_healthy_providers")]


async def waiting(notifications: NotificationsUnderTest, pid: str, status: str) -> None:
    """Until the participant's one message is in the delivery log with ``status``."""

    async def logged() -> bool:
        async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
            answer = await http.get(f"{notifications.url}/participants/{pid}/notifications")
        return [m["status"] for m in answer.json()["messages"]] == [status]

    await until(logged, what=f"a {status} message")


async def test_a_welcome_goes_out_over_whatsapp_once_however_often_delivered(
    notifications: NotificationsUnderTest,
) -> None:
    pid, phone = str(uuid.uuid4()), new_phone()
    ce_id = str(uuid.uuid4())
    for _ in range(3):
        await notifications.send(registered(pid, phone), ce_id=ce_id)
    [sent] = await notifications.wait(NotificationSent, pid)
    body = sent.json()
    assert (body["channel"], body["template"], body["cause_event_id"]) == (
        "whatsapp",
        "participant-registered",
        ce_id,
    )
    assert sent.headers["ce_causationid"] == ce_id
    [message] = notifications.delivered_to(phone)
    assert message["channel"] == "whatsapp" and message["id"] == body["provider_message_id"]
    assert message["text"].startswith("Halo Wati") and "Jakpreneur" in message["text"]
    await notifications.events.caught_up()
    assert len(notifications.of(NotificationSent, pid)) == 1
    assert len(notifications.delivered_to(phone)) == 1


async def test_transient_errors_are_retried_then_succeed(
    notifications: NotificationsUnderTest,
) -> None:
    pid, phone = str(uuid.uuid4()), new_phone()
    await notifications.control(whatsapp="500x2")
    before = notifications.providers.calls["whatsapp"]
    await notifications.send(registered(pid, phone))
    [sent] = await notifications.wait(NotificationSent, pid)
    assert sent.json()["channel"] == "whatsapp"
    assert notifications.providers.calls["whatsapp"] - before == 3  # 500, 500, then 200


async def test_a_permanent_refusal_falls_back_to_sms_then_email(
    notifications: NotificationsUnderTest,
) -> None:
    pid, phone = str(uuid.uuid4()), new_phone()
    email = f"{pid[:8]}@contoh.id"
    await notifications.control(whatsapp="400")
    await notifications.send(registered(pid, phone, email))
    [sent] = await notifications.wait(NotificationSent, pid)
    assert sent.json()["channel"] == "sms"
    assert [m["channel"] for m in notifications.delivered_to(phone)] == ["sms"]

    await notifications.control(whatsapp="400", sms="400")
    await notifications.send(enrolled(pid))
    sent_twice = await notifications.wait(NotificationSent, pid, 2)
    assert sent_twice[1].json()["channel"] == "email"
    [mail] = notifications.delivered_to(email)
    assert mail["subject"] == "Jadwal pelatihan Jakpreneur"
    assert mail["text"].startswith("Halo Wati")


async def test_a_hanging_provider_times_out_and_the_next_channel_delivers(
    notifications: NotificationsUnderTest,
) -> None:
    pid, phone = str(uuid.uuid4()), new_phone()
    await notifications.control(whatsapp="hang")
    await notifications.send(registered(pid, phone))
    [sent] = await notifications.wait(NotificationSent, pid)
    assert sent.json()["channel"] == "sms"


async def test_when_every_channel_refuses_notification_failed_lists_each(
    notifications: NotificationsUnderTest,
) -> None:
    pid, phone = str(uuid.uuid4()), new_phone()
    await notifications.control(whatsapp="400", sms="500")
    await notifications.send(registered(pid, phone))
    [failed] = await notifications.wait(NotificationFailed, pid)
    reasons = [(r["code"], r["channel"]) for r in failed.json()["reasons"]]
    assert reasons == [("provider-rejected", "whatsapp"), ("provider-unavailable", "sms")]
    assert phone not in failed.value.decode()
    assert notifications.delivered_to(phone) == []


async def test_quiet_hours_defer_until_seven(notifications: NotificationsUnderTest) -> None:
    pid, phone = str(uuid.uuid4()), new_phone()
    notifications.clock.now = jakarta(0, 22)
    await notifications.send(registered(pid, phone))
    await waiting(notifications, pid, "pending")
    await notifications.clock.read(10)  # several dispatcher rounds; quiet hours hold it back
    assert notifications.delivered_to(phone) == []
    notifications.clock.now = jakarta(1, 7, 1)
    await notifications.wait(NotificationSent, pid)
    assert len(notifications.delivered_to(phone)) == 1


async def test_at_most_five_a_day_and_the_rest_tomorrow(
    notifications: NotificationsUnderTest,
) -> None:
    pid, phone = str(uuid.uuid4()), new_phone()
    await notifications.send(registered(pid, phone))
    await notifications.wait(NotificationSent, pid)
    for _ in range(6):
        await notifications.send(enrolled(pid))
    await notifications.wait(NotificationSent, pid, 5)
    await notifications.clock.read(10)  # several dispatcher rounds: the daily limit holds
    assert len(notifications.delivered_to(phone)) == 5
    notifications.clock.now = jakarta(1, 8)
    await notifications.wait(NotificationSent, pid, 7)
    assert len(notifications.delivered_to(phone)) == 7


async def test_an_event_waits_for_its_contact_and_goes_when_it_arrives(
    notifications: NotificationsUnderTest,
) -> None:
    pid, phone = str(uuid.uuid4()), new_phone()
    await notifications.send(enrolled(pid))
    await waiting(notifications, pid, "waiting-contact")
    await notifications.clock.read(10)  # several dispatcher rounds
    assert notifications.of(NotificationSent, pid) == []
    await notifications.send(registered(pid, phone))
    sent = await notifications.wait(NotificationSent, pid, 2)
    assert sorted(s.json()["template"] for s in sent) == [
        "participant-registered",
        "training-enrolled",
    ]


async def test_a_contact_that_never_comes_fails_the_message_after_the_wait(
    notifications: NotificationsUnderTest,
) -> None:
    pid = str(uuid.uuid4())
    await notifications.send(enrolled(pid))
    await waiting(notifications, pid, "waiting-contact")
    notifications.clock.now = jakarta(0, 12)  # two hours later; the wait is one hour
    [failed] = await notifications.wait(NotificationFailed, pid)
    assert failed.json()["reasons"][0]["code"] == "no-contact"


async def test_the_delivery_log_over_http_has_no_addresses(
    notifications: NotificationsUnderTest,
) -> None:
    pid, phone = str(uuid.uuid4()), new_phone()
    await notifications.send(registered(pid, phone, "wati@contoh.id"))
    await notifications.wait(NotificationSent, pid)
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        response = await http.get(f"{notifications.url}/participants/{pid}/notifications")
    [entry] = response.json()["messages"]
    assert (entry["status"], entry["channel"], entry["template"]) == (
        "sent",
        "whatsapp",
        "participant-registered",
    )
    assert phone.removeprefix("+") not in response.text and "wati@contoh.id" not in response.text


def test_zz_no_phone_number_or_email_address_in_any_log_line(
    notifications: NotificationsUnderTest, log_file: Path
) -> None:
    text = log_file.read_text()
    assert "message deferred" in text or "contact arrived" in text  # it did log
    for message in notifications.providers.messages:
        assert message["to"].removeprefix("+")[-8:] not in text, message["channel"]
