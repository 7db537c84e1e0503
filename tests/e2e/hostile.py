"""Hypothesis strategies of hostile records for every consumed topic.

Each record is built to be refused by every service that consumes its topic: it cannot be
read (malformed or deeply nested JSON, too large, a broken, missing or repeated envelope
header, a time out of range, a type that is not its topic's) or its payload breaks its
contract (a wrong type, a number out of range, odd Unicode, a missing field). So each must
end in a DLQ entry per consuming service (keyed as it was sent) — or, on
``registration-submitted``, in a ``registration-rejected`` answer when the submission can be
answered at all.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from shared.contracts import CATALOGUE, MAX_RECORD_BYTES, Event, RegistrationSubmitted
from shared.envelope import new_envelope


@dataclass(frozen=True)
class Hostile:
    event: type[Event]  # the topic's event
    kind: str
    value: bytes
    headers: list[tuple[str, bytes | None]]
    key: bytes = b""

    def keyed(self, marker: str) -> Hostile:
        """The same record under a unique key (and submission id, where it has one)."""
        value = self.value
        if self.event is RegistrationSubmitted and self.kind in ("wrong-field", "odd-unicode"):
            body = json.loads(value)
            body["submission_id"] = marker
            value = json.dumps(body).encode()
        return Hostile(self.event, self.kind, value, self.headers, marker.encode())


def _headers(event: type[Event], **changes: str | None) -> list[tuple[str, bytes | None]]:
    headers: dict[str, str | None] = dict(
        new_envelope(type=event.ce_type(), source=event.producers[0]).headers()
    )
    headers.update(changes)
    return [
        (k, None if v is None else v.encode("utf-8", "surrogatepass")) for k, v in headers.items()
    ]


_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Odd text that no contract field takes: controls, a lone surrogate, longer than any id or
# name (odd but acceptable text, such as Arabic-Indic digits in a NIK, has its own tests).
_odd_text = st.sampled_from(
    ["\x00", "\u202e\x07", "\ud800", "\x1b[31m", "a\u0000b", "\x7f", "\U0001f4a9" * 2001]
)
_bad_time = st.sampled_from(
    [
        "9999-12-31T23:00:00-12:00",
        "0001-01-01T00:00:00+00:00",
        "1969-12-31T23:59:59+00:00",
        "2150-01-01T00:00:00+00:00",
        "2024-05-01T00:00:00",
        "yesterday",
        "",
    ]
)


def _required(event: type[Event]) -> list[str]:
    return [name for name, info in event.model_fields.items() if info.is_required()] or ["x"]


@st.composite
def hostile(draw: st.DrawFn, events: tuple[type[Event], ...]) -> Hostile:
    event = draw(st.sampled_from(events))
    kind = draw(
        st.sampled_from(
            [
                "malformed-json",
                "deep",
                "too-large",
                "wrong-field",
                "odd-unicode",
                "bad-time",
                "missing-header",
                "repeated-header",
                "null-header",
                "wrong-type",
                "not-an-object",
                "foreign-source",
            ]
        )
    )
    headers = _headers(event)
    value = b"{}"
    fields = _required(event)
    if kind == "malformed-json":
        value = b"{" + draw(st.binary(max_size=60)).replace(b"}", b"")
    elif kind == "deep":
        depth = draw(st.integers(min_value=2_000, max_value=30_000))
        value = draw(st.sampled_from([b"[" * depth, b'{"a":' * depth, b"[" * depth + b"]" * depth]))
    elif kind == "too-large":
        value = json.dumps({"x": "a" * (MAX_RECORD_BYTES + draw(st.integers(1, 5000)))}).encode()
    elif kind in ("wrong-field", "odd-unicode"):
        body = draw(st.dictionaries(st.sampled_from(list(event.model_fields)), _json, max_size=6))
        target = draw(st.sampled_from(fields))
        if kind == "wrong-field":  # a required field of a type no contract field has
            body[target] = draw(st.sampled_from([[1, 2], {"$gt": ""}, 2**64, -(2**70), None]))
        else:
            body[target] = draw(_odd_text)
        value = json.dumps(body).encode()
    elif kind == "bad-time":
        headers = _headers(event, ce_time=draw(_bad_time))
    elif kind == "missing-header":
        drop = draw(st.sampled_from(["ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion"]))
        headers = [(k, v) for k, v in headers if k != drop]
    elif kind == "repeated-header":
        other = draw(st.sampled_from([e for e in CATALOGUE if e is not event]))
        headers = [*headers, ("ce_type", other.ce_type().encode())]
    elif kind == "null-header":
        name = draw(st.sampled_from(["ce_id", "ce_type", "ce_time"]))
        headers = [(k, None if k == name else v) for k, v in headers]
    elif kind == "wrong-type":
        other = draw(st.sampled_from([e for e in CATALOGUE if e is not event]))
        headers = _headers(event, ce_type=other.ce_type())
        value = json.dumps({f: "x" for f in _required(other)}).encode()
    elif kind == "foreign-source":  # a producer passing its record off as another's
        source = draw(st.sampled_from(["portal", "bank-dki", "coaching", "fuzz", ""]))
        if source in event.producers:
            source = "fuzz"
        headers = _headers(event, ce_source=source)
        value = json.dumps({f: "x" for f in fields}).encode()
    elif kind == "not-an-object":
        value = json.dumps(draw(st.lists(_json, max_size=3) | st.integers() | st.text())).encode()
    return Hostile(event, kind, value, headers)


def generate(events: tuple[type[Event], ...], count: int, seed_value: int) -> list[Hostile]:
    """``count`` hostile records (fewer if Hypothesis runs out), reproducible from the seed;
    each with its own key."""
    found: list[Hostile] = []

    @seed(seed_value)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile(events))
    def collect(record: Hostile) -> None:
        found.append(record)

    collect()
    rng = random.Random(seed_value)
    return [r.keyed(f"fuzz-{uuid.UUID(int=rng.getrandbits(128), version=4)}") for r in found]
