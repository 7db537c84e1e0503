"""The wiring every service shares: one batch subscriber over the topics it consumes, the
outbox relay and periodic jobs, topic and index set-up, probes and AsyncAPI docs.

It holds no business rules: a service hands in its batch handler and its own set-up.
"""

# No `from __future__ import annotations` here: FastStream resolves the subscriber's
# annotations at run time.
import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import uvicorn
from faststream import AckPolicy
from faststream.asgi import AsgiResponse, get
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.subscriber.usecase import BatchSubscriber
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pymongo import AsyncMongoClient

from shared import asyncapi
from shared.auth import Authenticator
from shared.contracts import Event, Refusal
from shared.http import OpenHandler, Route, ServiceApp, SubjectLookup, probes
from shared.kafka import METRICS as kafka_metrics
from shared.kafka import (
    Record,
    configure_dead_letters,
    dead_letter,
    ensure_topics,
    raw_body,
    records_of,
    tolerant_parser,
)
from shared.logging import configure_logging, get_logger
from shared.mongo import Document, Outbox, Parking
from shared.retry import TRANSIENT_ERRORS, outages, retry_transient
from shared.settings import ServiceSettings
from shared.tracing import configure_tracing

log = get_logger(__name__)

BatchHandler = Callable[[list[Record]], Awaitable[None]]
# serve() sets it: a process of its own exits when its consumer stalls (see Watchdog).
EXIT_ON_STALL = False
MAX_PAUSE_S = 30.0  # the longest wait between two tries while the infrastructure is away
Periodic = tuple[float, Callable[[], Awaitable[Any]]]
MEASURE_INTERVAL_S = 5.0  # the outbox backlog and the consumer lag, between scrapes too


