"""``make bench``: the pipeline under load on a fresh local stack, beside a bare aiokafka
baseline with the same number of hops, in the same run.

It submits N registrations (default 50,000; ``--participants 377625`` is the 2024
population) as fast as the broker takes them (or ``--rate R`` per second), and runs until
every submission has its outcome, every registered participant is enrolled in training and
has been sent the welcome message (to the local provider stand-in). It reports throughput
per stage and end to end, latency p50/p95/p99 from submission to `participant-registered`,
`training-enrolled` and `notification-sent` (from the events' own times), and peak RSS and
CPU seconds of each service, Kafka and mongod, and CPU milliseconds per participant summed
over them: from each process's start, over the run, and over the run less the idle stack's
polling (watched for ``IDLE_S`` before the load). Then the baseline: three consume->produce
hops, no validation and no database, over as many messages: the ceiling of this broker on
this machine, with its CPU per message (Kafka's and the relays' process's). Output: JSON
(``--out``) and a markdown table.

The pipeline is fed and watched as the simulator's principal (it plays the portal); the
baseline creates topics and consumer groups of its own, outside the catalogue, so it runs
as the stack's super user (``KAFKA_ADMIN_USERNAME``/``KAFKA_ADMIN_PASSWORD``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deploy.local.launcher import Server
from deploy.local.stack import RUN_DIR, Stack
from shared.contracts import (
    NotificationSent,
    ParticipantRegistered,
    RegistrationRejected,
    RegistrationSubmitted,
    TrainingEnrolled,
)
from shared.envelope import new_envelope
from shared.kafka import KafkaAccess
from tools.registrations import Generator

console = Console(stderr=True)
COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
HOPS = 3  # registration -> registered -> enrolled -> welcomed


class _Lines:
    """On a terminal rich draws the bars; elsewhere (CI, a log file) a line every 5 s."""

    def __init__(self) -> None:
        self.due = time.monotonic() + 5

    def __call__(self, progress: Progress) -> None:
        if console.is_terminal or time.monotonic() < self.due:
            return
        self.due = time.monotonic() + 5
        counts = (
            f"{t.description.strip()} {t.completed:.0f}/{t.total or 0:.0f}" for t in progress.tasks
        )
        console.print(" | ".join(counts), highlight=False)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if len(values) < 2:
        return {"p50": None, "p95": None, "p99": None}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(q[49], 1), "p95": round(q[94], 1), "p99": round(q[98], 1)}


def _resources(servers: list[Server]) -> dict[str, dict[str, float]]:
    """Peak RSS (MB) and CPU seconds of each process, read from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for server in servers:
        if server.process is None:
            continue
        pid = server.process.pid
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
        out[server.name] = {
            "peak_rss_mb": round(int(hwm.split()[1]) / 1024, 1),
            "cpu_s": round((int(stat[11]) + int(stat[12])) / tick, 2),
        }
    return out


IDLE_S = 10.0  # how long the idle stack is watched before the load, for its polling cost


def cpu_accounting(
    started: dict[str, dict[str, float]],
    idle: dict[str, dict[str, float]],
    ended: dict[str, dict[str, float]],
    run_s: float,
    participants: int,
) -> dict[str, Any]:
    """CPU per participant, summed over every process, counted three ways: from each
    process's start (start-up, idle polling and all), over the run only (``ended`` minus
    ``idle``, the snapshot taken as the load began), and over the run less what the same
    processes spend idle in as long (measured for ``IDLE_S`` before the load): the work."""

    def total(snapshot: dict[str, dict[str, float]]) -> float:
        return sum(r["cpu_s"] for r in snapshot.values())

    idle_per_s = max(0.0, total(idle) - total(started)) / IDLE_S
    during = total(ended) - total(idle)
    work = max(0.0, during - idle_per_s * run_s)
    per = 1000 / max(participants, 1)
    return {
        "from_start_ms": round(total(ended) * per, 2),
        "during_run_ms": round(during * per, 2),
        "work_ms": round(work * per, 2),
        "idle_cpu_s_per_s": round(idle_per_s, 3),
        "per_process_during_run_ms": {
            name: round((r["cpu_s"] - idle.get(name, {"cpu_s": 0.0})["cpu_s"]) * per, 3)
            for name, r in ended.items()
        },
        "per_process_idle_cpu_s_per_s": {
            name: round(
                max(0.0, r["cpu_s"] - started.get(name, {"cpu_s": 0.0})["cpu_s"]) / IDLE_S, 4
            )
            for name, r in idle.items()
        },
    }


