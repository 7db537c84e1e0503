"""The AsyncAPI 3.0 documents of the event backbone, generated from the contract catalogue.

One builder makes both kinds:

- the system-wide document, ``docs/asyncapi.yaml`` (``python -m tools.asyncapi`` writes it,
  a test checks it is fresh): every topic under a ``{prefix}`` parameter, every producer and
  consumer, the servers of a local stack, of the compose stack and of production;
- each service's part, served at ``/docs/asyncapi`` (HTML) and ``/docs/asyncapi.json``: the
  topics it reads and writes (and the DLQs it writes), under its deployment's prefix, with the
  partitions and retention it creates them with, its consumer group and the cluster it is
  connected to.

Only the prose is written here. Topics, producers, consumers, payload schemas and their
descriptions come from the catalogue (``shared.contracts``); the CloudEvents headers from the
envelope (``shared.envelope.HEADERS``, so a header added there is documented everywhere);
topic configuration from ``shared.kafka.topic_config``; examples from ``shared.examples``.
Component keys use names, dots and dashes only (the spec's ``^[a-zA-Z0-9.\\-_]+$``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import html
import inspect
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from faststream.asgi import AsgiResponse, get

from shared.access import SERVICES
from shared.contracts import CATALOGUE, PII_CATEGORIES, Event
from shared.dlq_seal import ENCRYPTED_FIELDS, ENCRYPTED_VALUE, JSON_STYLE
from shared.envelope import CONTENT_TYPE, HEADERS, MAX_ATTRIBUTE_CHARS, SPECVERSION, Envelope
from shared.examples import EXAMPLES, WHEN
from shared.kafka import DLQ_SUFFIX, topic_config
from shared.settings import ServiceSettings

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
# The major version of the event API: the ``v1`` of docs/consuming.md's compatibility
# promise. A document's version is this, then a fingerprint of the contracts it shows.
API_MAJOR = 1
UI_DIR = Path(__file__).with_name("docs_ui")  # the AsyncAPI renderer, vendored from npm
UI_ASSETS = {
    "asyncapi-standalone.js": "text/javascript; charset=utf-8",
    "asyncapi-default.min.css": "text/css; charset=utf-8",
}
UI_PATH = "/docs/asyncapi-ui"  # open: the renderer holds no data (like the dashboard's files)
GUIDE = "docs/consuming.md"
SERVICE_ROLES = {
    "registry": "P1 Pendaftaran: participants (master data and personal data), deduplication, "
    "the participant journey and the funnel, PDP requests (erasure, consent).",
    "coaching": "P2-P4 hulu: training cohorts and attendance, mentoring by a pendamping, "
    "products and their licences and certificates, `product-certified`.",
    "marketplace": "P5-P7 hilir: the curation ladder, listings per channel, export "
    "facilitation, the sales ledger and business class, Bank DKI financing referrals.",
    "notifications": "Every participant-facing message (WhatsApp, SMS, e-mail) from Bahasa "
    "Indonesia templates, with retry, dedup, rate limits and quiet hours.",
}
SYSTEM_ROLES = {
    "portal": "the registration portal, which the JAKI app and kelurahan officers use too",
    "lms": "the trainers' learning management system",
    "pendamping-app": "the pendamping (mentor) app",
    "certificate-issuers": "the adapters of OSS (NIB), BPJPH/SEHATI (halal), BPOM and DJKI",
    "curators": "the curation app of pendamping, kecamatan, dinas and curators",
    "qris-eorder": "the QRIS and e-Order sales feeds",
    "bank-dki": "Bank DKI's micro-credit system",
}


@dataclass(frozen=True)
class Key:
    """What a topic's record key is, and why."""

    field: str
    why: str


PARTICIPANT_KEY = Key(
    "participant_id",
    "one participant's events stay on one partition, in the order they were published",
)
# Events keyed by something else than the participant, as their producers key them.
KEYS = {
    "registration-submitted": Key(
        "submission_id", "there is no participant yet; a submission's records stay in order"
    ),
    "registration-rejected": Key(
        "submission_id", "the submission it answers (a rejected person has no participant id)"
    ),
    "certification-revoked": Key(
        "certificate_id", "a revocation names no holder; a certificate's records stay in order"
    ),
    "curation-reviewed": Key(
        "product_id", "a review names no owner; one product's reviews stay in order, level by level"
    ),
    "financing-decided": Key(
        "referral_id", "the referral Bank DKI answers (the bank knows no participant id)"
    ),
}


