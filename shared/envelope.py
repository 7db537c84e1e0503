"""CloudEvents 1.0 envelope in Kafka binary mode.

The record value is the JSON ``data``; the attributes travel as ``ce_*`` headers. An event
caused by another inherits the cause's correlation id (or the cause's id when it had none)
and names the cause in ``ce_causationid``, so a participant's whole flow can be followed;
its W3C ``traceparent`` header is the span that caused it (:mod:`shared.tracing`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from shared.contracts import in_bounds, is_plain
from shared.tracing import current_traceparent

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
_REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time")
ENVELOPE_HEADERS = frozenset(
    (*_REQUIRED, "ce_subject", "ce_correlationid", "ce_causationid", "traceparent")
)
# Ids and names in an envelope are short; its time passes the contracts' bounds.
MAX_ATTRIBUTE_CHARS = 100  # as the contracts' ids: a caused event repeats them
MAX_HEADER_BYTES = 16 * 1024  # all of a record's headers, names and values
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


class EnvelopeError(ValueError):
    """The record's headers are not a CloudEvents envelope this system can read."""


@dataclass(frozen=True)
class Envelope:
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None

    def headers(self) -> dict[str, str]:
        out = {
            "ce_specversion": SPECVERSION,
            "ce_id": self.id,
            "ce_source": self.source,
            "ce_type": self.type,
            "ce_time": self.time.isoformat(),
            "content-type": CONTENT_TYPE,
        }
        if self.subject is not None:
            out["ce_subject"] = self.subject
        if self.correlation_id is not None:
            out["ce_correlationid"] = self.correlation_id
        if self.causation_id is not None:
            out["ce_causationid"] = self.causation_id
        if self.traceparent is not None:
            out["traceparent"] = self.traceparent
        return out

    @classmethod
    def from_headers(cls, headers: Mapping[str, str | bytes]) -> Envelope:
        """Read the envelope; raise :class:`EnvelopeError` naming what is missing or wrong."""
        text = {
            k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
            for k, v in headers.items()
        }
        missing = [name for name in _REQUIRED if not text.get(name)]
        if missing:
            raise EnvelopeError(f"missing envelope headers: {', '.join(missing)}")
        size = sum(len(k) + len(v) for k, v in text.items())
        if size > MAX_HEADER_BYTES:
            raise EnvelopeError(f"headers of {size} characters; at most {MAX_HEADER_BYTES}")
        odd = sorted(
            name
            for name in ENVELOPE_HEADERS
            if len(text.get(name) or "") > MAX_ATTRIBUTE_CHARS or not is_plain(text.get(name) or "")
        )
        if odd:
            raise EnvelopeError(f"envelope headers too long or not plain text: {', '.join(odd)}")
        if text["ce_specversion"] != SPECVERSION:
            raise EnvelopeError("unsupported ce_specversion")
        try:
            time = datetime.fromisoformat(text["ce_time"])
        except ValueError as exc:
            raise EnvelopeError(f"ce_time is not an RFC 3339 time: {exc}") from None
        if time.tzinfo is None:
            raise EnvelopeError("ce_time has no UTC offset")
        try:
            time = in_bounds(time)
        except ValueError as exc:
            raise EnvelopeError(f"ce_time out of range: {exc}") from None
        traceparent = text.get("traceparent") or None
        if traceparent is not None and not _TRACEPARENT.fullmatch(traceparent):
            traceparent = None  # a broken trace context is dropped, not the event (W3C)
        return cls(
            id=text["ce_id"],
            source=text["ce_source"],
            type=text["ce_type"],
            time=time,
            subject=text.get("ce_subject") or None,
            correlation_id=text.get("ce_correlationid") or None,
            causation_id=text.get("ce_causationid") or None,
            traceparent=traceparent,
        )

    def caused(self, *, type: str, source: str, subject: str | None, time: datetime) -> Envelope:
        """The envelope of an event this one caused (in the current span's trace, else in
        the cause's)."""
        return Envelope(
            id=str(uuid.uuid4()),
            source=source,
            type=type,
            time=time,
            subject=subject,
            correlation_id=self.correlation_id or self.id,
            causation_id=self.id,
            traceparent=current_traceparent() or self.traceparent,
        )


def new_envelope(*, type: str, source: str, subject: str | None = None) -> Envelope:
    """The envelope of an event that starts a flow (e.g. a portal submission)."""
    event_id = str(uuid.uuid4())
    return Envelope(
        id=event_id,
        source=source,
        type=type,
        time=datetime.now(UTC),
        subject=subject,
        correlation_id=event_id,
        traceparent=current_traceparent(),
    )


@dataclass(frozen=True)
class OutgoingEvent:
    """A fully addressed record, ready for the outbox or the broker."""

    topic: str
    key: str
    envelope: Envelope
    value: bytes | None  # None: a tombstone (a compacted topic forgets the key)

    @classmethod
    def of(cls, data: BaseModel, *, topic: str, key: str, envelope: Envelope) -> OutgoingEvent:
        return cls(topic=topic, key=key, envelope=envelope, value=data.model_dump_json().encode())

    @classmethod
    def caused_by(
        cls,
        cause: Envelope,
        data: Any,
        *,
        topic: str,
        key: str,
        source: str,
        subject: str | None,
        time: datetime,
    ) -> OutgoingEvent:
        """An event ``cause`` led to; ``data`` is a contract (it knows its ``ce_type``)."""
        envelope = cause.caused(type=data.ce_type(), source=source, subject=subject, time=time)
        return cls.of(data, topic=topic, key=key, envelope=envelope)

    @classmethod
    def tombstone(
        cls, cause: Envelope, event: Any, *, topic: str, key: str, source: str, time: datetime
    ) -> OutgoingEvent:
        """A record with ``key`` and no value, on the topic of ``event`` (a contract class)
        and with its ``ce_type``: a compacted topic then forgets the key's earlier records."""
        envelope = cause.caused(type=event.ce_type(), source=source, subject=key, time=time)
        return cls(topic=topic, key=key, envelope=envelope, value=None)

    def to_document(self) -> dict[str, Any]:
        """How the outbox stores it: ``_id`` is the event id, so a retry cannot duplicate it."""
        return {
            "_id": self.envelope.id,
            "topic": self.topic,
            "key": self.key,
            "headers": self.envelope.headers(),
            "value": self.value,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> OutgoingEvent:
        return cls(
            topic=doc["topic"],
            key=doc["key"],
            envelope=Envelope.from_headers(doc["headers"]),
            value=None if doc["value"] is None else bytes(doc["value"]),
        )
