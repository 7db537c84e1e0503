"""Broker factory, explicit topic creation, raw records and the dead-letter queue."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import struct
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from aiokafka.record.default_records import DefaultRecordBatch as _CDefaultRecordBatch
from aiokafka.record.default_records import _DefaultRecordBatchPy
from aiokafka.record.memory_records import MemoryRecords as _CMemoryRecords
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from shared.contracts import Event, Refusal, event_of_topic, personal_fields
from shared.dlq_seal import SEAL_HEADERS, PersonalSeal
from shared.envelope import (
    BUSINESS_TIME,
    BUSINESS_TIME_AHEAD,
    ENVELOPE_HEADERS,
    Envelope,
    EnvelopeError,
    OutgoingEvent,
)
from shared.logging import get_logger, mask_text
from shared.retry import TOO_LARGE_ERRORS, retry_transient
from shared.settings import DEV_DLQ_PERSONAL_KEY, ServiceSettings

log = get_logger(__name__)
T = TypeVar("T")

DLQ_SUFFIX = ".dlq"
REPLAYS_TOPIC = "dlq-replays"  # who replayed which dead letter (``jakpreneur dlq replay``)


@dataclass(frozen=True)
class KafkaAccess:
    """Where the cluster is and who logs in: the one factory of every Kafka client's
    connection settings (services, tools and tests alike). ``KAFKA_SECURITY_PROTOCOL``
    ``SASL_PLAINTEXT`` on a local stack (127.0.0.1 only), ``SASL_SSL`` anywhere else."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    ssl_cafile: str = ""

    VARIABLES = (
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CAFILE",
    )

    @classmethod
    def of(cls, settings: ServiceSettings) -> KafkaAccess:
        return cls(
            settings.kafka_bootstrap_servers,
            settings.kafka_security_protocol,
            settings.kafka_sasl_mechanism,
            settings.kafka_sasl_username,
            settings.kafka_sasl_password.get_secret_value(),
            settings.kafka_ssl_cafile,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, admin: bool = False) -> KafkaAccess:
        """From the ``KAFKA_*`` variables (``.run/stack.env`` has the simulator's). With
        ``admin``, ``KAFKA_ADMIN_USERNAME``/``KAFKA_ADMIN_PASSWORD`` win where set: a local
        stack's super user, for ops tools (replay, topic creation) and the benchmark."""
        env = os.environ if env is None else env
        values = [env.get(name, "") for name in cls.VARIABLES]
        if admin and env.get("KAFKA_ADMIN_USERNAME"):
            values[3:5] = env["KAFKA_ADMIN_USERNAME"], env.get("KAFKA_ADMIN_PASSWORD", "")
        return cls(
            values[0] or "127.0.0.1:9092",
            values[1] or "PLAINTEXT",
            values[2] or "SCRAM-SHA-512",
            *values[3:],
        )

    def as_user(self, username: str, password: str) -> KafkaAccess:
        return dataclasses.replace(self, username=username, password=password)

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def env(self) -> dict[str, str]:
        """The ``KAFKA_*`` variables of a child process that logs in as this principal."""
        values = (
            self.bootstrap_servers,
            self.security_protocol,
            self.sasl_mechanism,
            self.username,
            self.password,
            self.ssl_cafile,
        )
        return dict(zip(self.VARIABLES, values, strict=True))

    def _ssl_context(self) -> Any:
        if not self.security_protocol.endswith("SSL"):
            return None
        return create_ssl_context(cafile=self.ssl_cafile or None)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of an aiokafka producer, consumer, admin or client."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "ssl_context": self._ssl_context(),
        }
        if self.uses_sasl:
            kwargs |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return kwargs

    def security(self) -> BaseSecurity | None:
        """The same, for FastStream's broker (which also shows it in the AsyncAPI docs)."""
        ssl = self.security_protocol.endswith("SSL")
        if not self.uses_sasl:
            return BaseSecurity(self._ssl_context(), use_ssl=True) if ssl else None
        scram = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256}
        if self.sasl_mechanism not in scram:
            raise ValueError(f"unsupported KAFKA_SASL_MECHANISM {self.sasl_mechanism!r}")
        return scram[self.sasl_mechanism](
            self.username, self.password, ssl_context=self._ssl_context(), use_ssl=ssl
        )


