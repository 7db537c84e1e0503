from datetime import UTC, datetime

import pytest

from shared.envelope import Envelope, EnvelopeError, OutgoingEvent, new_envelope


def test_headers_round_trip() -> None:
    e = new_envelope(type="jakpreneur.x.v1", source="portal", subject="p1")
    headers = e.headers()
    assert headers["ce_specversion"] == "1.0"
    assert headers["content-type"] == "application/json"
    assert Envelope.from_headers({k: v.encode() for k, v in headers.items()}) == e


def test_a_caused_event_carries_the_flow() -> None:
    cause = Envelope(id="c1", source="portal", type="t", time=datetime.now(UTC))
    effect = cause.caused(type="u", source="registry", subject="p", time=datetime.now(UTC))
    assert (effect.correlation_id, effect.causation_id) == ("c1", "c1")
    further = effect.caused(type="v", source="coaching", subject="p", time=datetime.now(UTC))
    assert (further.correlation_id, further.causation_id) == ("c1", effect.id)
    assert len({cause.id, effect.id, further.id}) == 3


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing envelope headers: ce_specversion, ce_id, ce_source, ce_type, ce_time"),
        (
            {
                "ce_specversion": "0.3",
                "ce_id": "1",
                "ce_source": "s",
                "ce_type": "t",
                "ce_time": "2024-05-01T00:00:00+07:00",
            },
            "unsupported ce_specversion",
        ),
        (
            {
                "ce_specversion": "1.0",
                "ce_id": "1",
                "ce_source": "s",
                "ce_type": "t",
                "ce_time": "yesterday",
            },
            "ce_time is not an RFC 3339 time",
        ),
        (
            {
                "ce_specversion": "1.0",
                "ce_id": "1",
                "ce_source": "s",
                "ce_type": "t",
                "ce_time": "2024-05-01T00:00:00",
            },
            "ce_time has no UTC offset",
        ),
    ],
)
def test_unreadable_envelopes_say_why(headers: dict[str, str], message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        Envelope.from_headers(headers)


def test_outbox_document_round_trip() -> None:
    e = new_envelope(type="jakpreneur.x.v1", source="registry", subject="p1")
    event = OutgoingEvent(topic="x", key="p1", envelope=e, value=b'{"a":1}')
    doc = event.to_document()
    assert doc["_id"] == e.id
    assert OutgoingEvent.from_document(doc) == event


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ce_id": "x" * 101}, "ce_id"),
        ({"ce_source": "portal\x01"}, "ce_source"),
        ({"ce_subject": "\ud800"}, "ce_subject"),
        ({"x-padding": "p" * 17_000}, "headers of"),
        ({"ce_time": "9999-12-31T23:00:00-12:00"}, "ce_time out of range"),
    ],
)
def test_envelope_attributes_are_bounded_like_the_contracts_ids(
    change: dict[str, str], message: str
) -> None:
    headers = new_envelope(type="jakpreneur.x.v1", source="portal").headers() | change
    with pytest.raises(EnvelopeError, match=message):
        Envelope.from_headers(headers)
