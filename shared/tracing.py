"""Tracing and log context: one participant's flow is one trace across the services.

Each event carries a W3C ``traceparent`` header in its envelope. A service that processes an
event opens a span whose parent is that traceparent, and every event it causes while that
span is current carries the span's own traceparent, so registry -> coaching -> notifications
is one trace. Spans are exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set
(off by default); without an exporter they still give every event its traceparent.

The same scope binds the event id, type, correlation id, participant id and trace id to every
log line written while the event is processed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:  # the envelope asks this module for the current traceparent
    from shared.envelope import Envelope

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("jakpreneur")


def configure_tracing(service: str, otlp_endpoint: str = "") -> bool:
    """Install this process's tracer provider (once; later calls change nothing) and, when
    ``otlp_endpoint`` is given, its OTLP/HTTP exporter. True if this call installed it."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def current_traceparent() -> str | None:
    """The traceparent of the current span, for the events caused within it."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def processing(
    envelope: Envelope, topic: str, participant_id: str | None, name: str = "process"
) -> Iterator[Span]:
    """The span and log context of processing one event (a child of the event's trace)."""
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
        trace_id = span.get_span_context().trace_id
        with structlog.contextvars.bound_contextvars(
            event_id=envelope.id,
            event_type=envelope.type,
            correlation_id=envelope.correlation_id or envelope.id,
            participant_id=participant_id,
            trace_id=format(trace_id, "032x") if trace_id else None,
        ):
            yield span