def key_of(event: type[Event]) -> Key | None:
    """The record key of ``event``'s topic: the participant id unless :data:`KEYS` says."""
    if event.name in KEYS:
        return KEYS[event.name]
    info = event.model_fields.get("participant_id")
    return PARTICIPANT_KEY if info is not None and info.is_required() else None


# ------------------------------------------------------------------ the CloudEvents headers

HEADER_EXTRA = {  # what the schema adds to a header's description from shared.envelope
    "ce_specversion": {"const": SPECVERSION},
    "ce_type": {"pattern": r"^jakpreneur\.[a-z0-9-]+\.v[0-9]+$"},
    "traceparent": {"pattern": r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
    "content-type": {"const": CONTENT_TYPE},
}
CONTENT_TYPE_DOC = (
    "The media type of the value (the CloudEvents `datacontenttype` in binary mode): "
    f"`{CONTENT_TYPE}`."
)
# Headers the services' Kafka framework (FastStream) adds to what they publish: not the
# envelope's, documented so that a consumer knows them for what they are.
FRAMEWORK_HEADERS = {
    "correlation_id": "Added by the services' Kafka framework (FastStream): on an event a copy "
    "of `ce_correlationid` (or of `ce_id`), on a dead letter a fresh id. Read "
    "`ce_correlationid` instead.",
}
_SAMPLE_TIME = datetime(2024, 5, 1, 2, 30, tzinfo=UTC)
EXAMPLE_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _sample_envelope(minimal: bool) -> Envelope:
    """An envelope with only its required attributes, or with every one set (whatever
    fields the envelope has by then), to see which headers it writes and which are times."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Envelope):
        if minimal and f.default is None:
            continue
        values[f.name] = _SAMPLE_TIME if "datetime" in str(f.type) else "x"
    return Envelope(**values)


def envelope_headers() -> dict[str, dict[str, Any]]:
    """Each header of an event record and its JSON Schema, in the envelope's order:
    required as the envelope always writes them, times as RFC 3339."""
    full = _sample_envelope(minimal=False).headers()
    names = list(dict.fromkeys([*HEADERS, *full, *FRAMEWORK_HEADERS]))
    schemas = {}
    for name in names:
        schema: dict[str, Any] = {"type": "string"}
        if name == "content-type":
            schema["description"] = CONTENT_TYPE_DOC
        elif name in FRAMEWORK_HEADERS:
            schema["description"] = FRAMEWORK_HEADERS[name]
        else:
            schema["description"] = HEADERS.get(name, f"Envelope header `{name}`.")
            schema["maxLength"] = MAX_ATTRIBUTE_CHARS
        if full.get(name) == _SAMPLE_TIME.isoformat():
            schema["format"] = "date-time"
        schemas[name] = schema | HEADER_EXTRA.get(name, {})
    return schemas


def required_headers() -> list[str]:
    return list(_sample_envelope(minimal=True).headers())


def headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "CloudEvents 1.0 in Kafka binary mode: the value is the JSON `data`, "
        "every attribute a `ce_` header (UTF-8). Other headers may appear; ignore them.",
        "required": required_headers(),
        "properties": envelope_headers(),
    }


# ------------------------------------------------------------------ the dead-letter headers

DLQ_HEADERS: dict[str, str] = {
    "dlq_error_type": "The reason code: `invalid-envelope`, `unknown-event-type`, "
    "`unknown-source`, `too-large`, `too-deep`, `invalid-json`, `invalid-payload`, "
    "`unreadable`, `handler-error`, `parked-expired`, or a service's own (e.g. coaching's "
    "`not-in-cohort`, the marketplace's `curation-closed`).",
    "dlq_error_message": "What was wrong, for an operator (field names, never their values; "
    "personal data masked).",
    "dlq_original_topic": "The topic the record was read from.",
    "dlq_original_partition": "Its partition (decimal).",
    "dlq_original_offset": "Its offset (decimal).",
    "dlq_failing_service": "The service that could not apply it.",
    "dlq_failed_at": "When it was dead-lettered (RFC 3339, UTC).",
    ENCRYPTED_FIELDS: "The personal fields of the value encrypted one by one (comma-"
    "separated paths); `jakpreneur dlq replay` opens them.",
    ENCRYPTED_VALUE: "Present when the whole value is one ciphertext (a value that is not a "
    "JSON object on a topic with personal fields).",
    JSON_STYLE: "How the original JSON was written, so a replay writes it back byte for byte.",
    "dlq_value_dropped": "Present when the record with these headers no longer fit the "
    "broker's limit: the value was dropped (its size is given), the envelope kept, cut.",
}
DLQ_REQUIRED = list(DLQ_HEADERS)[:7]


def dead_letter_headers_schema() -> dict[str, Any]:
    props: dict[str, Any] = {
        name: {"type": "string", "description": text} for name, text in DLQ_HEADERS.items()
    }
    props["dlq_original_partition"]["pattern"] = "^[0-9]+$"
    props["dlq_original_offset"]["pattern"] = "^[0-9]+$"
    props["dlq_failed_at"]["format"] = "date-time"
    return {
        "type": "object",
        "description": "Why and where the record failed, beside the record's own headers "
        "(its CloudEvents envelope as it came, which may be what was wrong).",
        "required": DLQ_REQUIRED,
        "properties": props,
    }


# ------------------------------------------------------------------ payload schemas


def _summary(text: str) -> str:
    """The first sentence of a docstring's first paragraph."""
    first = " ".join(inspect.cleandoc(text).split("\n\n")[0].split())
    match = re.search(r"(?<=[.!?])\s", first)
    return first[: match.start()] if match else first


def _doc(event: type[Event]) -> str:
    return inspect.cleandoc(event.__doc__ or "")


def _extensions(schema: Any, in_properties: bool = False) -> Any:
    """The schema with the catalogue's ``pii`` marks as ``x-pii`` (AsyncAPI extensions start
    with ``x-``), and ``$defs`` references pointing at ``components/schemas``."""
    if isinstance(schema, list):
        return [_extensions(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if in_properties:
            out[key] = _extensions(value)
        elif key == "pii" and value in PII_CATEGORIES:
            out["x-pii"] = value
        elif key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
            out[key] = "#/components/schemas/" + value.removeprefix("#/$defs/")
        else:
            out[key] = _extensions(value, in_properties=key == "properties")
    return out


def payload_schemas(events: Iterable[type[Event]]) -> dict[str, Any]:
    """``components/schemas``: each event's payload under its ``ce_type``, and the models
    nested in them under their names (one definition each)."""
    schemas: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    for event in events:
        schema = event.model_json_schema()
        for name, definition in schema.pop("$defs", {}).items():
            converted = _extensions(definition)
            if nested.setdefault(name, converted) != converted:
                raise ValueError(f"two nested models named {name} differ")
        schemas[event.ce_type()] = _extensions(schema)
    return schemas | dict(sorted(nested.items()))


def fingerprint(document_parts: Any) -> str:
    """12 hex digits that change whenever what the parts say changes."""
    canonical = json.dumps(document_parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# ------------------------------------------------------------------ channels and messages


def _principal(name: str) -> str:
    if name in SERVICE_ROLES:
        return f"`{name}` (service)"
    return f"`{name}` ({SYSTEM_ROLES.get(name, 'internal system')})"


def _list(names: Iterable[str]) -> str:
    found = [_principal(n) for n in names]
    return ", ".join(found) if found else "none inside the programme (downstream consumers)"


@dataclass(frozen=True)
class Deployment:
    """What differs between the system document and a service's: the topic prefix (None:
    the ``{prefix}`` parameter) and the settings topics are created with."""

    prefix: str | None
    settings: ServiceSettings

    def address(self, name: str) -> str:
        return ("{prefix}" if self.prefix is None else self.prefix) + name

    def group(self, principal: str) -> dict[str, Any]:
        if self.prefix is None:
            return {
                "type": "string",
                "description": f"The topic prefix, then `{principal}`.",
                "examples": [principal],
            }
        return {"type": "string", "enum": [self.prefix + principal]}


def _topic_binding(deployment: Deployment, topic: str) -> dict[str, Any]:
    settings = deployment.settings
    config: dict[str, Any] = {}
    for name, value in topic_config(settings, topic).items():
        config[name] = [value] if name == "cleanup.policy" else int(value)
    binding: dict[str, Any] = {"partitions": settings.topic_partitions}
    if deployment.prefix is not None:
        binding["replicas"] = settings.topic_replication_factor
    return binding | {"topicConfiguration": config, "bindingVersion": KAFKA_BINDING}


def _retention(config: Mapping[str, Any]) -> str:
    if config.get("cleanup.policy") == ["compact"]:
        return "compacted: the latest record of each key is kept; a tombstone erases the key"
    days = int(config["retention.ms"]) / 86_400_000
    return f"{days:g} days"


def _versions(events: list[type[Event]]) -> str:
    if len(events) == 1:
        return f"`{events[0].ce_type()}`, the only one on this topic"
    *older, newest = events
    return (
        ", ".join(f"`{e.ce_type()}`" for e in older)
        + f" (deprecated: published beside the next for a stated period) and `{newest.ce_type()}`"
    )


def _union(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _channel(events: list[type[Event]], deployment: Deployment) -> dict[str, Any]:
    """The topic of one event name: one message per event type (a major version) on it."""
    event = events[-1]  # the newest version speaks for the topic
    key = key_of(event)
    binding = _topic_binding(deployment, event.name)
    producers = _union(p for e in events for p in e.producers)
    consumers = _union(c for e in events for c in e.consumers)
    lines = [
        f"**{event.name}**: {_summary(_doc(event))}",
        "",
        f"- Event type (`ce_type`): {_versions(events)}.",
        f"- Produced by: {_list(producers)}.",
        f"- Consumed by: {_list(consumers)}.",
        f"- Key: `{key.field}`: {key.why}." if key else "- Key: not declared.",
        f"- Partitions: {binding['partitions']}"
        + (" by default (`TOPIC_PARTITIONS`)" if deployment.prefix is None else "")
        + "; retention: "
        + _retention(binding["topicConfiguration"])
        + ".",
    ]
    if event.compacted:
        lines.append(
            "- Compacted: read it from the start to have every key's latest value; a record "
            "with no value (a tombstone) means the key was erased."
        )
    channel: dict[str, Any] = {
        "address": deployment.address(event.name),
        "title": event.name,
        "summary": _summary(_doc(event)),
        "description": "\n".join(lines),
        "messages": {e.ce_type(): {"$ref": f"#/components/messages/{e.ce_type()}"} for e in events},
        "bindings": {"kafka": binding},
        "x-producers": producers,
        "x-consumers": consumers,
    }
    if deployment.prefix is None:
        channel["parameters"] = {"prefix": {"$ref": "#/components/parameters/prefix"}}
    return channel


def _dlq_channel(event: type[Event], writers: list[str], deployment: Deployment) -> dict[str, Any]:
    binding = _topic_binding(deployment, event.name + DLQ_SUFFIX)
    channel: dict[str, Any] = {
        "address": deployment.address(event.name + DLQ_SUFFIX),
        "title": event.name + DLQ_SUFFIX,
        "summary": f"What a consuming service could not apply from `{event.name}`.",
        "description": "\n".join(
            [
                f"Records of `{event.name}` that {_list(writers)} could not apply: the record "
                "as it came (its key, its headers, its value with personal fields encrypted), "
                "with why and where it failed in `dlq_*` headers. The offset moved on; ops "
                "inspect and replay them (`jakpreneur dlq list | show | replay`).",
                "",
                "- Retention: " + _retention(binding["topicConfiguration"]) + ".",
            ]
        ),
        "messages": {"dead-letter": {"$ref": "#/components/messages/dead-letter"}},
        "bindings": {"kafka": binding},
        "x-producers": writers,
        "x-consumers": ["ops"],
    }
    if deployment.prefix is None:
        channel["parameters"] = {"prefix": {"$ref": "#/components/parameters/prefix"}}
    return channel


def example_of(event: type[Event]) -> dict[str, Any] | None:
    """``event``'s example: under its ``ce_type`` (where two versions share a topic), else
    under its name."""
    return EXAMPLES.get(event.ce_type(), EXAMPLES.get(event.name))


def example_headers(event: type[Event]) -> dict[str, str]:
    """The headers of the example record of ``event``, written by the envelope itself: an
    internal system's fact starts a flow, dated when it happened; a service's event is
    caused by another (here, one a moment earlier) and carries its business time."""
    key = key_of(event)
    payload = example_of(event) or {}
    subject = payload.get(key.field) if key is PARTICIPANT_KEY else None
    source = event.producers[0] if event.producers else "unknown"
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:jakpreneur:example:{event.name}"))
    when = datetime.fromisoformat(WHEN.get(event.name, "2024-05-01T02:30:00Z"))
    published = when + timedelta(seconds=2)
    if source not in SERVICES:
        envelope = Envelope(
            id=event_id,
            source=source,
            type=event.ce_type(),
            time=published,
            correlation_id=event_id,
            traceparent=EXAMPLE_TRACEPARENT,
            business_time=when,
        )
        return envelope.headers()
    cause = Envelope(
        id="0d9e8f7a-6b5c-4d3e-8f1a-2b3c4d5e6f70",
        source="portal",
        type="jakpreneur.registration-submitted.v1",
        time=when,
        correlation_id="6e2b9d14-7f3a-4c8e-9b1d-2a4c6e8f0b13",
        traceparent=EXAMPLE_TRACEPARENT,
    )
    caused = cause.caused(
        type=event.ce_type(),
        source=source,
        subject=str(subject) if subject else None,
        time=published,
    )
    return dataclasses.replace(caused, id=event_id, traceparent=EXAMPLE_TRACEPARENT).headers()


def _message(event: type[Event], deprecated: bool = False) -> dict[str, Any]:
    key = key_of(event)
    key_schema: dict[str, Any] = {"type": "string"}
    if key is not None:
        key_schema["description"] = f"`{key.field}` of the payload: {key.why}."
    message: dict[str, Any] = {
        "name": event.name,
        "title": f"{event.__name__} (v{event.version})",
        "summary": _summary(_doc(event)),
        "description": _doc(event),
        "contentType": CONTENT_TYPE,
        "traits": [{"$ref": "#/components/messageTraits/cloudevents"}],
        "headers": {
            "type": "object",
            "properties": {
                "ce_type": {"const": event.ce_type()},
                "ce_source": {"enum": list(event.producers)},
            },
        },
        "payload": {"$ref": f"#/components/schemas/{event.ce_type()}"},
        "bindings": {"kafka": {"key": key_schema, "bindingVersion": KAFKA_BINDING}},
    }
    if deprecated:  # a newer version is published beside it for a stated period
        message["deprecated"] = True
    example = example_of(event)
    if example is not None:
        headers = example_headers(event)
        key_value = example.get(key.field) if key else None
        message["examples"] = [
            {
                "name": f"{event.name}-example",
                "summary": f"Key `{key_value}`; a made-up participant (see shared/examples.py)."
                if key_value
                else "A made-up participant (see shared/examples.py).",
                "headers": headers,
                "payload": example,
            }
        ]
    return message


DEAD_LETTER_EXAMPLE = {
    "name": "dead-letter-example",
    "summary": "A mentoring session logged by a pendamping who is not the participant's, as "
    "coaching dead-letters it: the reason in the headers, the free-text notes encrypted.",
    "headers": {
        "ce_specversion": SPECVERSION,
        "ce_id": "6e2b9d14-7f3a-4c8e-9b1d-2a4c6e8f0b13",
        "ce_source": "pendamping-app",
        "ce_type": "jakpreneur.mentoring-session-recorded.v1",
        "ce_time": "2024-05-24T03:00:02+00:00",
        "content-type": CONTENT_TYPE,
        "ce_correlationid": "6e2b9d14-7f3a-4c8e-9b1d-2a4c6e8f0b13",
        "ce_businesstime": "2024-05-24T03:00:00+00:00",
        "dlq_error_type": "wrong-mentor",
        "dlq_error_message": "the participant's pendamping is not pendamping-tebet-09",
        "dlq_original_topic": "mentoring-session-recorded",
        "dlq_original_partition": "3",
        "dlq_original_offset": "1207",
        "dlq_failing_service": "coaching",
        "dlq_failed_at": "2024-05-24T03:00:02.861000+00:00",
        ENCRYPTED_FIELDS: "notes",
        JSON_STYLE: "compact",
        "correlation_id": "a3f1c2d4-5b6e-4f70-8a9b-0c1d2e3f4a5b",
    },
    "payload": {
        "participant_id": "3f6c1a52-8d7e-4b0a-9c21-5e8f7a6b4d10",
        "mentor_id": "pendamping-tebet-09",
        "session_at": "2024-05-24T03:00:00Z",
        "notes": "gAAAAABrD7MJ_t5JkB27dtbqO_oA_Y2pdcZig2f7p1y4gTZNVECs_KbZeKnFh6Lo9MOTRbNRI_ud"
        "be_9rFqe542r99eK_-_74iX3GxRnmlZ9G4hfHmqfnnQ=",
    },
}


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": "dead-letter",
        "title": "Dead letter",
        "summary": "A record a consuming service could not apply, with why and where.",
        "description": "The original record: the same key and headers (its CloudEvents "
        "envelope, which may be what was wrong), the same value but for its personal fields, "
        f"encrypted field by field (`{ENCRYPTED_FIELDS}` names them) or whole "
        f"(`{ENCRYPTED_VALUE}`), or dropped (`dlq_value_dropped`). The value may be anything "
        "at all: that can be why it is here.",
        "contentType": CONTENT_TYPE,
        "headers": {"$ref": "#/components/schemas/dead-letter-headers"},
        "payload": {"description": "The original value (see the message's description)."},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The original record's key."},
                "bindingVersion": KAFKA_BINDING,
            }
        },
        "examples": [DEAD_LETTER_EXAMPLE],
    }


# ------------------------------------------------------------------ operations


def _operation(
    action: str, principal: str, channel: str, messages: list[str], group: dict[str, Any] | None
) -> dict[str, Any]:
    verb = "publishes to" if action == "send" else "reads"
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "title": f"{principal} {verb} {channel}",
        "summary": f"{_principal(principal)} {verb} `{channel}`.",
        "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
    }
    if group is not None:
        operation["description"] = (
            "Reads in its own consumer group (its replicas share it), from the earliest "
            "offset the first time, committing after each batch's effects are stored."
        )
        operation["bindings"] = {"kafka": {"groupId": group, "bindingVersion": KAFKA_BINDING}}
    return operation


# ------------------------------------------------------------------ the documents


def _info_description(events: list[type[Event]], deployment: Deployment) -> str:
    prefix = (
        "Every topic is named by its event under the deployment's topic prefix (`TOPIC_PREFIX`, "
        "empty by default; e.g. `test-1a2b.` on a shared cluster): the channels' `{prefix}` "
        "parameter."
        if deployment.prefix is None
        else f"Every topic is named by its event under this deployment's prefix "
        f"(`TOPIC_PREFIX` = `{deployment.prefix}`)."
    )
    return "\n".join(
        [
            "The events of the Jakpreneur programme (Dinas PPKUKM DKI Jakarta), from "
            "registration to credit: one Kafka topic per event type.",
            "",
            f"- **Topics**: {prefix} Each topic carries one event type (`ce_type`); a "
            "consumer's own reads of it are at-least-once.",
            "- **Key and order**: the record key is the participant id (events keyed "
            "otherwise say so), so one participant's events are in order within a topic; "
            "there is no order across topics.",
            "- **Envelope**: CloudEvents 1.0 in Kafka binary mode (the `cloudevents` message "
            "trait): the value is the JSON `data`, the attributes are `ce_*` headers.",
            "- **Duplicates**: a record can come twice (a retry, a replay): drop a repeat "
            "by `ce_id`.",
            "- **Dead letters**: a consumer's records it could not apply go to `<topic>.dlq`, "
            "with why in `dlq_*` headers.",
            f"- **Compatibility**: within `v{API_MAJOR}` changes are additive (new optional "
            "fields, new topics); a breaking change is a new `ce_type` version published "
            "beside the old one for a stated period.",
            "",
            f"How to consume, with an example consumer: `{GUIDE}`. {len(events)} event types.",
        ]
    )


def _build(
    *,
    principal: str | None,
    deployment: Deployment,
    info: dict[str, Any],
    document_id: str,
    servers: dict[str, Any],
    security_schemes: dict[str, Any],
) -> dict[str, Any]:
    """The document of ``principal``'s part of the catalogue (None: all of it)."""

    def involves(names: Iterable[str]) -> bool:
        return principal is None or principal in names

    events = [e for e in CATALOGUE if involves((*e.producers, *e.consumers))]
    by_name: dict[str, list[type[Event]]] = {}
    for event in sorted(events, key=lambda e: e.version):  # a v2 beside its v1: one topic
        by_name.setdefault(event.name, []).append(event)
    by_name = {e.name: by_name[e.name] for e in events}  # in catalogue order
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for name, versions in by_name.items():
        channels[name] = _channel(versions, deployment)
        for action, principals in (
            ("send", _union(p for e in versions for p in e.producers)),
            ("receive", _union(c for e in versions for c in e.consumers)),
        ):
            for principal_name in filter(lambda p: involves([p]), principals):
                types = [
                    e.ce_type()
                    for e in versions
                    if principal_name in (e.producers if action == "send" else e.consumers)
                ]
                group = deployment.group(principal_name) if action == "receive" else None
                operations[f"{principal_name}.{action}.{name}"] = _operation(
                    action, principal_name, name, types, group
                )
    for name, versions in by_name.items():
        consumers = _union(c for e in versions for c in e.consumers)
        writers = [s for s in consumers if s in SERVICES and involves([s])]
        if not writers:
            continue
        dlq = name + DLQ_SUFFIX
        channels[dlq] = _dlq_channel(versions[-1], writers, deployment)
        for service in writers:
            operations[f"{service}.send.{dlq}"] = _operation(
                "send", service, dlq, ["dead-letter"], None
            )
    schemas = payload_schemas(events)
    newest = {name: versions[-1] for name, versions in by_name.items()}
    messages = {e.ce_type(): _message(e, deprecated=newest[e.name] is not e) for e in events}
    if any(name.endswith(DLQ_SUFFIX) for name in channels):
        messages["dead-letter"] = _dead_letter_message()
        schemas["dead-letter-headers"] = dead_letter_headers_schema()
    version = f"{API_MAJOR}.0.0+{fingerprint([schemas, headers_schema(), sorted(channels)])}"
    components: dict[str, Any] = {
        "schemas": schemas,
        "messages": messages,
        "messageTraits": {
            "cloudevents": {
                "headers": headers_schema(),
                "correlationId": {
                    "description": "The id of the event that started the flow: every event "
                    "a submission caused carries it.",
                    "location": "$message.header#/ce_correlationid",
                },
            }
        },
    }
    if deployment.prefix is None:
        components["parameters"] = {
            "prefix": {
                "description": "The deployment's topic prefix (`TOPIC_PREFIX`), empty unless "
                "the cluster is shared, e.g. `staging.`.",
                "default": "",
                "examples": ["", "staging."],
            }
        }
    if security_schemes:
        components["securitySchemes"] = security_schemes
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": document_id,
        "info": info | {"version": version},
        "defaultContentType": CONTENT_TYPE,
        "servers": servers,
        "channels": channels,
        "operations": operations,
        "components": components,
    }


