"""Scale out, not just up (issue 15): two replicas of every service, each pair sharing its
consumer group (the same settings, topic prefix and database; only the HTTP port differs),
give the same results as one replica would.

Eight real service processes on a fresh prefix and fresh databases; the test plays the
portal and submits seeded registrations, then waits until every submission is answered and
every registered participant is enrolled and has both of its messages (the welcome and the
enrolment). What one replica gives is read off the generator's own data: every submission
answered once, with the reason its generator broke (or registered); each valid NIK
registered once; each registered participant enrolled once (no cohort over capacity) and
sent each message once, by the provider stand-in's raw count of requests per idempotency
key. Events are counted by ce_id: the outbox relay may publish an event twice, with one
ce_id, and consumers drop the repeat.

The topics are made with ``TOPIC_PARTITIONS=4`` (set here, whatever the environment says):
with round-robin assignment and an even number of partitions per topic, each of two
replicas is assigned half of every topic, so neither can be left idle. The load is sent
only once each replica's ``/metrics`` shows its half of the partitions it reads (its
consumer-lag gauge has a sample per assigned partition), and afterwards each replica's
``/metrics`` must show that it consumed records (and, for notifications, that it published
the outcomes of messages it sent).

The order of a participant's two messages is not checked: they are caused by events on two
topics (``participant-registered`` and coaching's ``training-enrolled``), which even a single
replica may read in either order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from deploy.local.launcher import free_port
from services.coaching.app import CoachingSettings
from shared.contracts import (
    NotificationFailed,
    NotificationSent,
    ParticipantContact,
    ParticipantRegistered,
    RegistrationRejected,
    RegistrationSubmitted,
    TrainingEnrolled,
)
from shared.kafka import dlq_topic
from tests import auth_helpers, waiting
from tests.conftest import Servers, Upstream, random_id
from tests.kafka_helpers import Collector, Seen, spawn_service, wait_ready
from tests.notifications.fixtures import stand_in_providers
from tools.registrations import Generator, headers_for

pytestmark = pytest.mark.integration

SUBMISSIONS = 600
SEED = 15_2024  # issue 15: the same submissions on every run
SERVICES = ("registry", "coaching", "marketplace", "notifications")
REPLICAS = 2
PARTITIONS = 4  # even: round-robin gives each of two replicas half of every topic
TEMPLATES = (ParticipantRegistered.name, TrainingEnrolled.name)  # the welcome, the enrolment
DEADLINE_S = 75  # for the whole flow, from the first submission to the last message


@dataclass
class Replica:
    service: str
    number: int
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def name(self) -> str:
        return f"{self.service}-{self.number}"


class Distinct:
    """The records of a Collector, one per ce_id (a republished event is the same event: its
    topic, key and value are checked to be the same), with their JSON read once."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.read = 0
        self.by_id: dict[str, tuple[Seen, dict[str, Any]]] = {}
        self.repeats = 0

    def update(self) -> None:
        records = self.collector.records
        for record in records[self.read :]:
            ce_id = record.headers.get("ce_id") or f"{record.topic}@{record.offset}"
            first = self.by_id.get(ce_id)
            if first is None:
                self.by_id[ce_id] = (record, record.json())
                continue
            self.repeats += 1
            assert (first[0].topic, first[0].key, first[0].value) == (
                record.topic,
                record.key,
                record.value,
            ), f"two different events with ce_id {ce_id}"
        self.read = len(records)

    def on(self, topic: str) -> list[tuple[Seen, dict[str, Any]]]:
        self.update()
        return [(r, data) for r, data in self.by_id.values() if r.topic == topic]


async def until(condition: Callable[[], bool], deadline: float, what: str) -> None:
    """:func:`tests.waiting.until` for a ``deadline`` (monotonic) that several waits share."""
    await waiting.until(what, condition, deadline - time.monotonic())


def service_env(
    servers: Servers, service: str, prefix: str, database: str, extra: dict[str, str]
) -> dict[str, str]:
    """Both replicas' environment but the HTTP port: one principal, prefix and database."""
    up = service.upper()
    return {
        **servers.env_for(service, prefix, database),
        "TOPIC_PARTITIONS": str(PARTITIONS),
        f"{up}_MONGODB_DATABASE": database,
        f"{up}_OUTBOX_RELAY_INTERVAL_S": "0.2",
        **extra,
    }


