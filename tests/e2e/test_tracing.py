"""One participant's flow is one trace: each event's ``traceparent`` names the span that
produced it, in the trace its cause started; and spans reach an OTLP collector when one is
configured (here a small OTLP/HTTP receiver in the test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from deploy.local.launcher import free_port
from shared.contracts import ParticipantRegistered, RegistrationSubmitted, TrainingEnrolled
from tests import waiting
from tests.coaching.fixtures import CoachingUnderTest
from tests.conftest import Servers, random_id
from tests.kafka_helpers import Collector, spawn_service, wait_ready
from tests.registry.fixtures import Registry
from tools.registrations import Generator, headers_for

pytestmark = pytest.mark.integration


def trace_and_span(traceparent: str) -> tuple[str, str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16 and len(flags) == 2
    return trace_id, span_id


async def test_registry_and_coaching_events_of_one_participant_share_one_trace(
    registry: Registry, coaching: CoachingUnderTest
) -> None:
    data = Generator(seed=None).valid()
    await registry.submit(data)
    [answer] = await registry.outcomes_for(data["submission_id"])
    assert answer.topic == registry.registered_topic
    pid = answer.json()["participant_id"]
    [enrolled] = await coaching.events.wait_for(
        lambda r: r.topic == coaching.topic(TrainingEnrolled) and r.json()["participant_id"] == pid
    )
    registered_trace, registered_span = trace_and_span(answer.headers["traceparent"])
    enrolled_trace, enrolled_span = trace_and_span(enrolled.headers["traceparent"])
    assert enrolled_trace == registered_trace  # one flow, one trace
    assert enrolled_span != registered_span  # each hop its own span
    assert enrolled.headers["ce_causationid"] == answer.headers["ce_id"]


async def test_spans_are_exported_over_otlp_when_a_collector_is_configured(
    servers: Servers, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        received.append(export)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    collector_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", collector_port).start()

    prefix, port = random_id("otel-") + ".", free_port()
    database = random_id("registry_")
    env = {
        **servers.env_for("registry", prefix, database),
        "REGISTRY_MONGODB_DATABASE": database,
        "REGISTRY_HTTP_PORT": str(port),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    service = spawn_service("services.registry", env, tmp_path / "registry.log")
    outcomes = None
    try:
        await wait_ready(f"http://127.0.0.1:{port}", service)
        outcomes = await Collector(servers.kafka, [prefix + ParticipantRegistered.name]).start()
        data = Generator(seed=None).valid()
        await producer.send_and_wait(
            prefix + RegistrationSubmitted.name,
            json.dumps(data).encode(),
            key=data["submission_id"].encode(),
            headers=[(k, v.encode()) for k, v in headers_for(data["submission_id"]).items()],
        )
        [registered] = await outcomes.wait_for(lambda r: True)
        trace_id, span_id = trace_and_span(registered.headers["traceparent"])

        def exported() -> tuple[dict[str, str], Any] | None:
            for export in received:
                for resource_spans in export.resource_spans:
                    attributes = {
                        a.key: a.value.string_value for a in resource_spans.resource.attributes
                    }
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            if span.span_id.hex() == span_id:
                                return attributes, span
            return None

        found = await waiting.until("the span that produced participant-registered", exported, 30)
        assert found is not None, "the span that produced participant-registered was not exported"
        attributes, span = found
        assert attributes["service.name"] == "registry"
        assert span.trace_id.hex() == trace_id
        assert span.name == f"{prefix}{RegistrationSubmitted.name} process"
    finally:
        service.terminate()
        service.wait(timeout=30)
        if outcomes is not None:
            await outcomes.stop()
        await runner.cleanup()
