"""CloudEvents 1.0 envelope in Kafka binary mode.

The record value is the JSON ``data``; the attributes travel as ``ce_*`` headers. An event
caused by another inherits the cause's correlation id (or the cause's id when it had none)
and names the cause in ``ce_causationid``, so a participant's whole flow can be followed;
its W3C ``traceparent`` header is the span that caused it (:mod:`shared.tracing`).

Business time. ``ce_time`` is when an event was published. When the fact it records
happened, in the programme's calendar, travels in the CloudEvents extension attribute
``businesstime`` (header ``ce_businesstime``, RFC 3339 with an offset):

- a producer of an inbound fact sets it from the fact's own time (``recorded_at``,
  ``session_at``, ``issued_at``, the end of a sales month, ...) with
  ``new_envelope(business_time=...)``; without it the fact happened when it was published;
- an event caused by another carries its cause's business time (the cause's ``ce_time`` when
  the cause had none), set here in :meth:`Envelope.caused`, the one builder every service
  uses, like the correlation id; never later than its own ``ce_time``;
- readers take :attr:`Envelope.occurred_at`: the business time, else ``ce_time``.

So time-in-stage measures the programme, not the pipeline: a backlog worked off a day late,
or a simulated year played in minutes, dates each stage when its cause happened. The
header is checked like ``ce_time`` (RFC 3339 with an offset, within the contracts' bounds
[2000, 2100)) and may not lie more than :data:`BUSINESS_TIME_AHEAD` after its own
``ce_time`` (a fact is not published before it happens); a record that breaks this is
refused (``invalid-envelope``, to the DLQ) rather than dated wrongly. See
docs/business-time.md.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel

from shared.contracts import in_bounds, is_plain
from shared.tracing import current_traceparent

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
_REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time")
BUSINESS_TIME = "ce_businesstime"  # the CloudEvents extension attribute ``businesstime``
# Every header of the envelope, what it says (for the AsyncAPI documents), in order.
HEADERS: Mapping[str, str] = {
    "ce_specversion": "CloudEvents version, `1.0`.",
    "ce_id": "The event's unique id; a consumer drops a repeat by it.",
    "ce_source": "The service or internal system that produced it.",
    "ce_type": "`jakpreneur.<event>.v<major>`: the contract, one per topic.",
    "ce_time": "When the event was published (RFC 3339, UTC).",
    "ce_subject": "The participant the event is about, where it is about one.",
    "ce_correlationid": "The id of the event that started the flow.",
    "ce_causationid": "The id of the event that caused this one.",
    "traceparent": "W3C trace context of the span that produced it.",
    BUSINESS_TIME: "Extension attribute `businesstime`: when the fact happened in the "
    "programme's calendar (RFC 3339 with offset); a caused event carries its cause's. "
    "Absent: `ce_time`.",
}
ENVELOPE_HEADERS = frozenset(HEADERS)
# How far a business time may lie after its own ce_time (clock skew between producers).
BUSINESS_TIME_AHEAD = timedelta(minutes=5)
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
    business_time: datetime | None = None  # ce_businesstime; None: it happened at ``time``

    @property
    def occurred_at(self) -> datetime:
        """When the fact happened in the programme's calendar: the business time, else the
        time of publication."""
        return self.business_time or self.time

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
        if self.business_time is not None:
            out[BUSINESS_TIME] = self.business_time.isoformat()
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
        time = _read_time(text["ce_time"], "ce_time")
        business_time = None
        if text.get(BUSINESS_TIME):
            business_time = _read_time(text[BUSINESS_TIME], BUSINESS_TIME)
            if business_time > time + BUSINESS_TIME_AHEAD:
                raise EnvelopeError(f"{BUSINESS_TIME} is later than ce_time")
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
            business_time=business_time,
        )

    def caused(self, *, type: str, source: str, subject: str | None, time: datetime) -> Envelope:
        """The envelope of an event this one caused (in the current span's trace, else in
        the cause's), at ``time``, with the cause's business time: it happened, in the
        programme's calendar, when its cause did (but not after ``time``)."""
        return Envelope(
            id=str(uuid.uuid4()),
            source=source,
            type=type,
            time=time,
            subject=subject,
            correlation_id=self.correlation_id or self.id,
            causation_id=self.id,
            traceparent=current_traceparent() or self.traceparent,
            business_time=min(self.occurred_at, time),
        )


def _read_time(text: str, name: str) -> datetime:
    """An RFC 3339 time with an offset, within the contracts' bounds, in UTC."""
    try:
        time = datetime.fromisoformat(text)
    except ValueError as exc:
        raise EnvelopeError(f"{name} is not an RFC 3339 time: {exc}") from None
    if time.tzinfo is None:
        raise EnvelopeError(f"{name} has no UTC offset")
    try:
        return in_bounds(time)
    except ValueError as exc:
        raise EnvelopeError(f"{name} out of range: {exc}") from None


def new_envelope(
    *,
    type: str,
    source: str,
    subject: str | None = None,
    business_time: datetime | None = None,
) -> Envelope:
    """The envelope of an event that starts a flow (e.g. a portal submission); an inbound
    fact's producer gives ``business_time``, when the fact happened (its ``*_at``), where
    that is not now. ValueError if it lies outside the contracts' bounds or in the future."""
    event_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    if business_time is not None:
        business_time = in_bounds(business_time)
        if business_time > now + BUSINESS_TIME_AHEAD:
            raise ValueError("a business time may not lie in the future")
    return Envelope(
        id=event_id,
        source=source,
        type=type,
        time=now,
        subject=subject,
        correlation_id=event_id,
        traceparent=current_traceparent(),
        business_time=business_time,
    )


class Deployment(Protocol):
    """What addresses a service's events: its name (``ce_source``) and its topics."""

    service_name: str

    def topic(self, name: str) -> str: ...


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
    def about(
        cls, cause: Envelope, data: Any, participant_id: str, by: Deployment, time: datetime
    ) -> OutgoingEvent:
        """An event of service ``by`` about participant ``participant_id`` (its key and
        subject), caused by ``cause``, on ``by``'s topic for ``data``: the one way the
        services build what they publish about a participant."""
        return cls.caused_by(
            cause,
            data,
            topic=by.topic(data.name),
            key=participant_id,
            source=by.service_name,
            subject=participant_id,
            time=time,
        )

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