@dataclass(frozen=True)
class Scrape:
    """What a replica's ``/metrics`` says: records its FastStream subscriber received and
    its publishers published, its outbox backlog, and the partitions assigned to it (the
    consumer-lag gauge has a sample for each, once fetched)."""

    received: float
    published: float
    backlog: float
    assigned: frozenset[tuple[str, int]]


async def scrape(http: httpx.AsyncClient, replica: Replica) -> Scrape:
    text = (await http.get(f"{replica.url}/metrics")).text
    totals: dict[str, float] = defaultdict(float)
    assigned = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] += sample.value
            if sample.name == "jakpreneur_consumer_lag":
                assigned.add((sample.labels["topic"], int(sample.labels["partition"])))
    return Scrape(
        totals["faststream_received_messages_total"],
        totals["faststream_published_messages_total"],
        totals["jakpreneur_outbox_backlog"],
        frozenset(assigned),
    )


def shared_out(scrapes: list[Scrape], topics: list[str]) -> bool:
    """Whether the replicas' assignments split every partition of ``topics`` between them,
    none idle."""
    everything = {(t, p) for t in topics for p in range(PARTITIONS)}
    mine = [s.assigned & everything for s in scrapes]
    return (
        all(mine)
        and sum(len(m) for m in mine) == len(everything)
        and set().union(*mine) == everything
    )


async def groups_caught_up(
    admin: AIOKafkaAdminClient, ends: dict[TopicPartition, int], readers: dict[str, list[str]]
) -> bool:
    """Whether each group has committed every record of the topics it reads here."""
    for group, topics in readers.items():
        committed = await admin.list_consumer_group_offsets(group)
        for tp, end in ends.items():
            if tp.topic in topics and end > 0:
                meta = committed.get(tp)
                if meta is None or meta.offset < end:
                    return False
    return True


@contextlib.contextmanager
def terminated(replicas: list[Replica]) -> Iterator[None]:
    """On the way out, every process ends: SIGTERM (a clean shutdown), then SIGKILL."""
    try:
        yield
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for replica in replicas:
            try:
                replica.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()


