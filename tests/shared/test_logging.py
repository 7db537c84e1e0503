import dataclasses
import io
import json
import logging
import re

import pytest
from opentelemetry import trace

from shared.envelope import new_envelope
from shared.logging import _Repeats, configure_logging, get_logger, mask_text
from shared.tracing import configure_tracing, current_traceparent, processing


def test_pii_is_masked_in_messages_values_exceptions_and_library_logs() -> None:
    stream = io.StringIO()
    configure_logging("test", "DEBUG", stream=stream, json=True)
    log = get_logger("t")
    log.info(
        "nik 3171054512000001 phone +62 812-3456-7890 mail siti@contoh.id",
        kk="3171000000000001",
        nested={"note": "call 081234567890", "count": 3},
        email="a@b.id",
    )
    try:
        raise ValueError("bad 6281234567890")
    except ValueError:
        log.exception("failed")
    logging.getLogger("some.library").warning("user 3171054512000001")
    text = stream.getvalue()
    for secret in (
        "3171054512000001",
        "3171000000000001",
        "812-3456-7890",
        "81234567890",
        "siti@contoh.id",
        "a@b.id",
    ):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["event"] == "nik [NIK/KK] phone [PHONE] mail [EMAIL]"
    assert lines[0]["nested"] == {"note": "call [PHONE]", "count": 3}
    assert lines[0]["kk"] == "[MASKED]"
    assert "[PHONE]" in lines[1]["exception"]
    assert lines[2]["event"] == "user [NIK/KK]" and lines[2]["logger"] == "some.library"


def test_lines_written_while_an_event_is_processed_carry_its_ids_and_trace() -> None:
    stream = io.StringIO()
    configure_logging("test", "DEBUG", stream=stream, json=True)
    configure_tracing("test")
    cause = new_envelope(type="jakpreneur.participant-registered.v1", source="registry")
    log = get_logger("t")
    with processing(cause, "participant-registered", "p-42"):
        traceparent = current_traceparent()
        log.info("deciding")
        caused = cause.caused(type="x.v1", source="coaching", subject="p-42", time=cause.time)
    log.info("after")
    inside, after = (json.loads(line) for line in stream.getvalue().splitlines())
    assert traceparent is not None
    _version, trace_id, _span_id, _flags = traceparent.split("-")
    assert inside["event_id"] == cause.id and inside["correlation_id"] == cause.correlation_id
    assert inside["participant_id"] == "p-42" and inside["trace_id"] == trace_id
    assert inside["event_type"] == "jakpreneur.participant-registered.v1"
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert "event_id" not in after and "trace_id" not in after
    # The event caused inside the scope carries its span as its traceparent.
    assert caused.traceparent == traceparent
    assert caused.headers()["traceparent"] == caused.traceparent


EVENT_KEYS = ("event_id", "event_type", "correlation_id", "participant_id", "trace_id")