SCRAM = {
    "type": "scramSha512",
    "description": "SASL/SCRAM-SHA-512 with the principal's own credentials; its ACLs (from the "
    "contract catalogue, shared/access.py) let it read and write only its topics and use "
    "only its consumer group. TLS outside loopback (`kafka-secure`).",
}
SYSTEM_SERVERS = {
    "local": {
        "host": "127.0.0.1:9092",
        "protocol": "kafka",
        "title": "Local stack",
        "summary": "`make up`/`make run`: Kafka on loopback, SASL over plaintext.",
        "description": "The project's launcher (deploy/local): a single KRaft node on "
        "127.0.0.1 (`KAFKA_PORT`, 9092 by default), SASL_PLAINTEXT with SCRAM-SHA-512; the "
        "credentials are in `.run/stack.env`. No TLS: loopback only.",
        "security": [{"$ref": "#/components/securitySchemes/scram-sha-512"}],
    },
    "compose": {
        "host": "kafka:19092",
        "protocol": "kafka-secure",
        "title": "Compose stack",
        "summary": "deploy/compose.yaml: SASL_SSL inside the compose network.",
        "description": "Inside the compose network `kafka:19092`; from the host "
        "`127.0.0.1:9092`. Both SASL_SSL (TLS with the CA of `tls-init`, SCRAM-SHA-512); "
        "passwords in `deploy/.env`.",
        "security": [{"$ref": "#/components/securitySchemes/scram-sha-512"}],
    },
    "production": {
        "host": "jakpreneur-kafka-bootstrap:9093",
        "protocol": "kafka-secure",
        "title": "Production (Kubernetes)",
        "summary": "Strimzi's TLS listener with SCRAM-SHA-512.",
        "description": "The Strimzi cluster `jakpreneur` in the services' namespace "
        "(deploy/k8s): TLS with the cluster CA (`jakpreneur-cluster-ca-cert`), "
        "SCRAM-SHA-512; each principal is a KafkaUser whose password is in the Secret of its "
        "name.",
        "security": [{"$ref": "#/components/securitySchemes/scram-sha-512"}],
    },
}