async def test_two_replicas_of_each_service_give_the_results_of_one(
    servers: Servers, producer: Upstream, tmp_path: Path
) -> None:
    prefix = random_id("replicas-") + "."
    batch = Generator(seed=SEED).batch(SUBMISSIONS, invalid_rate=0.1, duplicate_rate=0.05)
    code_of = {data["submission_id"]: code for data, code in batch}
    nik_of = {data["submission_id"]: data["nik"] for data, _ in batch}
    valid_niks = {data["nik"] for data, code in batch if code is None}
    assert len(valid_niks) == sum(code is None for _, code in batch)  # the seed's own check
    assert Counter(code_of.values())["already-registered"] > 0  # twins race across replicas
    capacity = CoachingSettings.model_fields["cohort_capacity"].default
    databases = {service: random_id(f"{service}_") for service in SERVICES}
    replicas: list[Replica] = []

    async with stand_in_providers() as (stand_in, providers_url, smtp_port):
        extra: dict[str, dict[str, str]] = {service: {} for service in SERVICES}
        extra["notifications"] = {  # quiet hours off: the processes' clock is real
            "NOTIFICATIONS_WHATSAPP_BASE_URL": f"{providers_url}/whatsapp",
            "NOTIFICATIONS_SMS_BASE_URL": f"{providers_url}/sms",
            "NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
            "NOTIFICATIONS_SMTP_PORT": str(smtp_port),
            "NOTIFICATIONS_QUIET_START_HOUR": "0",
            "NOTIFICATIONS_QUIET_END_HOUR": "0",
            "NOTIFICATIONS_DISPATCH_INTERVAL_S": "0.2",
        }
        spawned = time.monotonic()
        with terminated(replicas):
            for service in SERVICES:
                env = service_env(servers, service, prefix, databases[service], extra[service])
                for number in range(1, REPLICAS + 1):
                    port = free_port()
                    log = tmp_path / f"{service}-{number}.log"
                    process = spawn_service(
                        f"services.{service}",
                        {**env, f"{service.upper()}_HTTP_PORT": str(port)},
                        log,
                    )
                    replicas.append(
                        Replica(service, number, f"http://127.0.0.1:{port}", process, log)
                    )
            await asyncio.gather(*(wait_ready(r.url, r.process, timeout=90) for r in replicas))
            ready = time.monotonic() - spawned

            def topic(name: str) -> str:
                return prefix + name

            answers, registered_topic = (
                topic(RegistrationRejected.name),
                topic(ParticipantRegistered.name),
            )
            inputs = [
                topic(e.name)
                for e in (
                    RegistrationSubmitted,
                    ParticipantRegistered,
                    ParticipantContact,
                    TrainingEnrolled,
                )
            ]
            watched = [
                registered_topic,
                answers,
                topic(TrainingEnrolled.name),
                topic(NotificationSent.name),
                topic(NotificationFailed.name),
                *(dlq_topic(t) for t in inputs),
            ]
            readers = {  # what each service's group reads in this flow
                "registry": [topic(RegistrationSubmitted.name), topic(TrainingEnrolled.name)],
                "coaching": [registered_topic],
                "marketplace": [registered_topic],
                "notifications": [
                    registered_topic,
                    topic(ParticipantContact.name),
                    topic(TrainingEnrolled.name),
                ],
            }
            async with contextlib.AsyncExitStack() as clients:
                collector = await Collector(servers.kafka, watched).start()
                clients.push_async_callback(collector.stop)
                events = Distinct(collector)
                admin = AIOKafkaAdminClient(**servers.kafka.client_kwargs())
                await admin.start()
                clients.push_async_callback(admin.close)
                http = await clients.enter_async_context(httpx.AsyncClient())

                async def unshared() -> list[str]:
                    scrapes = {r.name: await scrape(http, r) for r in replicas}
                    return [
                        service
                        for service, topics in readers.items()
                        if not shared_out(
                            [s for n, s in scrapes.items() if n.startswith(service)], topics
                        )
                    ]

                # Before the load: each group has both replicas, each with its share.
                await waiting.until(
                    "each group shared out between its replicas", unshared, 60, done=lambda u: not u
                )

                # The portal submits, as the simulator's principal.
                started = time.monotonic()
                sends = [
                    await producer.send(
                        topic(RegistrationSubmitted.name),
                        json.dumps(data).encode(),
                        key=data["submission_id"].encode(),
                        headers=[
                            (k, v.encode()) for k, v in headers_for(data["submission_id"]).items()
                        ],
                    )
                    for data, _ in batch
                ]
                await asyncio.gather(*sends)
                deadline = started + DEADLINE_S

                def answered() -> set[str]:
                    return {
                        data["submission_id"]
                        for t in (registered_topic, answers)
                        for _, data in events.on(t)
                    }

                await until(lambda: answered() >= set(code_of), deadline, "every answer")
                pids = {data["participant_id"] for _, data in events.on(registered_topic)}

                def enrolled() -> set[str]:
                    return {d["participant_id"] for _, d in events.on(topic(TrainingEnrolled.name))}

                def messaged() -> set[tuple[str, str]]:
                    return {
                        (d["participant_id"], d["template"])
                        for _, d in events.on(topic(NotificationSent.name))
                    }

                await until(lambda: enrolled() >= pids, deadline, "every enrolment")
                wanted = {(pid, template) for pid in pids for template in TEMPLATES}
                await until(lambda: messaged() >= wanted, deadline, "every message")
                elapsed = time.monotonic() - started

                # Quiet: every group has committed all it reads here, no outbox holds an
                # event, and the collector has read all that was published.
                ends = await collector.consumer.end_offsets(
                    [TopicPartition(t, p) for t in inputs for p in range(PARTITIONS)]
                )
                groups = {prefix + service: topics for service, topics in readers.items()}
                await waiting.until(
                    "the groups to commit everything",
                    lambda: groups_caught_up(admin, ends, groups),
                    deadline - time.monotonic(),
                )

                async def scraped() -> dict[str, Scrape]:
                    return {r.name: await scrape(http, r) for r in replicas}

                scrapes = await waiting.until(
                    "every outbox to be empty",
                    scraped,
                    deadline - time.monotonic(),
                    done=lambda found: all(s.backlog == 0 for s in found.values()),
                )
                await collector.caught_up()
                events.update()
                # Both registry replicas answer the same funnel, from the journeys both built.
                funnels = [
                    (await http.get(f"{r.url}/funnel", headers=auth_helpers.ops())).json()
                    for r in replicas
                    if r.service == "registry"
                ]
            dead = [str(r.log) for r in replicas if r.process.poll() is not None]
            assert dead == [], "replicas died; see their logs"

        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_uri)
        try:
            stored = {
                service: await mongo[databases[service]].participants.distinct("_id")
                for service in ("registry", "marketplace")
            }
            jobs = await mongo[databases["notifications"]].jobs.find().to_list()
        finally:
            await mongo.close()

    print(
        f"\n{len(replicas)} processes ready in {ready:.1f} s; "
        f"{SUBMISSIONS} submissions: all answered, enrolled and messaged in {elapsed:.1f} s; "
        f"{events.repeats} records republished under a ce_id already seen; per replica: "
        + ", ".join(
            f"{name} received {s.received:.0f} published {s.published:.0f}"
            for name, s in scrapes.items()
        )
    )

    # Exactly one answer per submission, the one its generator meant.
    answer_events = events.on(registered_topic) + events.on(answers)
    per_submission = Counter(data["submission_id"] for _, data in answer_events)
    assert set(per_submission) == set(code_of)
    assert {sid: n for sid, n in per_submission.items() if n != 1} == {}
    rejected = {data["submission_id"]: data for _, data in events.on(answers)}
    registered = {data["submission_id"]: data for _, data in events.on(registered_topic)}
    wrong = {
        sid: [r["code"] for r in data["reasons"]]
        for sid, data in rejected.items()
        if [r["code"] for r in data["reasons"]]
        != [code_of[sid] if code_of[sid] is not None else "already-registered"]
    }
    assert wrong == {}
    # Each valid NIK registered once (of twins, either may come first, with one replica too),
    # and nothing else registered.
    assert all(code_of[sid] in (None, "already-registered") for sid in registered)
    assert Counter(nik_of[sid] for sid in registered) == Counter(valid_niks)
    assert len(pids) == len(registered) == len(valid_niks)
    assert set(stored["registry"]) == pids
    assert set(stored["marketplace"]) == pids

    counts = [{row["stage"]: row["count"] for row in f["stages"]} for f in funnels]
    assert [f["participants"] for f in funnels] == [len(pids)] * REPLICAS
    assert [(c["registered"], c["training-enrolled"]) for c in counts] == [
        (len(pids), len(pids))
    ] * REPLICAS

    # Exactly one enrolment per registered participant, caused by its registration, and no
    # cohort over capacity.
    cause_of = {
        data["participant_id"]: r.headers["ce_id"] for r, data in events.on(registered_topic)
    }
    enrolments = events.on(topic(TrainingEnrolled.name))
    assert Counter(d["participant_id"] for _, d in enrolments) == Counter(pids)
    assert all(r.headers["ce_causationid"] == cause_of[d["participant_id"]] for r, d in enrolments)
    seats = Counter(d["cohort_id"] for _, d in enrolments)
    assert max(seats.values()) <= capacity
    enrolment_of = {d["participant_id"]: r.headers["ce_id"] for r, d in enrolments}

    # Exactly one message per participant and template, none failed, each for its cause, and
    # each reached the provider once (its raw count of requests, before de-duplication).
    sent = events.on(topic(NotificationSent.name))
    assert Counter((d["participant_id"], d["template"]) for _, d in sent) == Counter(wanted)
    assert events.on(topic(NotificationFailed.name)) == []
    cause = {ParticipantRegistered.name: cause_of, TrainingEnrolled.name: enrolment_of}
    assert all(d["cause_event_id"] == cause[d["template"]][d["participant_id"]] for _, d in sent)
    keys = {f"{cause[template][pid]}:{pid}" for pid, template in wanted}
    assert stand_in.received == dict.fromkeys(keys, 1)
    assert stand_in.deliveries == dict.fromkeys(keys, 1)
    assert sorted(j["_id"] for j in jobs) == sorted(keys)
    assert {j["status"] for j in jobs} == {"sent"}

    # Nothing dead-lettered.
    assert [r.topic for r, _ in events.by_id.values() if r.topic.endswith(".dlq")] == []

    # Both replicas of every service did work: each consumed records, and each
    # notifications replica published outcomes of the messages it sent.
    assert [name for name, s in scrapes.items() if s.received <= 0] == []
    senders = [r.name for r in replicas if r.service == "notifications"]
    assert [name for name in senders if scrapes[name].published <= 0] == []