def make_broker(settings: ServiceSettings) -> KafkaBroker:
    """acks=all and the idempotent producer: a retried send is never written twice."""
    access = KafkaAccess.of(settings)
    return KafkaBroker(
        access.bootstrap_servers,
        security=access.security(),
        acks="all",
        enable_idempotence=True,
        # A batch's events are handed over together; waiting 5 ms for more sends them in
        # fewer, larger requests (less CPU in the broker and here, 5 ms more per hop).
        linger_ms=5,
        # Up to 256 KB per partition in one record batch (aiokafka's default is 16 KB: a
        # batch of 500 events went out as several per partition). A topic's
        # max.message.bytes bounds a whole batch: it must allow 256 KB (docs/benchmark.md).
        max_batch_size=256 * 1024,
        client_id=settings.service_name,
        logger=get_logger("jakpreneur.faststream"),  # through our masked renderer
    )


async def ensure_topics(settings: ServiceSettings, names: Iterable[str]) -> list[str]:
    """Create each event topic and its ``.dlq`` twin; the broker never auto-creates them.
    Existing topics are left as they are (see :func:`align_topics`)."""
    topics = sorted(
        {t for name in names for t in (settings.topic(name), dlq_topic(settings.topic(name)))}
    )
    admin = AIOKafkaAdminClient(**KafkaAccess.of(settings).client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=topic,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs=topic_config(settings, topic),
            )
            for topic in topics
            if topic not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another instance was first
                await admin.create_topics(wanted)
            for _ in range(100):  # metadata of a new topic reaches the broker's cache shortly after
                if set(topics) <= set(await admin.list_topics()):
                    break
                await asyncio.sleep(0.1)
            log.info("topics created", topics=[t.name for t in wanted])
    finally:
        await admin.close()
    return topics


def topic_config(settings: ServiceSettings, topic: str) -> dict[str, str]:
    """A compacted event's topic keeps each key's latest record (a tombstone erases it).
    A topic whose event carries personal fields (per the catalogue), and its DLQ, keeps
    records for ``topic_personal_retention_ms`` (UU 27/2022: no longer than needed; the
    registry answers a submission within seconds); the others for ``topic_retention_ms``."""
    dlq = topic.endswith(DLQ_SUFFIX)
    event = event_of_topic(topic.removesuffix(DLQ_SUFFIX) if dlq else topic)
    if event is not None and event.compacted and not dlq:
        # a replaced or erased record (a contact) is gone from the log within a day, however
        # quiet the topic; a tombstone is kept a day, so every consumer sees it
        return {
            "cleanup.policy": "compact",
            "max.compaction.lag.ms": str(24 * 3600 * 1000),
            "delete.retention.ms": str(24 * 3600 * 1000),
        }
    retention = settings.topic_retention_ms
    if event is not None and personal_fields(event):
        retention = min(retention, settings.topic_personal_retention_ms)
    return {"cleanup.policy": "delete", "retention.ms": str(retention)}


