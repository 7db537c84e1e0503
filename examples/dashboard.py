"""A downstream dashboard of the Jakpreneur programme: UMKM registered and products certified,
per kecamatan, read from the programme's topics as a consumer outside it would.

It uses no code of the pipeline, only what a consumer gets (docs/consuming.md): the topics
and their ``participant-registered`` and ``product-certified`` events, the CloudEvents SDK's
Kafka binding to read each record, the published JSON Schemas (``shared/schemas``) to check
its data, and a Kafka principal of its own (SASL/SCRAM) that may read those two topics and
use its consumer group. What it shows:

- each event counted once: a record that comes again (a retry, a replay) has the same
  ``ce_id`` and is dropped;
- no order across topics: a product can be certified before the dashboard has read its
  owner's registration (it waits for it to know the kecamatan);
- tolerance: data that breaks its schema, or an event type it does not know (a ``v3``
  published beside ``v2`` during a migration), is counted aside, never a crash.

Run it on a local stack (``make up`` writes ``.run/stack.env``; its simulator principal may
read every topic but use no group of its own, hence no ``--group``)::

    set -a; . .run/stack.env; set +a
    python -m examples.dashboard --every 5

With a principal of its own (ops create it: read on the two topics, its group)::

    KAFKA_SASL_USERNAME=dashboard KAFKA_SASL_PASSWORD=... \
        python -m examples.dashboard --group dashboard
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.helpers import create_ssl_context
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event
from jsonschema import Draft202012Validator

# The event types it understands, and the topic (by event name) each travels on.
REGISTERED = "jakpreneur.participant-registered.v2"
CERTIFIED = "jakpreneur.product-certified.v1"
TOPICS = {REGISTERED: "participant-registered", CERTIFIED: "product-certified"}
SCHEMAS = Path(__file__).resolve().parent.parent / "shared" / "schemas"  # as published


def load_schemas(directory: Path = SCHEMAS, types: Iterable[str] = TOPICS) -> dict[str, Any]:
    """The published JSON Schema of each type, ``<ce_type>.json``."""
    return {t: json.loads((directory / f"{t}.json").read_text()) for t in types}


@dataclass
class Counts:
    registered: Counter[str] = field(default_factory=Counter)  # per kecamatan
    certified: Counter[str] = field(default_factory=Counter)  # per owner's kecamatan
    repeats: Counter[str] = field(default_factory=Counter)  # ce_id -> records dropped
    invalid: int = 0  # not a CloudEvent, or data that breaks its schema
    ignored: int = 0  # an event type it does not know


class Dashboard:
    """Folds records into counts; every record is applied once, whatever comes twice."""

    def __init__(self, schemas: Mapping[str, Any]) -> None:
        self.validators = {t: Draft202012Validator(s) for t, s in schemas.items()}
        self.counts = Counts()
        self.seen: set[str] = set()  # ce_ids applied (a real one keeps them with its counts)
        self.kecamatan_of: dict[str, str] = {}  # participant -> kecamatan
        self.waiting: Counter[str] = Counter()  # certified products of unknown owners

    def handle(self, message: KafkaMessage) -> None:
        try:
            event = from_binary_event(message)
        except Exception:  # not CloudEvents in binary mode, or no JSON value
            self.counts.invalid += 1
            return
        if event.get_id() in self.seen:
            self.counts.repeats[event.get_id()] += 1
            return
        validator = self.validators.get(event.get_type())
        data = event.get_data()
        if validator is None:
            self.counts.ignored += 1
        elif not validator.is_valid(data):
            self.counts.invalid += 1
        else:
            assert isinstance(data, dict)
            self._apply(event, data)
        self.seen.add(event.get_id())

    def _apply(self, event: BaseCloudEvent, data: dict[str, Any]) -> None:
        participant = str(data["participant_id"])
        if event.get_type() == REGISTERED:
            kecamatan = str(data["kecamatan"])
            self.kecamatan_of[participant] = kecamatan
            self.counts.registered[kecamatan] += 1
            waited = self.waiting.pop(participant, 0)
            if waited:
                self.counts.certified[kecamatan] += waited
        elif participant in self.kecamatan_of:
            self.counts.certified[self.kecamatan_of[participant]] += 1
        else:  # its registration is on another topic, not read yet (or before retention)
            self.waiting[participant] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "registered": dict(self.counts.registered),
            "certified": dict(self.counts.certified),
            "certified_owner_unknown": sum(self.waiting.values()),
            "repeats_dropped": sum(self.counts.repeats.values()),
            "invalid": self.counts.invalid,
            "ignored": self.counts.ignored,
        }


@dataclass(frozen=True)
class Connection:
    """Where the cluster is and who logs in, from the usual ``KAFKA_*`` variables."""

    bootstrap_servers: str
    security_protocol: str = "SASL_SSL"  # SASL_PLAINTEXT on a local stack's loopback only
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password: str = field(default="", repr=False)
    cafile: str = ""  # the CA of the brokers' certificates; empty: the system's

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Connection:
        return cls(
            env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            env.get("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            env.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            env.get("KAFKA_SASL_USERNAME", ""),
            env.get("KAFKA_SASL_PASSWORD", ""),
            env.get("KAFKA_SSL_CAFILE", ""),
        )

    def kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.endswith("SSL"):
            kwargs["ssl_context"] = create_ssl_context(cafile=self.cafile or None)
        if self.security_protocol.startswith("SASL"):
            kwargs |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return kwargs


async def open_consumer(
    connection: Connection, topics: list[str], group: str | None, from_beginning: bool
) -> AIOKafkaConsumer:
    """A started consumer of ``topics``. With a group (its replicas share it) it resumes
    where the group committed, else starts at the beginning or the end; without one it
    reads every partition itself, from the beginning or the end, each time it starts."""
    consumer = AIOKafkaConsumer(
        *topics,
        **connection.kwargs(),
        group_id=group,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    return consumer


async def follow(consumer: AIOKafkaConsumer, dashboard: Dashboard, commit: bool) -> None:
    """Apply every record; with a group, commit each batch once it is applied (a crash in
    between reads it again, and the ``ce_id``s make that harmless)."""
    while True:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                headers = {name: value or b"" for name, value in record.headers or ()}
                dashboard.handle(KafkaMessage(headers, record.key, record.value or b""))
        if batches and commit:
            await consumer.commit()


async def run(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    prefix = env.get("TOPIC_PREFIX", "")
    dashboard = Dashboard(load_schemas(args.schemas))
    topics = [prefix + name for name in TOPICS.values()]
    consumer = await open_consumer(
        Connection.from_env(env), topics, args.group, from_beginning=not args.from_end
    )
    task = asyncio.create_task(follow(consumer, dashboard, commit=args.group is not None))
    try:
        shown = None
        while not task.done():
            await asyncio.sleep(args.every)
            summary = dashboard.summary()
            if summary != shown:
                sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
                sys.stdout.flush()
                shown = summary
        await task  # raises what stopped it
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="UMKM registered and certified per kecamatan")
    parser.add_argument("--group", help="consumer group (with TOPIC_PREFIX, as ops named it)")
    parser.add_argument("--from-end", action="store_true", help="only what comes from now on")
    parser.add_argument("--schemas", type=Path, default=SCHEMAS, help="the JSON Schemas")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between summaries")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args, os.environ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