def system_document() -> dict[str, Any]:
    """``docs/asyncapi.yaml``: the whole catalogue, for any deployment."""
    deployment = Deployment(None, ServiceSettings.model_construct(service_name="docs"))
    return _build(
        principal=None,
        deployment=deployment,
        info={
            "title": "Jakpreneur event backbone",
            "description": _info_description(list(CATALOGUE), deployment),
        },
        document_id="urn:jakpreneur:events",
        servers=copy.deepcopy(SYSTEM_SERVERS),
        security_schemes={"scram-sha-512": SCRAM},
    )


def service_document(settings: ServiceSettings) -> dict[str, Any]:
    """The part of the catalogue a service reads and writes, as deployed with ``settings``."""
    service = settings.service_name
    deployment = Deployment(settings.topic_prefix, settings)
    events = [e for e in CATALOGUE if service in (*e.producers, *e.consumers)]
    reads = [e.name for e in events if service in e.consumers]
    writes = [e.name for e in events if service in e.producers]
    hosts = [h.strip() for h in settings.kafka_bootstrap_servers.split(",") if h.strip()]
    sasl = settings.kafka_security_protocol.startswith("SASL")
    server: dict[str, Any] = {
        "host": hosts[0],
        "protocol": "kafka-secure" if settings.kafka_security_protocol.endswith("SSL") else "kafka",
        "title": "This deployment's cluster",
        "description": f"The cluster this instance is connected to: {', '.join(hosts)} "
        f"({settings.kafka_security_protocol}"
        + (f", {settings.kafka_sasl_mechanism}" if sasl else "")
        + "). See the system-wide document (docs/asyncapi.yaml) for the others.",
    }
    schemes = {}
    if sasl:
        mechanism = settings.kafka_sasl_mechanism
        scheme = "scramSha512" if mechanism.endswith("512") else "scramSha256"
        schemes[mechanism.lower()] = SCRAM | {"type": scheme}
        server["security"] = [{"$ref": f"#/components/securitySchemes/{mechanism.lower()}"}]
    role = SERVICE_ROLES.get(service, f"The `{service}` service.")
    description = "\n".join(
        [
            f"The `{service}` service of the Jakpreneur programme. {role}",
            "",
            f"- **Reads** (consumer group `{settings.consumer_group}`): "
            + (", ".join(f"`{n}`" for n in reads) or "nothing")
            + ".",
            "- **Writes**: "
            + (", ".join(f"`{n}`" for n in writes) or "nothing")
            + (", and the `.dlq` of each topic it reads." if reads else "."),
            "",
            _info_description(events, deployment),
        ]
    )
    return _build(
        principal=service,
        deployment=deployment,
        info={"title": f"Jakpreneur {service} service", "description": description},
        document_id=f"urn:jakpreneur:{service}",
        servers={"deployment": server},
        security_schemes=schemes,
    )


