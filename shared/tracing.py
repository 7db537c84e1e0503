"""Tracing and log context: one participant's flow is one trace across the services.

Each event carries a W3C ``traceparent`` header in its envelope. A service that processes an
event opens a span whose parent is that traceparent, and every event it causes while that
span is current carries the span's own traceparent, so registry -> coaching -> notifications
is one trace. Spans are exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set
(off by default). Without an exporter nobody would see a span, so none is made: processing
an event only draws a span id in the cause's trace, and the events it causes carry that
(the same traceparent a span would have given them, at a fraction of the SDK's cost per
event).

The same scope names the event id, type, correlation id, participant id and trace id on every
log line written while the event is processed. Both are one context variable
(:data:`shared.logging.processed`), set and reset once per event: the log lines spell it out
when they are written (most events write none), and without an exporter the traceparent is
formatted from the cause's, with no span objects at all.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.logging import Processed, processed

if TYPE_CHECKING:  # the envelope asks this module for the current traceparent
    from shared.envelope import Envelope

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("jakpreneur")
_exporting = False  # set by configure_tracing when spans go to a collector
_SAMPLED = int(TraceFlags.SAMPLED)


def configure_tracing(service: str, otlp_endpoint: str = "") -> bool:
    """Install this process's tracer provider (once; later calls change nothing) and, when
    ``otlp_endpoint`` is given, its OTLP/HTTP exporter. True if this call installed it."""
    global _exporting
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return False
    _exporting = bool(otlp_endpoint)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def current_traceparent() -> str | None:
    """The traceparent of the current span, for the events caused within it."""
    now = processed.get()
    if now is not None and now.traceparent is not None:
        return now.traceparent
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def processing(
    envelope: Envelope, topic: str, participant_id: str | None, name: str = "process"
) -> contextlib.AbstractContextManager[None]:
    """The span and log context of processing one event (a child of the event's trace).
    With an exporter the span is current (``trace.get_current_span()``) within it."""
    if _exporting:
        return _exported_span(envelope, topic, participant_id, name)
    trace_id, flags = _trace_of(envelope.traceparent)
    span_id = random.getrandbits(64) or 1
    return _Processing(
        Processed(
            envelope, participant_id, trace_id, f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
        )
    )


class _Processing:
    """Without an exporter: the event is current (one context variable) while it lasts."""

    __slots__ = ("_now", "_token")

    def __init__(self, now: Processed) -> None:
        self._now = now

    def __enter__(self) -> None:
        self._token = processed.set(self._now)

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        processed.reset(self._token)


def _trace_of(traceparent: str | None) -> tuple[int, int]:
    """The trace id and flags of ``traceparent`` (a new sampled trace without one). The
    envelope has checked the traceparent's form (W3C) when it came from the wire."""
    if traceparent:
        try:
            _version, trace_hex, _parent, flags_hex = traceparent.split("-")
            trace_id, flags = int(trace_hex, 16), int(flags_hex, 16) & 0xFF
        except ValueError:  # not W3C's form (never from the wire): a new trace
            pass
        else:
            return trace_id or random.getrandbits(128) or 1, flags
    return random.getrandbits(128) or 1, _SAMPLED


@contextlib.contextmanager
def _exported_span(
    envelope: Envelope, topic: str, participant_id: str | None, name: str
) -> Iterator[None]:
    parent = (
        _propagator.extract({"traceparent": envelope.traceparent}) if envelope.traceparent else None
    )
    attributes = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": topic,
        "messaging.message.id": envelope.id,
        "cloudevents.event_type": envelope.type,
        "jakpreneur.correlation_id": envelope.correlation_id or envelope.id,
        "jakpreneur.participant_id": participant_id or "",
    }
    with _tracer.start_as_current_span(
        f"{topic} {name}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        # The span is current: what the event causes carries it (current_traceparent).
        now = Processed(envelope, participant_id, span.get_span_context().trace_id, None)
        token = processed.set(now)
        try:
            yield
        finally:
            processed.reset(token)
