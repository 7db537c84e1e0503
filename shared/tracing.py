"""Tracing and log context: one participant's flow is one trace across the services.

Each event carries a W3C ``traceparent`` header in its envelope. A service that processes an
event opens a span whose parent is that traceparent, and every event it causes while that
span is current carries the span's own traceparent, so registry -> coaching -> notifications
is one trace. Spans are exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set
(off by default). Without an exporter nobody would see a span, so none is made: processing
an event only draws a span id in the cause's trace, and the events it causes carry that
(the same traceparent a span would have given them, at a fraction of the SDK's cost per
event).

The same scope binds the event id, type, correlation id, participant id and trace id to every
log line written while the event is processed.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:  # the envelope asks this module for the current traceparent
    from shared.envelope import Envelope

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("jakpreneur")
_exporting = False  # set by configure_tracing when spans go to a collector
# Without an exporter: the traceparent of the event being processed, for what it causes.
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)


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
    if (light := _current.get()) is not None:
        return light
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def processing(
    envelope: Envelope, topic: str, participant_id: str | None, name: str = "process"
) -> Iterator[Span]:
    """The span and log context of processing one event (a child of the event's trace)."""
    if _exporting:
        with _exported_span(envelope, topic, participant_id, name) as span:
            yield span
        return
    span = _span_id_in_trace(envelope.traceparent)
    context = span.get_span_context()
    token = _current.set(
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    )
    try:
        with _log_context(envelope, participant_id, context.trace_id):
            yield span
    finally:
        _current.reset(token)


def _span_id_in_trace(traceparent: str | None) -> Span:
    """A new span id in ``traceparent``'s trace (a new trace without one), recording nothing.
    The envelope has checked the traceparent's form (W3C) when it came from the wire."""
    span_id = random.getrandbits(64) or 1
    trace_id, flags = random.getrandbits(128) or 1, int(TraceFlags.SAMPLED)
    with contextlib.suppress(ValueError):  # not W3C's form (never from the wire): a new trace
        _version, trace_hex, _parent, flags_hex = (traceparent or "").split("-")
        trace_id, flags = int(trace_hex, 16) or trace_id, int(flags_hex, 16) & 0xFF
    return NonRecordingSpan(SpanContext(trace_id, span_id, False, TraceFlags(flags)))


@contextlib.contextmanager
def _exported_span(
    envelope: Envelope, topic: str, participant_id: str | None, name: str
) -> Iterator[Span]:
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
    with (
        _tracer.start_as_current_span(
            f"{topic} {name}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span,
        _log_context(envelope, participant_id, span.get_span_context().trace_id),
    ):
        yield span


def _log_context(
    envelope: Envelope, participant_id: str | None, trace_id: int
) -> contextlib.AbstractContextManager[None]:
    return structlog.contextvars.bound_contextvars(
        event_id=envelope.id,
        event_type=envelope.type,
        correlation_id=envelope.correlation_id or envelope.id,
        participant_id=participant_id,
        trace_id=format(trace_id, "032x") if trace_id else None,
    )