# ------------------------------------------------------------------ serving it


def docs_page(document: Mapping[str, Any]) -> str:
    """The HTML page that renders ``document`` with the vendored AsyncAPI renderer: every
    script and style from this service (no CDN), the document inline."""
    config = {
        "show": {
            "sidebar": True,
            "info": True,
            "servers": True,
            "operations": True,
            "messages": True,
            "schemas": True,
            "errors": True,
        },
        "expand": {"messageExamples": True},
        "sidebar": {"showServers": "byDefault", "showOperations": "byDefault"},
    }
    # Inside <script>, "<" is escaped so no description can close the element.
    props = json.dumps({"schema": document, "config": config}).replace("<", "\\u003c")
    title = html.escape(str(document["info"]["title"]))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - AsyncAPI</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{UI_PATH}/asyncapi-default.min.css">
</head>
<body>
<div id="asyncapi"></div>
<script src="{UI_PATH}/asyncapi-standalone.js"></script>
<script>
AsyncApiStandalone.render({props}, document.getElementById("asyncapi"));
</script>
</body>
</html>
"""


# The page confines itself to this service: a browser refuses any other origin. The renderer
# compiles JSON-Schema validators at run time (eval) and styles elements inline.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def routes(settings: ServiceSettings) -> list[tuple[str, Any]]:
    """``/docs/asyncapi`` (the page) and ``/docs/asyncapi.json``, built on the first request
    (building them costs a schema per event). Behind the token gate, as the docs were."""
    built: dict[str, bytes] = {}

    def body(kind: str) -> bytes:
        if not built:
            document = service_document(settings)
            built["json"] = json.dumps(document, indent=2).encode()
            built["html"] = docs_page(document).encode()
        return built[kind]

    @get(include_in_schema=False)
    async def page(scope: Any) -> AsgiResponse:
        headers = {"content-type": "text/html; charset=utf-8"}
        return AsgiResponse(body("html"), 200, headers | {"content-security-policy": PAGE_POLICY})

    @get(include_in_schema=False)
    async def document(scope: Any) -> AsgiResponse:
        return AsgiResponse(body("json"), 200, {"content-type": "application/json"})

    return [("/docs/asyncapi", page), ("/docs/asyncapi.json", document)]


async def ui_asset(params: dict[str, str]) -> AsgiResponse:
    """The renderer's script and style (``{UI_PATH}/{asset}``): open, they hold no data."""
    name = params.get("asset", "")
    if name not in UI_ASSETS:
        return AsgiResponse(b'{"error": "not found"}', 404, {"content-type": "application/json"})
    headers = {"content-type": UI_ASSETS[name], "cache-control": "public, max-age=86400"}
    return AsgiResponse((UI_DIR / name).read_bytes(), 200, headers)