async def _consumer(kafka: KafkaAccess, topics: list[str]) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        **kafka.client_kwargs(),
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    partitions = []
    for topic in topics:
        for _ in range(100):
            found = consumer.partitions_for_topic(topic)
            if found:
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.2)
        partitions += [TopicPartition(topic, p) for p in sorted(found or ())]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)
    return consumer


async def pipeline(kafka: KafkaAccess, participants: int, rate: float | None) -> dict[str, Any]:
    batch = Generator(seed=377625).batch(participants, invalid_rate=0.02, duplicate_rate=0.0)
    topics = [
        ParticipantRegistered.name,
        RegistrationRejected.name,
        TrainingEnrolled.name,
        NotificationSent.name,
    ]
    consumer = await _consumer(kafka, topics)
    producer = AIOKafkaProducer(
        **kafka.client_kwargs(),
        acks="all",
        enable_idempotence=True,
        linger_ms=10,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    submitted_at: dict[str, datetime] = {}
    registered_at: dict[str, datetime] = {}  # participant -> submission time
    lat: dict[str, list[float]] = {"registered": [], "enrolled": [], "welcomed": []}
    last: dict[str, float] = {}
    outcomes = enrolled = welcomed = 0
    started = time.monotonic()

    async def submit(progress: Progress, task: Any) -> None:
        for i, (data, _) in enumerate(batch):
            if rate:
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            envelope = new_envelope(
                type=RegistrationSubmitted.ce_type(), source=RegistrationSubmitted.producers[0]
            )
            submitted_at[data["submission_id"]] = envelope.time
            await producer.send(
                RegistrationSubmitted.name,
                json.dumps(data).encode(),
                key=data["submission_id"].encode(),
                headers=[(k, v.encode()) for k, v in envelope.headers().items()],
            )
            if i % 1000 == 0:
                progress.update(task, completed=i)
        await producer.flush()
        progress.update(task, completed=len(batch))
        last["submitted"] = time.monotonic()

    try:
        with Progress(*COLUMNS, console=console) as progress:
            sending = progress.add_task("submitted", total=participants)
            answering = progress.add_task("answered ", total=participants)
            enrolling = progress.add_task("enrolled ", total=None)
            welcoming = progress.add_task("welcomed ", total=None)
            sender = asyncio.create_task(submit(progress, sending))
            deadline, quiet_since = time.monotonic() + 3600, time.monotonic()
            lines = _Lines()
            while time.monotonic() < deadline and time.monotonic() - quiet_since < 120:
                polled = await consumer.getmany(timeout_ms=500, max_records=10_000)
                now = time.monotonic()
                for records in polled.values():
                    for r in records:
                        quiet_since = now
                        headers = {k: v.decode() for k, v in r.headers}
                        at = datetime.fromisoformat(headers["ce_time"])
                        data = json.loads(r.value)
                        if r.topic == ParticipantRegistered.name:
                            sent = submitted_at.get(data["submission_id"])
                            if sent:
                                registered_at[data["participant_id"]] = sent
                                lat["registered"].append((at - sent).total_seconds() * 1000)
                            outcomes += 1
                            last["answered"] = now
                        elif r.topic == RegistrationRejected.name:
                            outcomes += 1
                            last["answered"] = now
                        elif r.topic == TrainingEnrolled.name:
                            sent = registered_at.get(data["participant_id"])
                            if sent:
                                lat["enrolled"].append((at - sent).total_seconds() * 1000)
                            enrolled += 1
                            last["enrolled"] = now
                        elif data.get("template") == ParticipantRegistered.name:
                            sent = registered_at.get(data["participant_id"])
                            if sent:
                                lat["welcomed"].append((at - sent).total_seconds() * 1000)
                            welcomed += 1
                            last["welcomed"] = now
                registered = len(registered_at)
                progress.update(answering, completed=outcomes)
                progress.update(enrolling, completed=enrolled, total=registered)
                progress.update(welcoming, completed=welcomed, total=registered)
                lines(progress)
                if outcomes >= participants and enrolled >= registered and welcomed >= registered:
                    break
            await sender
    finally:
        await producer.stop()
        await consumer.stop()
    registered = len(registered_at)

    def rate_of(stage: str, count: int) -> float | None:
        return round(count / (last[stage] - started), 1) if stage in last else None

    return {
        "participants": participants,
        "registered": registered,
        "answered": outcomes,
        "enrolled": enrolled,
        "welcomed": welcomed,
        "complete": outcomes >= participants and enrolled >= registered and welcomed >= registered,
        "seconds_end_to_end": round(max(last.values()) - started, 1),
        "throughput_per_s": {
            "submitted": rate_of("submitted", participants),
            "answered": rate_of("answered", outcomes),
            "enrolled": rate_of("enrolled", enrolled),
            "welcomed": rate_of("welcomed", welcomed),
        },
        "latency_ms": {stage: _percentiles(values) for stage, values in lat.items()},
    }


async def baseline(kafka: KafkaAccess, messages: int) -> dict[str, Any]:
    """Bare aiokafka: HOPS consume->produce relays, no validation, no database. ``kafka``
    creates topics and groups no catalogue ACL covers: the stack's super user."""
    run = uuid.uuid4().hex[:8]
    topics = [f"bench-baseline-{run}.hop{n}" for n in range(HOPS + 1)]
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    await admin.create_topics([NewTopic(t, 6, 1) for t in topics])
    await admin.close()
    producer = AIOKafkaProducer(
        **kafka.client_kwargs(),
        acks="all",
        enable_idempotence=True,
        linger_ms=10,
        max_batch_size=256 * 1024,
    )
    await producer.start()

    async def relay(source: str, target: str) -> None:
        consumer = AIOKafkaConsumer(
            source,
            **kafka.client_kwargs(),
            group_id=f"{source}-g",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            while True:
                polled = await consumer.getmany(timeout_ms=200, max_records=5000)
                for records in polled.values():
                    for r in records:
                        await producer.send(target, r.value, key=r.key)
                await producer.flush()
                if polled:
                    await consumer.commit()
        finally:
            await consumer.stop()

    sink = await _consumer(kafka, [topics[-1]])
    relays = [asyncio.create_task(relay(a, b)) for a, b in itertools.pairwise(topics)]
    started = time.monotonic()
    payload = b'{"submission_id": "x", "padding": "' + b"x" * 400 + b'"}'
    for i in range(messages):
        await producer.send(topics[0], payload, key=str(i).encode())
    await producer.flush()
    received = 0
    with Progress(*COLUMNS, console=console) as progress:
        task = progress.add_task("baseline ", total=messages)
        lines = _Lines()
        while received < messages and time.monotonic() - started < 1800:
            polled = await sink.getmany(timeout_ms=500, max_records=10_000)
            received += sum(len(r) for r in polled.values())
            progress.update(task, completed=received)
            lines(progress)
    seconds = time.monotonic() - started
    for t in relays:
        t.cancel()
    await asyncio.gather(*relays, return_exceptions=True)
    await sink.stop()
    await producer.stop()
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        await admin.delete_topics(topics)  # the baseline leaves nothing behind
    finally:
        await admin.close()
    return {
        "messages": messages,
        "hops": HOPS,
        "seconds": round(seconds, 1),
        "throughput_per_s": round(received / seconds, 1),
    }


def markdown(report: dict[str, Any]) -> str:
    p, b = report["pipeline"], report["baseline"]
    lines = [
        f"# Benchmark: {p['participants']:,} registrations ({report['mode']})",
        "",
        f"Machine: {report['machine']}. Kafka and mongod: {report['servers']}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| end to end (all answered, enrolled, welcomed) | {p['seconds_end_to_end']} s |",
    ]
    for stage, value in p["throughput_per_s"].items():
        lines.append(f"| throughput, {stage} | {value} /s |")
    for stage, values in p["latency_ms"].items():
        lines.append(
            f"| latency submit -> {stage} p50 / p95 / p99 | "
            f"{values['p50']} / {values['p95']} / {values['p99']} ms |"
        )
    lines.append(f"| pipeline, end to end | {report['pipeline_end_to_end_per_s']} /s |")
    lines.append(f"| baseline ({b['hops']} bare hops) | {b['throughput_per_s']} /s |")
    lines.append(f"| pipeline / baseline | {report['pipeline_to_baseline']:.1%} |")
    cpu = report.get("cpu_per_participant")
    if cpu:
        lines += [
            f"| CPU per participant, all processes, from their start | {cpu['from_start_ms']} ms |",
            f"| CPU per participant, during the run | {cpu['during_run_ms']} ms |",
            f"| CPU per participant, during the run less idle polling | {cpu['work_ms']} ms |",
            f"| idle stack, all processes | {cpu['idle_cpu_s_per_s']} CPU-s per s |",
        ]
        for name, ms in cpu["per_process_during_run_ms"].items():
            lines.append(f"| {name}: CPU per participant, during the run | {ms} ms |")
    if "cpu_ms_per_message" in b:
        lines.append(
            f"| baseline: CPU per message (Kafka and the relays) | {b['cpu_ms_per_message']} ms |"
        )
    for name, r in report["resources"].items():
        lines.append(f"| {name}: peak RSS / CPU | {r['peak_rss_mb']} MB / {r['cpu_s']} s |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    parser.add_argument("--participants", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=None, help="submissions/s; default: burst")
    parser.add_argument("--out", type=Path, default=RUN_DIR / "bench.json")
    parser.add_argument(
        "--replicas", type=int, default=1, help="instances of each service (one group each)"
    )
    parser.add_argument(
        "--small-cache",
        action="store_true",
        help="run mongod with the tests' and the demo's 0.25 GB cache instead of 1 GB",
    )
    args = parser.parse_args()
    if (RUN_DIR / "stack.pid").exists():
        sys.exit("a stack started by `make up` is running; `make down` first")
    shutil.rmtree(RUN_DIR / "data", ignore_errors=True)
    # No quiet hours: a benchmark run at night must still see its welcome messages sent.
    stack = Stack(
        RUN_DIR,
        9092,
        9093,
        27017,
        service_env={
            "NOTIFICATIONS_QUIET_START_HOUR": "0",
            "NOTIFICATIONS_QUIET_END_HOUR": "0",
            "REGISTRY_LOG_LEVEL": "WARNING",
            "COACHING_LOG_LEVEL": "WARNING",
            "MARKETPLACE_LOG_LEVEL": "WARNING",
            "NOTIFICATIONS_LOG_LEVEL": "WARNING",
        },
        tuned=not args.small_cache,
        replicas=args.replicas,
    )
    try:
        env = stack.start()
        started = _resources(stack.started)
        time.sleep(IDLE_S)  # the idle stack's polling, to tell it from the run's work
        idle = _resources(stack.started)
        result = asyncio.run(pipeline(KafkaAccess.from_env(env), args.participants, args.rate))
        resources = _resources(stack.started)
        cpu = cpu_accounting(
            started, idle, resources, result["seconds_end_to_end"], args.participants
        )
        admin = KafkaAccess.from_env(env, admin=True)
        kafka_before, own_before = _resources([stack.kafka])["kafka"]["cpu_s"], time.process_time()
        base = asyncio.run(baseline(admin, args.participants))
        spent = _resources([stack.kafka])["kafka"]["cpu_s"] - kafka_before
        spent += time.process_time() - own_before  # the relays run in this process
        base["cpu_ms_per_message"] = round(spent * 1000 / max(args.participants, 1), 3)
    finally:
        stack.stop()
    end_to_end = result["participants"] / max(result["seconds_end_to_end"], 0.001)
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    report = {
        "mode": (f"steady {args.rate}/s" if args.rate else "burst")
        + (f", {args.replicas} replicas of each service" if args.replicas > 1 else ""),
        "machine": f"{os.cpu_count()} cores, {memory_gib} GiB, Python {sys.version.split()[0]}",
        "servers": "Kafka with the client JIT and SerialGC; mongod's cache "
        + ("0.25 GB" if args.small_cache else "1 GB"),
        "pipeline": result,
        "baseline": base,
        "pipeline_end_to_end_per_s": round(end_to_end, 1),
        "pipeline_to_baseline": end_to_end / base["throughput_per_s"],
        "resources": resources,
        "cpu_per_participant": cpu,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(markdown(report))


if __name__ == "__main__":
    main()
