"""A local stand-in for the message providers, so messages really go somewhere a person
can look when no real provider is configured:

- WhatsApp Business Cloud API shape: ``POST /whatsapp/{phone_number_id}/messages``
- an SMS HTTP API: ``POST /sms/messages``
- an SMTP sink (aiosmtpd) that keeps every mail it receives
- ``GET /`` lists the latest messages (HTML), ``GET /_messages`` as JSON

Tests drive it through ``POST /_control`` ({"whatsapp": "ok" | "500" | "500x2" | "400" |
"hang", ...}; "500x2" fails the next two requests, then serves).
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
    calls: dict[str, int] = field(default_factory=lambda: {"whatsapp": 0, "sms": 0})
    _ids: dict[str, str] = field(default_factory=dict)  # idempotency key -> message id

    # ------------------------------------------------------------------ SMTP (aiosmtpd)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = message_from_bytes(envelope.content, policy=policy.default)
        body = mail.get_content() if isinstance(mail, EmailMessage) else mail.get_payload()
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
            self.modes.update(json.loads(body))
            status, answer = 200, dict(self.modes)
        elif method == "GET" and path == "/_messages":
            status, answer = 200, self.messages
        elif method == "GET" and path == "/readyz":
            status, answer = 200, {"status": "ready"}
        elif method == "GET" and path == "/":
            await _respond(send, 200, self._page().encode(), "text/html; charset=utf-8")
            return
        else:
            status, answer = 404, {"error": "not found"}
        await _respond(send, status, json.dumps(answer).encode(), "application/json")

    async def _provider(
        self, channel: str, payload: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any]:
        self.calls[channel] += 1
        mode = self.modes.get(channel, "ok")
        if mode.startswith("500x"):  # "500x2": answer 500 twice, then serve
            left = int(mode[4:])
            self.modes[channel] = f"500x{left - 1}" if left > 1 else "ok"
            mode = "500"
        if mode == "hang":  # longer than any client waits, short enough to end by itself
            await asyncio.sleep(60)
        if mode in ("500", "400"):
            return int(mode), {"error": {"message": f"stand-in told to answer {mode}"}}
        if channel == "whatsapp" and not headers.get("authorization", "").startswith("Bearer "):
            return 401, {"error": {"message": "missing bearer token"}}
        key = headers.get("idempotency-key") or str(uuid.uuid4())
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