class TopicConfigError(RuntimeError):
    """A topic's configs could not be read or changed; ``code`` is Kafka's error code (29:
    the principal has no DescribeConfigs or AlterConfigs right on it)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


async def align_topics(
    admin: AIOKafkaAdminClient, settings: ServiceSettings, topics: list[str]
) -> dict[str, dict[str, str]]:
    """Give each of the existing ``topics`` the configs of :func:`topic_config` where its
    own differ, e.g. after a deployment shortened ``TOPIC_PERSONAL_RETENTION_MS``; returns
    what was changed (topic -> the configs set). ``jakpreneur topics create`` does it, as
    ops or an admin; the services do not: their principals may create their topics, not
    alter them. AlterConfigs replaces a topic's whole set of dynamic configs, so the
    others it has (set by hand) are sent along."""
    if not topics:
        return {}
    [described] = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
    )
    changes: dict[str, dict[str, str]] = {}
    resources = []
    for error_code, message, _type, topic, entries in described.resources:
        if error_code:
            raise TopicConfigError(f"{topic}: not described ({message})", error_code)
        current = {e[0]: e[1] for e in entries}
        dynamic = {e[0]: e[1] for e in entries if _is_topic_override(e)}
        wanted = topic_config(settings, topic)
        if all(current.get(k) == v for k, v in wanted.items()):
            continue
        changes[topic] = wanted
        resources.append(ConfigResource(ConfigResourceType.TOPIC, topic, {**dynamic, **wanted}))
    if resources:
        for answer in await admin.alter_configs(resources):
            for error_code, _message, _type, topic in answer.resources:
                if error_code:
                    raise TopicConfigError(f"{topic}: not altered", error_code)
        log.info("topic configs aligned", topics=sorted(changes))
    return changes


def _is_topic_override(entry: Any) -> bool:
    """A DescribeConfigs entry (name, value, read_only, source or is_default, sensitive[,
    synonyms]) set on the topic itself: ``config_source`` 1 (DYNAMIC_TOPIC_CONFIG) from v1
    on, ``is_default`` false in v0."""
    if len(entry) >= 6:
        return bool(entry[3] == 1)
    return not entry[3]


def dlq_topic(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


async def publish(broker: KafkaBroker, event: OutgoingEvent) -> asyncio.Future[Any]:
    """Hand one event to the producer; the future is the broker's acknowledgement (acks=all).
    Events handed over in turn keep their order on their partition, and the producer sends
    those handed over together in one request, so a caller awaits the acknowledgements of
    many at once. A tombstone (``value`` None) goes out with a null value: FastStream sends
    a keyed None as such."""
    sent: asyncio.Future[Any] = await broker.publish(
        event.value,
        topic=event.topic,
        key=event.key.encode(),
        headers=event.envelope.headers(),
        correlation_id=event.envelope.correlation_id or event.envelope.id,
        no_confirm=True,
    )
    return sent


@dataclass(frozen=True)
class Record:
    """What a consumer received, as it was on the wire: nothing parsed yet."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Mapping[str, str]
    repeated_headers: frozenset[str] = frozenset()  # names that came more than once

    @classmethod
    def of_raw(cls, raw: Any) -> Record:
        """From an aiokafka ``ConsumerRecord``."""
        counts = collections.Counter(k for k, _ in (raw.headers or ()))
        return cls(
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=raw.key,
            value=raw.value or b"",
            headers={k: (v or b"").decode("utf-8", "replace") for k, v in (raw.headers or ())},
            repeated_headers=frozenset(n for n, count in counts.items() if count > 1),
        )


async def raw_body(message: KafkaMessage) -> Any:
    """Decoder that leaves the body (bytes, or a batch's list of bytes) alone, so that an
    unreadable record reaches the handler instead of failing inside the framework."""
    return message.body


def read_envelope(record: Record, *events: type[Event]) -> Envelope:
    """The record's envelope, if it is one of ``events``, on that event's topic, from a
    producer the catalogue allows for it; else :class:`Refusal`. Kafka's ACLs keep
    other principals off the topic; ``ce_source`` is checked too, so a system allowed to
    write cannot pass its record off as another's (e.g. a portal posing as Bank DKI)."""
    return _read_envelope(record, {event.ce_type(): event for event in events})


