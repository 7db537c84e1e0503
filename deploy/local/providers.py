"""A local stand-in for the message providers, so messages really go somewhere a person
can look when no real provider is configured:

- WhatsApp Business Cloud API shape: ``POST /whatsapp/{phone_number_id}/messages``
- an SMS HTTP API: ``POST /sms/messages``
- an SMTP sink (aiosmtpd) that keeps every mail it receives
- ``GET /`` lists the latest messages (HTML), ``GET /_messages`` as JSON
- ``GET /_deliveries``: per idempotency key, how many requests it *received* (whatever it
  answered) and how many it *delivered*, duplicates included. Like a real provider it
  de-duplicates by ``Idempotency-Key`` (a repeat gets the first answer and is listed once),
  but a provider without that feature would have delivered every one: a count above one is
  a duplicate the sender caused. Mails count by their ``Idempotency-Key`` header.

Tests drive it through ``POST /_control``: ``{"whatsapp": MODE, "sms": MODE, "recipients":
{"628...": MODE}}``, a recipient's mode (by number, without "+"; the map is replaced as a
whole) before its channel's. Modes: "ok"; "500" or "400"; "500x2" (answer 500 twice, then
serve); "hang" (answer after 60 s); "hold" (answer when a later control request changes the
mode, as that mode says); "unreadable" (deliver, answer 200 with an HTML body) and
"unexpected-json" (deliver, answer 200 with JSON that has no message id).
``python -m deploy.local.providers --http-port 8025 --smtp-port 2525`` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class ProviderStandIn:
    messages: list[dict[str, Any]] = field(default_factory=list)
    modes: dict[str, str] = field(default_factory=lambda: {"whatsapp": "ok", "sms": "ok"})
    recipients: dict[str, str] = field(default_factory=dict)  # number without "+" -> mode
    calls: dict[str, int] = field(default_factory=lambda: {"whatsapp": 0, "sms": 0})
    received: dict[str, int] = field(default_factory=dict)  # idempotency key -> requests
    deliveries: dict[str, int] = field(default_factory=dict)  # idempotency key -> delivered
    _ids: dict[str, str] = field(default_factory=dict)  # idempotency key -> message id
    _changed: asyncio.Event = field(default_factory=asyncio.Event)  # set on each control

    # ------------------------------------------------------------------ SMTP (aiosmtpd)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = message_from_bytes(envelope.content, policy=policy.default)
        body = mail.get_content() if isinstance(mail, EmailMessage) else mail.get_payload()
        key = str(mail.get("Idempotency-Key") or mail.get("Message-ID", ""))
        self.received[key] = self.received.get(key, 0) + 1
        self.deliveries[key] = self.deliveries.get(key, 0) + 1  # SMTP has no de-duplication
        self.messages.append(
            {
                "channel": "email",
                "to": ", ".join(envelope.rcpt_tos),
                "subject": str(mail.get("Subject", "")),
                "text": str(body).strip(),
                "id": str(mail.get("Message-ID", "")),
                "at": datetime.now(UTC).isoformat(),
            }
        )
        return "250 Message accepted for delivery"

    def start_smtp(self, port: int) -> Controller:
        controller = Controller(self, hostname="127.0.0.1", port=port)
        controller.start()
        return controller

    # ------------------------------------------------------------------- HTTP (ASGI)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if method == "POST" and path.startswith("/whatsapp/") and path.endswith("/messages"):
            status, answer = await self._provider("whatsapp", json.loads(body), headers)
        elif method == "POST" and path == "/sms/messages":
            status, answer = await self._provider("sms", json.loads(body), headers)
        elif method == "POST" and path == "/_control":
            status, answer = 200, self._control(json.loads(body))
        elif method == "GET" and path == "/_messages":
            status, answer = 200, self.messages
        elif method == "GET" and path == "/_deliveries":
            status, answer = 200, {"received": self.received, "deliveries": self.deliveries}
        elif method == "GET" and path == "/readyz":
            status, answer = 200, {"status": "ready"}
        elif method == "GET" and path == "/":
            await _respond(send, 200, self._page().encode(), "text/html; charset=utf-8")
            return
        else:
            status, answer = 404, {"error": "not found"}
        if isinstance(answer, bytes):  # "unreadable": a 200 that is not JSON
            await _respond(send, status, answer, "text/html; charset=utf-8")
            return
        await _respond(send, status, json.dumps(answer).encode(), "application/json")

    def _control(self, change: dict[str, Any]) -> dict[str, Any]:
        if "recipients" in change:
            self.recipients = {str(k).removeprefix("+"): v for k, v in change["recipients"].items()}
        self.modes.update({k: v for k, v in change.items() if k != "recipients"})
        self._changed.set()  # wakes the held requests, which look at their mode again
        self._changed = asyncio.Event()
        return {**self.modes, "recipients": self.recipients}

    def _mode(self, channel: str, to: str) -> str:
        modes, name = (self.recipients, to) if to in self.recipients else (self.modes, channel)
        mode = modes.get(name, "ok")
        if mode.startswith("500x"):  # "500x2": answer 500 twice, then serve
            left = int(mode[4:])
            modes[name] = f"500x{left - 1}" if left > 1 else "ok"
            mode = "500"
        return mode

    async def _provider(
        self, channel: str, payload: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any]:
        self.calls[channel] += 1
        key = headers.get("idempotency-key") or str(uuid.uuid4())
        self.received[key] = self.received.get(key, 0) + 1
        to = str(payload["to"]).removeprefix("+")
        while (mode := self._mode(channel, to)) == "hold":
            await self._changed.wait()
        if mode == "hang":  # longer than any client waits, short enough to end by itself
            await asyncio.sleep(60)
        if mode in ("500", "400"):
            return int(mode), {"error": {"message": f"stand-in told to answer {mode}"}}
        if channel == "whatsapp" and not headers.get("authorization", "").startswith("Bearer "):
            return 401, {"error": {"message": "missing bearer token"}}
        self.deliveries[key] = self.deliveries.get(key, 0) + 1
        if key in self._ids:  # a retried request: same answer, not a second message
            message_id = self._ids[key]
        else:
            message_id = self._ids[key] = f"{channel}-{uuid.uuid4().hex[:12]}"
            text = payload["text"]["body"] if channel == "whatsapp" else payload["text"]
            self.messages.append(
                {
                    "channel": channel,
                    "to": payload["to"],
                    "subject": "",
                    "text": text,
                    "id": message_id,
                    "at": datetime.now(UTC).isoformat(),
                }
            )
        if mode == "unreadable":
            return 200, b"<html><body>OK</body></html>"
        if mode == "unexpected-json":
            return 200, {"status": "accepted"}
        if channel == "whatsapp":
            return 200, {"messaging_product": "whatsapp", "messages": [{"id": message_id}]}
        return 200, {"message_id": message_id}

    def _page(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(m['at'][:19])}</td><td>{m['channel']}</td>"
            f"<td>{html.escape(m['to'])}</td><td>{html.escape(m['subject'])}</td>"
            f"<td>{html.escape(m['text'])}</td></tr>"
            for m in reversed(self.messages[-200:])
        )
        return (
            "<!doctype html><meta charset=utf-8><title>Jakpreneur messages</title>"
            "<h1>Latest messages (local stand-in providers)</h1>"
            "<table border=1 cellpadding=4><tr><th>at (UTC)</th><th>channel</th><th>to</th>"
            f"<th>subject</th><th>text</th></tr>{rows}</table>"
        )


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http-port", type=int, default=8025)
    parser.add_argument("--smtp-port", type=int, default=2525)
    args = parser.parse_args()
    stand_in = ProviderStandIn()
    controller = stand_in.start_smtp(args.smtp_port)
    try:
        uvicorn.run(stand_in, host="127.0.0.1", port=args.http_port, log_level="warning")
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
