"""Talking to the providers: WhatsApp (Cloud API shape), an SMS HTTP API, and SMTP.

A provider's answer decides what happens next: 2xx delivered; 4xx (or an SMTP 5xx) is a
permanent refusal, so the next channel is tried; 5xx, a timeout or a refused connection is
transient and retried with bounded exponential backoff before the next channel is tried.

A 2xx whose body cannot be read (not JSON, no message id, the connection lost while reading
it) is still a delivery: the provider said it took the message, and trying again, or on the
next channel, would send it twice. The id is then "unknown" and a note says why.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage

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


UNKNOWN_MESSAGE_ID = "unknown"
BACKOFF_CAP_S = 30.0


@dataclass(frozen=True)
class Accepted:
    """A provider took the message. ``note`` says why ``message_id`` is unknown, if it is."""

    message_id: str
    note: str | None = None


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

    @property
    def worst_case_s(self) -> float:
        """The longest one channel's send can take: every attempt timing out, with the
        backoff between attempts. A dispatcher's lease must outlast it (see handlers.py)."""
        return worst_case_s(self.attempts, self.timeout_s, self.backoff_s)


def worst_case_s(attempts: int, timeout_s: float, backoff_s: float) -> float:
    """``attempts`` timeouts plus the waits between them (``wait_exponential`` below)."""
    waits = sum(min(BACKOFF_CAP_S, backoff_s * 2.0**n) for n in range(attempts - 1))
    return attempts * timeout_s + waits


class Providers:
    """aiohttp for the HTTP providers: per request it costs a fraction of httpx's CPU, which
    mattered once notifications were the pipeline's slowest stage (see docs/benchmark.md)."""

    def __init__(
        self,
        config: ProviderConfig,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,  # the waits between tries
    ) -> None:
        self.config = config
        self._sleep = sleep
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
    ) -> Accepted:
        """Deliver through ``channel``; at most ``config.worst_case_s`` seconds. The first
        attempt runs bare (nearly every send succeeds at once: no retry machinery per
        message); after a transient failure the others follow with the backoff between them
        (the first wait ``backoff_s``, then doubling: ``worst_case_s``)."""

        async def once() -> Accepted:
            if channel == "email":
                return await self._email(to, subject, body, idempotency_key)
            return await self._post(channel, to, body, idempotency_key)

        c = self.config
        try:
            return await once()
        except TransientFailure:
            if c.attempts == 1:
                raise
        await self._sleep(min(BACKOFF_CAP_S, c.backoff_s))
        async for attempt in AsyncRetrying(
            sleep=self._sleep,
            retry=retry_if_exception_type(TransientFailure),
            stop=stop_after_attempt(c.attempts - 1),
            wait=wait_exponential(multiplier=2 * c.backoff_s, max=BACKOFF_CAP_S),
            reraise=True,
        ):
            with attempt:
                return await once()
        raise AssertionError("unreachable")

    async def _post(self, channel: str, to: str, body: str, key: str) -> Accepted:
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
        status, answer = 0, b""
        try:
            async with self.http.post(
                url, json=payload, headers={**headers, "Idempotency-Key": key}
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    answer = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:  # timeouts, refused connections
            if not 200 <= status < 300:
                raise TransientFailure(f"{channel}: {type(exc).__name__}") from None
            # Accepted; only the answer was lost on the way: ``answer`` stays empty.
        if 200 <= status < 300:
            return read_answer(channel, status, answer)
        if status >= 500:
            raise TransientFailure(f"{channel}: HTTP {status}")
        raise PermanentFailure(f"{channel}: HTTP {status}")  # 4xx, or an unexpected 1xx/3xx

    async def _email(self, to: str, subject: str, body: str, key: str) -> Accepted:
        c = self.config
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = c.mail_from, to, subject
        message["Message-ID"] = message_id_for(key)
        # Not a standard header; mail servers ignore it, the local stand-in counts by it.
        message["Idempotency-Key"] = key
        message.set_content(body)
        try:
            # aiosmtplib's timeout is per command; the whole send is bounded too, so that
            # ``worst_case_s`` holds for e-mail as it does for the HTTP providers.
            async with asyncio.timeout(c.timeout_s):
                await aiosmtplib.send(
                    message, hostname=c.smtp_host, port=c.smtp_port, timeout=c.timeout_s
                )
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentFailure(f"email: SMTP {exc.code}") from None
            raise TransientFailure(f"email: SMTP {exc.code}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientFailure(f"email: {type(exc).__name__}") from None
        return Accepted(str(message["Message-ID"]))


_DOT_ATOM = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def message_id_for(key: str) -> str:
    """One Message-ID per message, the same on every attempt (mail systems that drop a
    repeated Message-ID then drop a re-send), short enough for the contract's 100-character
    ``provider_message_id``; a key that is long or not dot-atom text is hashed."""
    local = key.replace(":", ".")
    if len(local) > 80 or not _DOT_ATOM.fullmatch(local):
        local = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"<{local}@jakpreneur>"


def read_answer(channel: str, status: int, answer: bytes) -> Accepted:
    """The provider's message id from its 2xx answer, or "unknown" and why."""
    try:
        data = json.loads(answer)
        found = data["messages"][0]["id"] if channel == "whatsapp" else data["message_id"]
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):  # not the shape
        found = None
    message_id = str(found) if isinstance(found, str | int) else ""
    if 0 < len(message_id) <= 100 and message_id.isprintable():
        return Accepted(message_id)
    return Accepted(
        UNKNOWN_MESSAGE_ID,
        f"{channel}: HTTP {status}: accepted, but the answer had no readable message id",
    )