def _read_envelope(record: Record, by_type: Mapping[str, type[Event]]) -> Envelope:
    """:func:`read_envelope` with the events by ``ce_type`` (a consumer's table, built once:
    this runs for every record)."""
    repeated = sorted(n for n in record.repeated_headers if n in ENVELOPE_HEADERS)
    if repeated:
        raise Refusal("invalid-envelope", f"repeated envelope headers: {', '.join(repeated)}")
    try:
        envelope = Envelope.from_headers(record.headers)
    except EnvelopeError as exc:
        raise Refusal("invalid-envelope", str(exc)) from None
    contract = by_type.get(envelope.type)
    if contract is None:
        raise Refusal("unknown-event-type", f"ce_type {envelope.type!r} is not handled here")
    if not record.topic.endswith(contract.name):  # one event type per topic
        raise Refusal("unknown-event-type", f"ce_type {envelope.type!r} is not this topic's")
    if envelope.source not in contract.producers:
        raise Refusal(
            "unknown-source", f"ce_source {envelope.source!r} does not produce {contract.name}"
        )
    # A fact cannot have happened after it arrived (a hostile date, or a producer's clock
    # ahead): it would date stages and months in the future, and the first time wins. A
    # skewed ce_time alone is tolerated, as before: the registry judges an age on the day
    # a submission is received, not by the producer's clock.
    business_time = envelope.business_time
    if business_time is not None and business_time > datetime.now(UTC) + BUSINESS_TIME_AHEAD:
        raise Refusal("invalid-envelope", f"{BUSINESS_TIME} is later than its arrival")
    return envelope


def check_size(record: Record, limit: int) -> None:
    """:class:`Refusal` ``too-large`` when the value is larger than its contract allows:
    checked before it is parsed, so a huge value costs no parsing and no memory."""
    if len(record.value) > limit:
        raise Refusal("too-large", f"value of {len(record.value)} bytes; at most {limit}")


def read_object(record: Record, max_bytes: int) -> dict[str, Any]:
    """The record's value as a JSON object; else :class:`Refusal`."""
    check_size(record, max_bytes)
    try:
        raw = json.loads(record.value)
    except RecursionError:
        raise Refusal("too-deep", "value is nested too deeply") from None
    except ValueError as exc:
        raise Refusal("invalid-json", f"value is not JSON: {exc.__class__.__name__}") from None
    if not isinstance(raw, dict):
        raise Refusal("invalid-json", "value is not a JSON object")
    return raw


def read_event(
    record: Record, by_type: Mapping[str, type[Event]], strict: bool = True
) -> tuple[Envelope, Event]:
    """The record's envelope and its contract (chosen by ``ce_type``), or :class:`Refusal`
    saying which fields are wrong (names only: values may be personal data)."""
    envelope = _read_envelope(record, by_type)
    contract = by_type[envelope.type]
    check_size(record, contract.max_bytes)
    try:
        event = contract.model_validate_json(record.value, strict=strict)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(e["type"] == "recursion_loop" or "recursion" in e["msg"] for e in errors):
            raise Refusal("too-deep", "value is nested too deeply") from None
        fields = ", ".join(sorted({".".join(map(str, e["loc"])) or "value" for e in errors}))
        raise Refusal("invalid-payload", f"invalid fields: {fields[:500]}") from None
    return envelope, event


async def dead_letter(
    broker: KafkaBroker, record: Record, exc: BaseException, service: str
) -> None:
    """Send the record to its DLQ, waiting out a broker outage rather than losing it. The
    error type is a refusal's reason code, else the exception's type (a bug)."""
    code = exc.code if isinstance(exc, Refusal) else type(exc).__name__
    await retry_transient(
        lambda: send_to_dlq(
            broker, record, error_type=code, error_message=str(exc), service=service
        )
    )


async def readable(
    records: Iterable[Record], read: Callable[[Record], T], broker: KafkaBroker, service: str
) -> list[tuple[Record, T]]:
    """Each record with what ``read`` made of it; a record it cannot read goes to the DLQ at
    once with its reason: a :class:`Refusal`'s code, ``too-deep`` for a value that
    exhausts the parser's recursion, and ``unreadable`` (with the traceback logged) for any
    other error while reading, which is a bug tripped by this record, not by the others."""
    read_ones: list[tuple[Record, T]] = []
    for record in records:
        try:
            read_ones.append((record, read(record)))
        except Refusal as exc:
            await dead_letter(broker, record, exc, service)
        except RecursionError:
            await dead_letter(broker, record, Refusal("too-deep", "nested too deeply"), service)
        except Exception as exc:
            log.error("record could not be read", topic=record.topic, exc_info=exc)
            problem = Refusal("unreadable", type(exc).__name__)  # values stay in no header
            await dead_letter(broker, record, problem, service)
    return read_ones