@dataclass
class Watchdog:
    """Tells a stalled consumer from an idle or a waiting one.

    Seen after a broker restart: aiokafka's consumer waited for ever for its group
    coordinator while committing a batch, so nothing more was consumed, with records
    behind it and every probe green. Stalled = records behind the consumer, no batch being
    handled (a batch waiting out an outage is not stalled), and none started for
    ``timeout_s``. The cure is a restart: the inbox and outbox make it safe (a kill -9 is)."""

    timeout_s: float
    busy: bool = False
    last: float = field(default_factory=time.monotonic)

    def started(self) -> None:
        self.busy, self.last = True, time.monotonic()

    def finished(self) -> None:
        self.busy, self.last = False, time.monotonic()

    def stalled(self, behind: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return behind > 0 and not self.busy and now - self.last > self.timeout_s

    def check(self, behind: int) -> None:
        """Say so when stalled; a process of its own then exits, to be restarted."""
        if not self.stalled(behind):
            return
        log.critical(
            "consumer stalled: records behind it and no batch handled",
            behind=behind,
            stalled_s=round(time.monotonic() - self.last),
        )
        if EXIT_ON_STALL:  # the orchestrator (or make up's supervisor) restarts us
            logging.shutdown()
            os._exit(70)


async def consume(
    records: list[Record], handle_batch: BatchHandler, broker: KafkaBroker, service: str
) -> None:
    """The one failure policy every consumer goes through. Each record ends in an answer (the
    handler's), a DLQ entry with a reason code, or a pause; nothing escapes to the broker's
    redelivery loop, so no record can stall its partitions for ever.

    - The infrastructure's fault (``shared.retry.is_transient``): the batch waits, with capped
      exponential backoff, and is handled again when MongoDB or Kafka answer; meanwhile
      ``/readyz`` says what it waits for. Nothing is committed meanwhile (the handlers are
      idempotent, so work done before the outage is not repeated).
    - Anything else escaping the handler is a bug tripped by some record (the handlers
      dead-letter what they foresee themselves): each record is handled again on its own,
      and the one that still fails goes to the DLQ as ``handler-error``, with the traceback
      logged; the others are answered.
    """
    try:
        await retry_transient(lambda: handle_batch(records), max_wait_s=MAX_PAUSE_S)
        return
    except Exception:
        log.exception("batch could not be handled; handling its records one by one")
    for record in records:
        try:
            await retry_transient(functools.partial(handle_batch, [record]), MAX_PAUSE_S)
        except Exception as exc:
            log.error("record could not be handled", topic=record.topic, exc_info=exc)
            problem = Refusal("handler-error", type(exc).__name__)  # the log has the rest
            try:
                await dead_letter(broker, record, problem, service)
            except Exception as dlq_exc:  # never back into the redelivery loop
                log.critical(
                    "record could not be dead-lettered either; skipped",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    exc_info=dlq_exc,
                )


async def _every(interval_s: float, job: Callable[[], Awaitable[Any]]) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await job()
        except TRANSIENT_ERRORS as exc:
            log.warning("periodic job waiting for infrastructure", error_type=type(exc).__name__)
        except Exception:
            log.exception("periodic job failed; it runs again next interval")


class Metrics:
    """Prometheus: messages consumed and published per topic and handler latency, from
    FastStream's middleware; dead letters by topic and reason (shared.kafka); the outbox
    backlog and the consumer lag, measured every :data:`MEASURE_INTERVAL_S` and on each
    scrape. Made before the subscriber: its middleware counts what the subscriber takes."""

    def __init__(self, broker: KafkaBroker, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        broker.add_middleware(KafkaPrometheusMiddleware(registry=self.registry, app_name=service))
        self.backlog = Gauge(
            "jakpreneur_outbox_backlog",
            "Events written to the outbox and not yet published.",
            ["service"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "jakpreneur_consumer_lag",
            "Records on this instance's partitions not yet fetched (high watermark - position).",
            ["service", "topic", "partition"],
            registry=self.registry,
        )

    async def measure(self, outbox: Outbox, inbound: BatchSubscriber, watchdog: Watchdog) -> None:
        """The backlog and the lag now; the ``watchdog`` judges the lag."""
        self.backlog.labels(self.service).set(await outbox.backlog())
        consumer = inbound.consumer
        if consumer is not None:
            watchdog.check(await self._lag(consumer))

    async def _lag(self, consumer: Any) -> int:
        """Records behind the consumer on its partitions (each partition's on the gauge)."""
        self.lag.clear()  # partitions move between instances on a rebalance
        total = 0
        # position() waits while a partition's offset is being reset: never hold a scrape.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                for tp in consumer.assignment():
                    highwater = consumer.highwater(tp)
                    if highwater is not None:
                        behind = max(0, highwater - await consumer.position(tp))
                        self.lag.labels(self.service, tp.topic, str(tp.partition)).set(behind)
                        total += behind
        return total

    def route(self, measure: Callable[[], Awaitable[None]]) -> tuple[str, Any]:
        """``/metrics``: measured now; this service's metrics and the process-wide ones."""

        @get(include_in_schema=False)
        async def metrics_endpoint(scope: Any) -> AsgiResponse:
            await measure()
            body = generate_latest(self.registry) + generate_latest(kafka_metrics)
            return AsgiResponse(body, 200, {"content-type": CONTENT_TYPE_LATEST})

        return ("/metrics", metrics_endpoint)


def subscribe(
    broker: KafkaBroker,
    settings: ServiceSettings,
    consumes: Sequence[type[Event]],
    handle_batch: BatchHandler,
    parking: Parking | None,
    watchdog: Watchdog,
) -> BatchSubscriber:
    """The service's one subscriber: batches from every topic it ``consumes``, each through
    :func:`consume`, seen by the ``watchdog``; then refused parked facts to their DLQ."""
    inbound = broker.subscriber(
        *(settings.topic(e.name) for e in consumes),
        group_id=settings.consumer_group,
        batch=True,
        max_records=settings.batch_size,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        auto_offset_reset="earliest",
        # Commit only after the whole batch is handled: consume() answers, dead-letters or
        # waits for every record, so only a shutdown (cancellation) escapes it, and then the
        # batch is redelivered rather than committed (ACK would commit it: silent loss).
        ack_policy=AckPolicy.NACK_ON_ERROR,
        # A record's ``reply_to`` header is its producer's, not an instruction: FastStream
        # would publish each batch's result there (for a topic that does not exist, a
        # timeout that nacks the batch and redelivers it for ever).
        no_reply=True,
        decoder=raw_body,
        parser=tolerant_parser,
        title=f"{settings.service_name}-inbound",
    )

    @inbound
    async def on_batch(body: list[bytes], message: KafkaMessage) -> None:
        watchdog.started()
        try:
            await consume(records_of(message), handle_batch, broker, settings.service_name)
            if parking is not None and parking.refused_since_expiry:
                # a parked fact refused once what it waited for came: to its DLQ now, not
                # at the next periodic check (the batch's transaction has committed it)
                ttl = timedelta(seconds=settings.parked_ttl_s)
                try:
                    await parking.expire(broker, settings.service_name, ttl)
                except Exception as exc:  # kept in the parking: the periodic check sends it
                    log.warning("refused parked facts wait", error_type=type(exc).__name__)
        finally:
            watchdog.finished()

    return inbound


def lifespan(
    settings: ServiceSettings,
    client: AsyncMongoClient[Document],
    outbox: Outbox,
    events: Sequence[type[Event]],
    prepare: Callable[[], Awaitable[Any]] | None,
    cleanup: Callable[[], Awaitable[Any]] | None,
    parking: Parking | None,
) -> Callable[..., contextlib.AbstractAsyncContextManager[None]]:
    """Before consuming: the outbox's (and parking's) indexes, the service's ``prepare``, the
    topics of its ``events``, each waiting out an outage; after: its ``cleanup``, and the
    MongoDB client closed."""

    @contextlib.asynccontextmanager
    async def run(**_: Any) -> AsyncIterator[None]:
        await retry_transient(outbox.ensure_indexes)
        if parking is not None:
            await retry_transient(parking.ensure_indexes)
        if prepare is not None:
            await retry_transient(prepare)
        names = [e.name for e in events]
        await retry_transient(lambda: ensure_topics(settings, names))
        yield
        if cleanup is not None:
            await cleanup()
        await client.close()

    return run


@dataclass
class Background:
    """What runs beside the consumer: the outbox relay and the periodic ``jobs``. Stopping
    flushes whatever the outbox's fast path left behind."""

    outbox: Outbox
    relay_interval_s: float
    jobs: Sequence[Periodic]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self.tasks.append(asyncio.create_task(self.outbox.run_relay(self.relay_interval_s)))
        self.tasks.extend(asyncio.create_task(_every(i, job)) for i, job in self.jobs)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.outbox.relay_pending()
        except TRANSIENT_ERRORS as exc:  # the relay of the next start sends it
            log.warning("outbox not flushed at shutdown", error_type=type(exc).__name__)


def _expiry(
    settings: ServiceSettings, broker: KafkaBroker, parking: Parking | None
) -> list[Periodic]:
    """A service that parks facts: what waits longer than ``parked_ttl_s`` to the DLQ."""
    if parking is None:
        return []
    ttl = timedelta(seconds=settings.parked_ttl_s)
    expire = functools.partial(parking.expire, broker, settings.service_name, ttl)
    return [(settings.parked_check_interval_s, expire)]


def readiness(
    broker: KafkaBroker, client: AsyncMongoClient[Document]
) -> Callable[[], Awaitable[dict[str, bool]]]:
    """``/readyz``'s checks: Kafka and MongoDB answer, each within its own 2 s."""

    async def ready() -> dict[str, bool]:
        mongo_ok = True
        try:  # a probe answers within its own timeout, whatever the server selection's
            async with asyncio.timeout(2):
                await client.admin.command("ping")
        except Exception:
            mongo_ok = False
        return {"kafka": await broker.ping(timeout=2), "mongodb": mongo_ok}

    return ready


def _authenticator(settings: ServiceSettings) -> Authenticator:
    if not settings.auth_jwks_url:  # allowed in development only (ServiceSettings)
        log.warning("AUTH_JWKS_URL unset: every endpoint but the probes and metrics answers 503")
    return Authenticator(settings.auth_issuer, settings.auth_audience, settings.auth_jwks_url)


def service_app(
    settings: ServiceSettings,
    *,
    broker: KafkaBroker,
    client: AsyncMongoClient[Document],
    outbox: Outbox,
    consumes: Sequence[type[Event]],
    produces: Sequence[type[Event]],
    handle_batch: BatchHandler,
    prepare: Callable[[], Awaitable[Any]] | None = None,
    periodic: Sequence[Periodic] = (),
    path_routes: Sequence[Route] = (),
    open_routes: Sequence[tuple[str, OpenHandler]] = (),
    subject_of: SubjectLookup | None = None,
    cleanup: Callable[[], Awaitable[Any]] | None = None,
    parking: Parking | None = None,
) -> ServiceApp:
    """The service's ASGI app. ``prepare`` (indexes, reference data) runs before consuming;
    ``cleanup`` (the service's own clients) after it stopped. A service that parks facts
    hands in its ``parking``: what waits longer than ``parked_ttl_s`` is dead-lettered.
    HTTP: ``path_routes`` need a token whose role and scope reach them, ``subject_of``
    tells the scope of a participant, ``open_routes`` hold no data (see shared.http)."""
    configure_tracing(settings.service_name, settings.otlp_endpoint)
    configure_dead_letters(settings)  # the key of its dead letters' personal fields
    metrics = Metrics(broker, settings.service_name)
    watchdog = Watchdog(settings.stall_timeout_s)
    inbound = subscribe(broker, settings, consumes, handle_batch, parking, watchdog)
    measure = functools.partial(metrics.measure, outbox, inbound, watchdog)
    jobs: list[Periodic] = [*periodic, *_expiry(settings, broker, parking)]
    jobs.append((MEASURE_INTERVAL_S, measure))
    background = Background(outbox, settings.outbox_relay_interval_s, jobs)
    events = [*consumes, *produces]
    return ServiceApp(
        broker,
        authenticator=_authenticator(settings),
        lifespan=lifespan(settings, client, outbox, events, prepare, cleanup, parking),
        after_startup=[background.start],
        on_shutdown=[background.stop],
        # /docs/asyncapi (the page) and .json: this service's part of the catalogue
        asgi_routes=[
            *probes(readiness(broker, client), outages),
            metrics.route(measure),
            *asyncapi.routes(settings),
        ],
        path_routes=path_routes,
        # the AsyncAPI page's script and style (shared.asyncapi): open, like the dashboard's
        open_routes=[*open_routes, (f"{asyncapi.UI_PATH}/{{asset}}", asyncapi.ui_asset)],
        subject_of=subject_of,
        logger=get_logger("jakpreneur.faststream"),
    )


def serve(settings: ServiceSettings, create_app: Callable[[Any], ServiceApp]) -> None:
    """The entry point of ``python -m services.<name>``: logging, then uvicorn until SIGTERM.
    Shutdown flushes the outbox; a batch cut short is not committed, so it is redelivered
    (and its effects, already stored, are not repeated)."""
    global EXIT_ON_STALL
    EXIT_ON_STALL = True
    configure_logging(settings.service_name, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # our structlog set-up, not uvicorn's
        timeout_graceful_shutdown=30,
    )
