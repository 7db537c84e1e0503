"""HTTP on the FastStream ASGI app: probes, JSON responses and routes with path parameters.

``AsgiFastStream`` routes exact paths only; :class:`ServiceApp` adds ``/a/{name}`` routes so
a service can expose ``GET /participants/{participant_id}`` on the same app and port. Their
handlers get the path and query parameters in one dict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import Receive, Scope, Send

PathHandler = Callable[[dict[str, str]], Awaitable[AsgiResponse]]


def json_response(body: Any, status: int = 200) -> AsgiResponse:
    return AsgiResponse(
        json.dumps(body, default=str).encode(), status, {"content-type": "application/json"}
    )


def document_response(doc: dict[str, Any] | None, missing: str) -> AsgiResponse:
    """A stored document by id as JSON (``_id`` named ``participant_id``), or 404."""
    if doc is None:
        return json_response({"error": missing}, 404)
    return json_response({"participant_id": doc.pop("_id"), **doc})


def _compile(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)))


class ServiceApp(AsgiFastStream):
    def __init__(
        self, *args: Any, path_routes: Sequence[tuple[str, PathHandler]] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.path_routes = [(_compile(template), handler) for template, handler in path_routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for pattern, handler in self.path_routes:
                match = pattern.fullmatch(scope["path"])
                if match is None:
                    continue
                if scope["method"] not in ("GET", "HEAD"):
                    response = json_response({"error": "method not allowed"}, 405)
                else:  # query parameters too; a path parameter wins over one of them
                    query = dict(parse_qsl(scope.get("query_string", b"").decode()))
                    response = await handler({**query, **match.groupdict()})
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def probes(
    ready: Callable[[], Awaitable[dict[str, bool]]],
    waiting: Callable[[], list[dict[str, object]]] = list,
) -> list[tuple[str, Any]]:
    """``/healthz``: the process serves. ``/readyz``: every dependency answers and nothing
    is waiting out an outage (``waiting_for`` says what, e.g. auth refused while MongoDB
    still answers pings)."""

    @get(include_in_schema=False)
    async def healthz(scope: Scope) -> AsgiResponse:
        return json_response({"status": "ok"})

    @get(include_in_schema=False)
    async def readyz(scope: Scope) -> AsgiResponse:
        checks, waits = await ready(), waiting()
        ok = all(checks.values()) and not waits
        body = {"status": "ready" if ok else "not-ready", "checks": checks, "waiting_for": waits}
        return json_response(body, 200 if ok else 503)

    return [("/healthz", healthz), ("/readyz", readyz)]