# Process-wide, like the metrics below (the dead-letter helpers have no app at hand): the
# key of dead letters' personal fields (shared.dlq_seal). Every service sets it from its
# settings at start (shared.service); the development key until then.
_seal = PersonalSeal(DEV_DLQ_PERSONAL_KEY)


def configure_dead_letters(settings: ServiceSettings) -> None:
    """This process's dead letters are sealed with ``settings.dlq_personal_key``."""
    global _seal
    _seal = PersonalSeal(settings.dlq_personal_key.get_secret_value())


# Process-wide (the dead-letter helpers have no app at hand); ``service`` tells apps apart.
METRICS = CollectorRegistry()
DEAD_LETTERS = Counter(
    "jakpreneur_dead_letters",
    "Records sent to a dead-letter topic, by original topic and reason code.",
    ["service", "topic", "reason"],
    registry=METRICS,
)


async def send_to_dlq(
    broker: KafkaBroker, record: Record, *, error_type: str, error_message: str, service: str
) -> None:
    """Republish the record to ``<topic>.dlq``, with why and where it failed: untouched but
    for its personal fields, which are encrypted (see :mod:`shared.dlq_seal`)."""
    value, sealed = _seal.seal(record.topic, record.value)
    why = {
        "dlq_error_type": error_type,
        "dlq_error_message": mask_text(error_message[:2000]),
        "dlq_original_topic": record.topic,
        "dlq_original_partition": str(record.partition),
        "dlq_original_offset": str(record.offset),
        "dlq_failing_service": service,
        "dlq_failed_at": datetime.now(UTC).isoformat(),
    }
    try:
        own = {k: v for k, v in record.headers.items() if k not in SEAL_HEADERS}
        await broker.publish(
            value,
            topic=dlq_topic(record.topic),
            key=record.key,
            headers={**own, **why, **sealed},
        )
    except TOO_LARGE_ERRORS:
        # The record with our headers no longer fits: keep the entry (why and where it
        # failed, the envelope, shortened) without the value rather than lose it.
        envelope = {k: v[:256] for k, v in record.headers.items() if k in ENVELOPE_HEADERS}
        dropped = {"dlq_value_dropped": f"{len(record.value)} bytes: too large to keep"}
        headers = {**envelope, **why, **dropped}
        # the key stays (an id: what an operator finds the entry by), unless it is the bulk
        key = record.key if record.key is not None and len(record.key) <= 1024 else None
        await broker.publish(b"", topic=dlq_topic(record.topic), key=key, headers=headers)
    DEAD_LETTERS.labels(service, record.topic, error_type).inc()
    log.warning(
        "record sent to dead-letter queue",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        error_type=error_type,
    )


def _clean_headers(record: Any) -> Any:
    headers = tuple(
        (key, (value or b"").decode("utf-8", "replace").encode()) for key, value in record.headers
    )
    return dataclasses.replace(record, headers=headers)


class _BatchHeaders(Sequence[dict[str, str]]):
    """A batch message's ``batch_headers``, decoded (leniently) only if read: nothing on our
    path reads them (the handler reads ``raw_message`` through :class:`Record`); FastStream
    reads them only in its OpenTelemetry middleware and its test assertions."""

    def __init__(self, records: tuple[Any, ...]) -> None:
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._records)))]
        record = self._records[index]
        return {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers}


