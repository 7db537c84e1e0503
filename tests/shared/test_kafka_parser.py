"""The batch subscriber's parser (``shared.kafka.tolerant_parser``): a record with a null or
non-UTF-8 header value reaches the handler (to be answered or dead-lettered) instead of
crashing FastStream's parser, and the message FastStream gets is the one its own parser
would have made of a clean batch."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from faststream.kafka.message import KafkaAckableMessage
from faststream.kafka.parser import AioKafkaBatchParser
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry

from shared.contracts import TrainingEnrolled
from shared.envelope import new_envelope
from shared.kafka import Record, make_broker, records_of, tolerant_parser
from shared.service import Watchdog, subscribe
from tests.conftest import Servers
from tests.kafka_helpers import send, wait_committed
from tests.shared.conftest import World

HOSTILE: list[tuple[str, bytes | None]] = [
    ("correlation_id", b"\xff\xfe-corr"),  # FastStream reads this one of a batch's first record
    ("ce_subject", None),
    ("x-latin1", "Kafé".encode("latin-1")),  # b"Kaf\xe9"
]


def _record(offset: int, headers: list[tuple[str, bytes | None]], partition: int = 0) -> Any:
    value = b'{"n": %d}' % offset
    timestamp = 1_700_000_000_000 + offset
    return ConsumerRecord("t", partition, offset, timestamp, 0, b"k", value, None, 1, 9, headers)


def _clean(offset: int) -> Any:
    return _record(offset, [("correlation_id", b"corr-%d" % offset), ("content-type", b"a/b")])


async def test_a_batch_message_is_faststreams_own_and_survives_hostile_header_values() -> None:
    parser = AioKafkaBatchParser(msg_class=KafkaAckableMessage, regex=None)
    clean = (_clean(5), _clean(6), _record(7, [], partition=1), _clean(8))
    ours, theirs = await tolerant_parser(clean, parser.parse_batch), await parser.parse_batch(clean)
    for field in ("body", "headers", "reply_to", "content_type", "message_id", "correlation_id"):
        assert getattr(ours, field) == getattr(theirs, field), field
    assert ours.raw_message is clean  # the records as aiokafka gave them (Record.of_raw's)
    assert list(ours.batch_headers) == theirs.batch_headers
    assert isinstance(ours, KafkaAckableMessage) and isinstance(theirs, KafkaAckableMessage)
    assert ours.consumer is theirs.consumer

    hostile = (_record(1, HOSTILE), _record(2, [("ce_id", None)]), _record(3, HOSTILE[2:]))
    message = await tolerant_parser(hostile, parser.parse_batch)
    assert message.correlation_id == "\ufffd\ufffd-corr"
    assert message.message_id == f"1-3-{hostile[0].timestamp}"
    assert message.body == [r.value for r in hostile] and message.raw_message is hostile
    assert len(message.batch_headers) == 3
    assert message.batch_headers[1] == {"ce_id": ""}
    lenient = {"correlation_id": "\ufffd\ufffd-corr", "ce_subject": "", "x-latin1": "Kaf\ufffd"}
    assert [r.headers for r in records_of(message)] == [
        lenient,
        {"ce_id": ""},
        {"x-latin1": "Kaf\ufffd"},
    ]
    assert message.headers == message.batch_headers[0] == lenient

    single = await tolerant_parser(_record(4, HOSTILE), parser.parse_message)
    assert single.correlation_id == "\ufffd\ufffd-corr"
    assert single.headers["ce_subject"] == ""
    assert records_of(single)[0].offset == 4


@pytest.mark.integration
async def test_null_and_non_utf8_header_values_reach_the_handler_through_the_subscriber(
    world: World, servers: Servers, forger: AIOKafkaProducer
) -> None:
    """The service's one subscriber (``shared.service.subscribe``, with FastStream's
    Prometheus middleware as the services have it) on the real broker: the hostile records,
    the first of them the first of its batch, are handled with the rest and committed."""
    headers = new_envelope(type=TrainingEnrolled.ce_type(), source="test").headers()
    sent: list[list[tuple[str, bytes | None]]] = [
        [*((k, v.encode()) for k, v in headers.items() if k != "ce_subject"), *HOSTILE],
        [(k, None if k == "ce_id" else v.encode()) for k, v in headers.items()],
        [(k, b"\xc3(" if k == "ce_type" else v.encode()) for k, v in headers.items()],
        [(k, v.encode()) for k, v in headers.items()],
    ]
    handled = await through_the_subscriber(world, servers, forger, sent)
    assert [r.value for r in handled] == [b'{"n": %d}' % i for i in range(len(sent))]
    first, null_id, bad_type, _ = handled
    assert first.headers["correlation_id"] == "\ufffd\ufffd-corr"
    assert first.headers["ce_subject"] == ""
    assert first.headers["x-latin1"] == "Kaf\ufffd"
    assert null_id.headers["ce_id"] == ""
    assert bad_type.headers["ce_type"] == "\ufffd("


async def test_a_reply_to_header_is_not_answered(
    world: World, servers: Servers, forger: AIOKafkaProducer
) -> None:
    """A producer's ``reply_to`` header is not an instruction: FastStream would publish the
    handler's result there after each batch (an empty record on any topic the service may
    write, or, for a topic that does not exist, a timeout that nacks the batch and redelivers
    it for ever). The records are handled once, committed, and nothing else is written."""
    headers = new_envelope(type=TrainingEnrolled.ce_type(), source="test").headers()
    plain: list[tuple[str, bytes | None]] = [(k, v.encode()) for k, v in headers.items()]
    sent: list[list[tuple[str, bytes | None]]] = [
        [*plain, ("reply_to", b"no-such-topic-anywhere")],
        [*plain, ("reply_to", world.topic.encode())],
        plain,
    ]
    handled = await through_the_subscriber(world, servers, forger, sent)
    assert [r.value for r in handled] == [b'{"n": %d}' % i for i in range(len(sent))]
    reader = AIOKafkaConsumer(**servers.admin.client_kwargs())
    await reader.start()
    try:
        tp = TopicPartition(world.topic, 0)  # the test world's topics have one partition
        assert (await reader.end_offsets([tp]))[tp] == handled[-1].offset + 1  # no reply
    finally:
        await reader.stop()


async def through_the_subscriber(
    world: World,
    servers: Servers,
    forger: AIOKafkaProducer,
    sent: list[list[tuple[str, bytes | None]]],
) -> list[Record]:
    """Records with these headers (values {"n": i}) through the service's one subscriber
    (``shared.service.subscribe``, with FastStream's Prometheus middleware as the services
    have it) on the real broker, until the group has committed past the last; what the
    handler was given."""
    settings = world.settings
    metas = [
        await send(forger, world.topic, b'{"n": %d}' % i, b"k", record_headers)
        for i, record_headers in enumerate(sent)
    ]
    handled: list[Record] = []

    async def handle_batch(records: list[Record]) -> None:
        handled.extend(records)

    broker = make_broker(settings)
    broker.add_middleware(
        KafkaPrometheusMiddleware(registry=CollectorRegistry(), app_name="parser-test")
    )
    subscribe(broker, settings, [TrainingEnrolled], handle_batch, None, Watchdog(60))
    await broker.start()
    try:
        last = metas[-1]
        group = settings.consumer_group
        await wait_committed(servers.admin, group, world.topic, last.partition, last.offset)
    finally:
        await broker.stop()
    return handled
