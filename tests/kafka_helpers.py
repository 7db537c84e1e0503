"""Test-side Kafka helpers: read what services published, and know what they processed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local.launcher import die_with_parent
from shared.kafka import KafkaAccess


@dataclass(frozen=True)
class Seen:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.value)


class Collector:
    """Reads topics from their beginning in the background; tests wait on what arrived."""

    def __init__(self, kafka: KafkaAccess, topics: list[str]) -> None:
        self.kafka = kafka
        self.topics = topics
        self.records: list[Seen] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Collector:
        self.consumer = AIOKafkaConsumer(**self.kafka.client_kwargs(), enable_auto_commit=False)
        await self.consumer.start()
        self.partitions: list[TopicPartition] = []
        for topic in self.topics:
            for _ in range(100):
                found = self.consumer.partitions_for_topic(topic)
                if found:
                    break
                await self.consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            assert found, f"topic {topic} was never created"
            self.partitions += [TopicPartition(topic, p) for p in sorted(found)]
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for r in records:
                    headers = {k: (v or b"").decode() for k, v in r.headers}
                    self.records.append(
                        Seen(r.topic, r.partition, r.offset, r.key, r.value or b"", headers)
                    )

    def matching(self, predicate: Callable[[Seen], bool]) -> list[Seen]:
        return [r for r in self.records if predicate(r)]

    async def wait_for(
        self, predicate: Callable[[Seen], bool], count: int = 1, timeout: float = 60
    ) -> list[Seen]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.matching(predicate)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"waited {timeout}s for {count} records; saw {len(self.matching(predicate))}"
        )

    async def caught_up(self, timeout: float = 30) -> None:
        """Wait until everything published so far has been read."""
        ends = await self.consumer.end_offsets(self.partitions)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = {tp: await self.consumer.position(tp) for tp in ends}
            if all(positions[tp] >= end for tp, end in ends.items()):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("collector did not catch up")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self.consumer.stop()


async def wait_committed(
    kafka: KafkaAccess, group: str, topic: str, partition: int, offset: int, timeout: float = 60
) -> None:
    """Wait until ``group`` has committed past ``offset``: the service has processed it."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        tp = TopicPartition(topic, partition)
        while time.monotonic() < deadline:
            offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
            meta = offsets.get(tp)
            if meta is not None and meta.offset > offset:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{group} did not commit past {topic}[{partition}]@{offset}")
    finally:
        await admin.close()


async def send(
    producer: AIOKafkaProducer,
    topic: str,
    value: bytes,
    key: bytes | None,
    headers: dict[str, str] | list[tuple[str, bytes | None]],
) -> Any:
    """Produce one record and wait for its metadata (partition, offset)."""
    header_list = (
        [(k, v.encode()) for k, v in headers.items()] if isinstance(headers, dict) else headers
    )
    return await (await producer.send(topic, value, key=key, headers=header_list))


@contextlib.asynccontextmanager
async def serving(app: Any, port: int) -> AsyncIterator[str]:
    """Serve an ASGI service app in this process with uvicorn; yields its base URL once
    ``/readyz`` answers 200, and shuts it down (lifespan and all) afterwards. The socket is
    bound here: a port that free_port() found free can be taken by another connection's
    ephemeral port before it is bound, and then the app is served on a port of the
    system's choosing instead (the URL yielded says which)."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=5,  # a request left hanging must not hold the teardown
        )
    )
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:  # taken since free_port() looked
        sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                try:
                    if (await http.get(f"{url}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert not task.done(), "service stopped during start-up"
                await asyncio.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        await task
        sock.close()


def spawn_service(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Run a service as its own process (``python -m module``), as it runs in production.
    It dies with the test process, so a failed test leaves no service behind."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )


async def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the service exited during start-up"
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} not ready in {timeout}s")