async def tolerant_parser(message: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream's parser, minus its crash on a null or non-UTF-8 header value: such a
    record must still reach the handler, to be answered or dead-lettered, not lost.

    For a batch, FastStream's parser is given only the first and the last record (the
    message's headers, correlation id and id come from them; the last without headers),
    so no other record's headers are decoded, nor copied: the message's body, its
    ``raw_message`` (the records as aiokafka gave them) and ``batch_headers`` (lazy) are
    then the whole batch's. This runs for every batch of every consumer."""
    if not isinstance(message, tuple):
        return await original(_clean_headers(message))
    if not message:
        return await original(message)
    first, last = message[0], message[-1]
    ends: tuple[Any, ...] = (_clean_headers(first),)
    if len(message) > 1:
        ends += (dataclasses.replace(last, headers=()),)
    parsed = await original(ends)
    parsed.body = [r.value or b"" for r in message]
    parsed.batch_headers = _BatchHeaders(message)
    parsed.raw_message = message
    return parsed


def records_of(message: KafkaMessage) -> list[Record]:
    """The records of a batch message (or of a single one), as they were on the wire."""
    raw: Any = message.raw_message
    return [Record.of_raw(r) for r in (raw if isinstance(raw, tuple) else (raw,))]


# ------------------------------------------------------------------ undecodable header names
# aiokafka decodes a record's header *names* as strict UTF-8 (its C extension and its pure
# Python twin alike). One record whose header name is not UTF-8 then raises from every
# getmany(): the consumer never gets past it and every partition of that consumer stalls,
# which no handler can see or dead-letter. So the fetcher's records are wrapped: a batch is
# read by the C extension as usual, and only when a header name fails to decode is that
# batch read again by the pure-Python reader with undecodable bytes replaced (U+FFFD). The
# record then reaches its consumer and is answered or dead-lettered like any other.


class _LenientBytes(bytes):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes.decode(self, encoding, "replace")


class _LenientBuffer(bytearray):
    def __getitem__(self, item: Any) -> Any:
        found = super().__getitem__(item)
        return _LenientBytes(found) if isinstance(item, slice) else found


class _LenientBatch(_DefaultRecordBatchPy):  # type: ignore[misc]
    """The pure-Python batch reader over a buffer whose slices decode leniently (also after
    decompression, which replaces the buffer)."""

    @property
    def _buffer(self) -> _LenientBuffer:
        buffer: _LenientBuffer = self.__dict__["_lenient_buffer"]
        return buffer

    @_buffer.setter
    def _buffer(self, value: Any) -> None:
        self.__dict__["_lenient_buffer"] = _LenientBuffer(value)


class _TolerantBatch:
    """A C-decoded batch that falls back to :class:`_LenientBatch` for the records from the
    one whose header name could not be decoded."""

    def __init__(self, batch: Any, raw: bytes, index: int) -> None:
        self._batch, self._raw, self._index = batch, raw, index

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __next__(self) -> Any:
        return next(self._batch)

    def _raw_batch(self) -> bytes:
        """This batch's bytes: each batch is its base offset (8 bytes), its length (4) and
        that many bytes."""
        pos = 0
        for _ in range(self._index):
            pos += 12 + struct.unpack_from(">i", self._raw, pos + 8)[0]
        return self._raw[pos : pos + 12 + struct.unpack_from(">i", self._raw, pos + 8)[0]]

    def __iter__(self) -> Any:
        done = 0
        try:
            for record in self._batch:
                done += 1
                yield record
        except UnicodeDecodeError:
            log.warning("a header name is not UTF-8; read with replacement characters")
            for index, record in enumerate(_LenientBatch(self._raw_batch())):
                if index >= done:
                    yield record


class _TolerantRecords:
    """aiokafka's MemoryRecords, with batches that survive an undecodable header name."""

    def __init__(self, bytes_data: bytes) -> None:
        self._records, self._raw, self._index = _CMemoryRecords(bytes_data), bytes_data, 0

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None or not isinstance(batch, _CDefaultRecordBatch):
            return batch
        self._index += 1
        return _TolerantBatch(batch, self._raw, self._index - 1)


aiokafka_fetcher.MemoryRecords = _TolerantRecords
