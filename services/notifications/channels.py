"""Talking to the providers: WhatsApp (Cloud API shape), an SMS HTTP API, and SMTP.

A provider's answer decides what happens next: 2xx delivered; 4xx (or an SMTP 5xx) is a
permanent refusal, so the next channel is tried; 5xx, a timeout or a refused connection is
transient and retried with bounded exponential backoff before the next channel is tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

import aiohttp
import aiosmtplib
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)


class PermanentFailure(Exception):
    """The provider refused this message; retrying it there will not help."""


class TransientFailure(Exception):
    """The provider did not answer usefully; it may later."""


@dataclass(frozen=True)
class ProviderConfig:
    whatsapp_base_url: str
    whatsapp_phone_number_id: str
    whatsapp_token: str
    sms_base_url: str
    sms_api_key: str
    smtp_host: str
    smtp_port: int
    mail_from: str
    timeout_s: float
    attempts: int
    backoff_s: float


class Providers:
    """aiohttp for the HTTP providers: per request it costs a fraction of httpx's CPU, which
    mattered once notifications were the pipeline's slowest stage (see docs/benchmark.md)."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:  # made on first use: a session belongs to the running loop
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
                connector=aiohttp.TCPConnector(limit=100),
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def send(
        self, channel: str, to: str, subject: str, body: str, idempotency_key: str
    ) -> str:
        """Deliver through ``channel``; returns the provider's message id."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TransientFailure),
            stop=stop_after_attempt(self.config.attempts),
            wait=wait_exponential(multiplier=self.config.backoff_s, max=30),
            reraise=True,
        ):
            with attempt:
                if channel == "email":
                    return await self._email(to, subject, body, idempotency_key)
                return await self._post(channel, to, body, idempotency_key)
        raise AssertionError("unreachable")

    async def _post(self, channel: str, to: str, body: str, key: str) -> str:
        c = self.config
        if channel == "whatsapp":
            url = f"{c.whatsapp_base_url}/{c.whatsapp_phone_number_id}/messages"
            headers = {"Authorization": f"Bearer {c.whatsapp_token}"}
            payload: dict[str, object] = {
                "messaging_product": "whatsapp",
                "to": to.removeprefix("+"),
                "type": "text",
                "text": {"body": body},
            }
        else:
            url, headers = f"{c.sms_base_url}/messages", {"X-API-Key": c.sms_api_key}
            payload = {"to": to, "text": body}
        try:
            async with self.http.post(
                url, json=payload, headers={**headers, "Idempotency-Key": key}
            ) as response:
                status = response.status
                data = await response.json(content_type=None) if status < 400 else None
        except (aiohttp.ClientError, TimeoutError) as exc:  # timeouts, refused connections
            raise TransientFailure(f"{channel}: {type(exc).__name__}") from None
        if status >= 500:
            raise TransientFailure(f"{channel}: HTTP {status}")
        if status >= 400:
            raise PermanentFailure(f"{channel}: HTTP {status}")
        if not isinstance(data, dict):
            raise PermanentFailure(f"{channel}: HTTP {status} with an unreadable answer")
        if channel == "whatsapp":
            return str(data["messages"][0]["id"])
        return str(data["message_id"])

    async def _email(self, to: str, subject: str, body: str, key: str) -> str:
        c = self.config
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = c.mail_from, to, subject
        message["Message-ID"] = make_msgid(idstring=key.replace(":", "."), domain="jakpreneur")
        message.set_content(body)
        try:
            await aiosmtplib.send(
                message, hostname=c.smtp_host, port=c.smtp_port, timeout=c.timeout_s
            )
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentFailure(f"email: SMTP {exc.code}") from None
            raise TransientFailure(f"email: SMTP {exc.code}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TransientFailure(f"email: {type(exc).__name__}") from None
        return str(message["Message-ID"])