def test_library_lines_nested_scopes_and_a_line_own_keys() -> None:
    """The event's keys reach the libraries' lines too (the standard library's, through the
    formatter's pre-chain; FastStream's, with their ``extra``), are masked like any value,
    yield to a key the line gives itself, follow the inner of two nested scopes and come back
    to the outer one after it; none are left after."""
    stream = io.StringIO()
    configure_logging("test", "DEBUG", stream=stream, json=True)
    configure_tracing("test")
    log = get_logger("t")
    outer = dataclasses.replace(
        new_envelope(type="jakpreneur.participant-registered.v1", source="registry"),
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    inner = dataclasses.replace(  # a correlation id that looks like a NIK is masked too
        new_envelope(type="jakpreneur.training-enrolled.v1", source="coaching"),
        correlation_id="3171054512000001",
    )
    with processing(outer, "participant-registered", "p-42"):
        outer_traceparent = current_traceparent()
        logging.getLogger("some.library").info("Received")
        log.info("own", participant_id="p-7", trace_id="0" * 32)
        with processing(inner, "training-enrolled", None, name="send"):
            inner_traceparent = current_traceparent()
            log.warning("inner")
        assert current_traceparent() == outer_traceparent
        get_logger("jakpreneur.faststream").info("Processed", extra={"message_id": "m-1"})
    logging.getLogger("some.library").info("idle")
    log.info("after")
    library, own, nested, back, idle, after = (
        json.loads(line) for line in stream.getvalue().splitlines()
    )
    assert outer_traceparent is not None and inner_traceparent is not None
    assert outer_traceparent.split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert inner_traceparent.split("-")[1] != "4bf92f3577b34da6a3ce929d0e0e4736"
    expected = {
        "event_id": outer.id,
        "event_type": "jakpreneur.participant-registered.v1",
        "correlation_id": outer.correlation_id,
        "participant_id": "p-42",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }
    assert library["logger"] == "some.library" and library["event"] == "Received"
    assert back["logger"] == "jakpreneur.faststream" and back["message_id"] == "m-1"
    for line in (library, back):
        assert {key: line[key] for key in EVENT_KEYS} == expected
    assert own["participant_id"] == "p-7" and own["trace_id"] == "0" * 32  # the line's own
    assert own["event_id"] == outer.id
    assert {key: nested[key] for key in EVENT_KEYS} == {
        "event_id": inner.id,
        "event_type": "jakpreneur.training-enrolled.v1",
        "correlation_id": "[NIK/KK]",
        "participant_id": None,
        "trace_id": inner_traceparent.split("-")[1],
    }
    for line in (idle, after):
        assert not set(EVENT_KEYS) & set(line) and line["service"] == "test"
    assert current_traceparent() is None


def test_with_an_exporter_the_span_is_current_and_names_the_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exporting path: a recording span in the cause's trace is current within the
    scope (what the event causes carries it), and the log lines name its trace."""
    stream = io.StringIO()
    configure_logging("test", "DEBUG", stream=stream, json=True)
    configure_tracing("test")  # a provider that records (whichever test installed it)
    monkeypatch.setattr("shared.tracing._exporting", True)
    trace_id, parent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    cause = dataclasses.replace(
        new_envelope(type="jakpreneur.participant-registered.v1", source="registry"),
        traceparent=f"00-{trace_id}-{parent_span}-01",
    )
    with processing(cause, "participant-registered", "p-42", name="decide"):
        span = trace.get_current_span()
        assert span.is_recording()
        get_logger("t").info("deciding")
        caused = cause.caused(type="x.v1", source="coaching", subject="p-42", time=cause.time)
    assert getattr(span, "name", None) == "participant-registered decide"
    context = span.get_span_context()
    assert format(context.trace_id, "032x") == trace_id
    assert caused.traceparent == f"00-{trace_id}-{context.span_id:016x}-01"
    [line] = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {key: line[key] for key in EVENT_KEYS} == {
        "event_id": cause.id,
        "event_type": "jakpreneur.participant-registered.v1",
        "correlation_id": cause.correlation_id,
        "participant_id": "p-42",
        "trace_id": trace_id,
    }
    assert not trace.get_current_span().get_span_context().is_valid
    assert current_traceparent() is None


def test_without_an_exporter_each_hop_is_a_new_span_id_in_its_cause_trace() -> None:
    """No span is made when nobody exports them (issue 15): the caused event still names a
    span of its own in the cause's trace, with the cause's flags; a cause without a trace
    starts one; and nothing is left current after the event."""
    configure_tracing("test")  # no endpoint: nothing exported
    trace_id, parent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    cause = new_envelope(type="jakpreneur.participant-registered.v1", source="registry")
    traced = dataclasses.replace(cause, traceparent=f"00-{trace_id}-{parent_span}-00")
    spans = []
    for _ in range(2):
        with processing(traced, "participant-registered", "p-42"):
            caused = traced.caused(type="x.v1", source="coaching", subject="p-42", time=cause.time)
        assert caused.traceparent is not None
        version, trace, span, flags = caused.traceparent.split("-")
        assert (version, trace, flags) == ("00", trace_id, "00") and len(span) == 16
        spans.append(span)
    assert parent_span not in spans and spans[0] != spans[1]
    untraced = dataclasses.replace(cause, traceparent=None)
    with processing(untraced, "participant-registered", None):
        started = untraced.caused(type="x.v1", source="coaching", subject=None, time=cause.time)
    assert started.traceparent is not None and started.traceparent.split("-")[1] != "0" * 32
    assert current_traceparent() is None


def test_a_storm_of_one_warning_is_a_line_per_interval_with_a_count() -> None:
    stream = io.StringIO()
    configure_logging("test", "DEBUG", stream=stream, json=True)
    now = [1000.0]
    storm = _Repeats(interval_s=10, clock=lambda: now[0])
    logging.getLogger().handlers[0].filters = [storm]
    log = get_logger("t")
    for _ in range(500):
        log.warning("record sent to dead-letter queue", error_type="too-deep")
    log.warning("record sent to dead-letter queue", error_type="too-large")  # another error
    logging.getLogger("aiokafka").error("Unable connect to node %s", 1)
    logging.getLogger("aiokafka").error("Unable connect to node %s", 1)
    log.info("batch applied")  # below WARNING: never held back
    log.info("batch applied")
    now[0] += 11
    log.warning("record sent to dead-letter queue", error_type="too-deep")
    logging.getLogger("aiokafka").error("Unable connect to node %s", 1)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["event"], line.get("error_type"), line.get("repeated")) for line in lines] == [
        ("record sent to dead-letter queue", "too-deep", None),
        ("record sent to dead-letter queue", "too-large", None),
        ("Unable connect to node 1", None, None),
        ("batch applied", None, None),
        ("batch applied", None, None),
        ("record sent to dead-letter queue", "too-deep", 499),
        ("Unable connect to node 1 (repeated 1 times)", None, None),
    ]


def test_long_values_are_cut_and_masking_stays_correct() -> None:
    text = "x" * 40_000 + " siti@contoh.id"
    masked = "x" * 40_000 + " [EMAIL]"  # masked before it is cut: nothing straddles the cut
    assert mask_text(text) == masked[:2000] + " ... [36008 chars cut] ... " + masked[-2000:]
    run = "a." * 20_000  # a long run of e-mail characters without "@"
    assert mask_text(run[:3000] + "@contoh.id") == "[EMAIL]"
    assert mask_text("hubungi a.b+c@x.co.id atau 0812-3456-7890") == "hubungi [EMAIL] atau [PHONE]"


def test_a_trace_id_that_starts_with_sixteen_digits_is_kept_and_a_nik_in_its_place_is_not() -> None:
    stream = io.StringIO()
    configure_logging("test", "DEBUG", stream=stream, json=True)
    log = get_logger("t")
    trace_id = "8283126002272444dcc6847455974e65"  # a real trace id's shape, seen masked once
    log.info("traced", trace_id=trace_id)
    log.info("smuggled", trace_id="3171054512000001")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["trace_id"] == trace_id
    assert second["trace_id"] == "[NIK/KK]"
