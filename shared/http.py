"""HTTP on the FastStream ASGI app: probes, JSON responses, routes with path parameters, and
who may call them.

``AsgiFastStream`` routes exact paths only; :class:`ServiceApp` adds ``/a/{name}`` routes so
a service can expose ``GET /participants/{participant_id}`` on the same app and port.

Every request passes one gate here (:meth:`ServiceApp.__call__`), so no service can forget
it: the probes and ``/metrics`` (:data:`OPEN_PATHS`) and a service's ``open_routes`` (files
with no data behind them) are open; anything else, the AsyncAPI docs and unknown paths
included, needs a valid bearer token (:mod:`shared.auth`), else 401. A :class:`Route` names
the resource it reads; the gate answers 403 when the token's role does not read it, and
404 when the participant in the path is outside the token's scope, the same answer as for
a participant that does not exist (whether someone is in the programme is private). A
route without a participant in its path reads many: the gate narrows its query to the
scope (:func:`shared.auth.narrow`, 403 when the query asks for more) and the handler gets
the narrowed filters. Handlers get a :class:`Request`: parameters, principal, filters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import Receive, Scope, Send

from shared import auth
from shared.logging import get_logger

log = get_logger(__name__)

# Open to anyone who reaches the port: they say whether the process serves, never a record.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
OpenHandler = Callable[[dict[str, str]], Awaitable[AsgiResponse]]
SubjectLookup = Callable[[str], Awaitable[auth.Subject | None]]


@dataclass(frozen=True)
class Request:
    params: dict[str, str]  # path and query parameters; a path parameter wins
    principal: auth.Principal
    # For a route over many participants: the filters the principal's scope holds it to.
    scope_filters: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)  # a POST's JSON object


Handler = Callable[[Request], Awaitable[AsgiResponse]]


@dataclass(frozen=True)
class Route:
    template: str  # e.g. "/participants/{participant_id}/coaching"
    reads: auth.Resource
    handler: Handler
    missing: str = "not found"  # the 404 text, also for a participant outside the scope
    # "GET" (HEAD too) or "POST": one path may have a route of each; a POST's body is a
    # JSON object of at most MAX_BODY_BYTES, read only once the token reaches the route.
    method: str = "GET"


MAX_BODY_BYTES = 16 * 1024


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> AsgiResponse:
    return AsgiResponse(
        json.dumps(body, default=str).encode(),
        status,
        {"content-type": "application/json", **(headers or {})},
    )


def document_response(doc: dict[str, Any] | None, missing: str) -> AsgiResponse:
    """A stored document by id as JSON (``_id`` named ``participant_id``), or 404."""
    if doc is None:
        return json_response({"error": missing}, 404)
    return json_response({"participant_id": doc.pop("_id"), **doc})


def _compile(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _refusal(exc: Exception) -> AsgiResponse:
    if isinstance(exc, auth.Unauthenticated):
        challenge = 'Bearer realm="jakpreneur"'
        if not isinstance(exc, auth.NoToken):
            challenge += ', error="invalid_token"'
        return json_response({"error": str(exc)}, 401, {"www-authenticate": challenge})
    if isinstance(exc, auth.Forbidden):
        challenge = 'Bearer realm="jakpreneur", error="insufficient_scope"'
        return json_response({"error": str(exc)}, 403, {"www-authenticate": challenge})
    return json_response({"error": str(exc)}, 503, {"retry-after": "5"})


class ServiceApp(AsgiFastStream):
    def __init__(
        self,
        *args: Any,
        authenticator: auth.Authenticator,
        path_routes: Sequence[Route] = (),
        open_routes: Sequence[tuple[str, OpenHandler]] = (),
        subject_of: SubjectLookup | None = None,
        **kwargs: Any,
    ) -> None:
        """``subject_of`` finds what the service knows of a participant's city, kecamatan,
        pendamping and referral; without it only the scopes decided on the participant id
        (ops, dinas, the participant themself) reach its per-participant routes."""
        super().__init__(*args, **kwargs)
        self.authenticator = authenticator
        self.path_routes = [(_compile(route.template), route) for route in path_routes]
        self.open_routes = [(_compile(template), handler) for template, handler in open_routes]
        self.subject_of = subject_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await super().__call__(scope, receive, send)
            return
        response = await self._open(scope)
        if response is None:
            try:
                response = await self._guarded(scope, receive)
            except (auth.Unauthenticated, auth.Forbidden, auth.AuthUnavailable) as exc:
                if not isinstance(exc, auth.Unauthenticated):
                    log.info("request refused", path=scope["path"], reason=str(exc))
                response = _refusal(exc)
        if response is None:  # the AsyncAPI docs, or FastStream's 404
            await super().__call__(scope, receive, send)
        else:
            await response(scope, receive, send)

    async def _open(self, scope: Scope) -> AsgiResponse | None:
        for pattern, handler in self.open_routes:
            match = pattern.fullmatch(scope["path"])
            if match is not None:
                if scope["method"] not in ("GET", "HEAD"):
                    return json_response({"error": "method not allowed"}, 405)
                return await handler({**self._query(scope), **match.groupdict()})
        return None

    @staticmethod
    def _query(scope: Scope) -> dict[str, str]:
        return dict(parse_qsl(scope.get("query_string", b"").decode()))

    async def _guarded(self, scope: Scope, receive: Receive) -> AsgiResponse | None:
        principal = await self.authenticator.authenticate(_header(scope, b"authorization"))
        path_matched = False
        for pattern, route in self.path_routes:
            match = pattern.fullmatch(scope["path"])
            if match is None:
                continue
            path_matched = True
            if scope["method"] not in (
                ("GET", "HEAD") if route.method == "GET" else (route.method,)
            ):
                continue  # another route of the path may take this method
            auth.authorize(principal, route.reads)
            params = {**self._query(scope), **match.groupdict()}
            if "participant_id" in match.groupdict():
                if not await self._reaches(principal, params["participant_id"]):
                    log.info(
                        "request refused",
                        route=route.template,
                        role=principal.role_name,
                        reason="participant outside the token's scope",
                    )
                    return json_response({"error": route.missing}, 404)
                body: Mapping[str, Any] = {}
                if route.method == "POST":
                    read = await _json_body(receive)
                    if isinstance(read, AsgiResponse):
                        return read
                    body = read
                return await route.handler(Request(params, principal, body=body))
            filters = auth.narrow(principal, params)
            return await route.handler(Request(params, principal, filters))
        if path_matched:
            return json_response({"error": "method not allowed"}, 405)
        auth.authorize(principal, "docs")  # the AsyncAPI docs; anything else is a 404
        return None

    async def _reaches(self, principal: auth.Principal, participant_id: str) -> bool:
        if not auth.needs_subject(principal):
            return auth.in_scope(principal, auth.Subject(participant_id))
        subject = None if self.subject_of is None else await self.subject_of(participant_id)
        return subject is not None and auth.in_scope(principal, subject)


async def _json_body(receive: Receive) -> dict[str, Any] | AsgiResponse:
    """A request's body as a JSON object (none: an empty one), or the 4xx that says why not."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return json_response({"error": "request body incomplete"}, 400)
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return json_response({"error": f"body larger than {MAX_BODY_BYTES} bytes"}, 413)
        chunks.append(chunk)
        more = bool(message.get("more_body", False))
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return json_response({"error": "body is not JSON"}, 400)
    if not isinstance(body, dict):
        return json_response({"error": "body is not a JSON object"}, 400)
    return body


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
