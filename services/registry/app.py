"""The registry service: FastStream app, subscriber, lifespan and HTTP routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from faststream import AckPolicy
from faststream.asgi import AsgiResponse, AsyncAPIRoute
from faststream.kafka.annotations import KafkaMessage
from pydantic import Field, WithJsonSchema
from pydantic_settings import SettingsConfigDict

from services.registry.handlers import Deps, handle_submissions
from services.registry.store import PiiVault, RegistryStore
from shared.contracts import ParticipantRegistered, RegistrationRejected, RegistrationSubmitted
from shared.http import ServiceApp, json_response, probes
from shared.kafka import ensure_topics, make_broker, raw_body, records_of, tolerant_parser
from shared.logging import get_logger
from shared.mongo import Outbox, make_client
from shared.retry import retry_transient
from shared.settings import ServiceSettings

log = get_logger(__name__)

# Development keys, so that `make run` works out of the box. A deployment sets its own.
DEV_HASH_KEY = "dev-only-nik-lookup-key-change-me"
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktY2hhbmdlLW0="


class RegistrySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_", populate_by_name=True, extra="ignore")

    service_name: str = "registry"
    mongodb_database: str = "registry"
    http_port: int = 8001
    pii_hash_key: str = Field(default=DEV_HASH_KEY, description="HMAC key of NIK look-ups.")
    pii_encryption_key: str = Field(
        default=DEV_ENCRYPTION_KEY, description="Fernet key encrypting NIK and KK at rest."
    )
    batch_size: int = Field(default=200, ge=1, description="Records handled together.")


CONSUMES = (RegistrationSubmitted,)
PRODUCES = (ParticipantRegistered, RegistrationRejected)
SubmissionBatch = Annotated[list[bytes], WithJsonSchema(RegistrationSubmitted.model_json_schema())]


def create_app(settings: RegistrySettings | None = None) -> ServiceApp:
    settings = settings or RegistrySettings()
    broker = make_broker(settings)
    client = make_client(settings.mongodb_uri)
    store = RegistryStore(
        client,
        settings.mongodb_database,
        PiiVault(settings.pii_hash_key, settings.pii_encryption_key),
    )
    outbox = Outbox(store.db, broker)
    deps = Deps(settings=settings, broker=broker, store=store, outbox=outbox)
    relay: list[asyncio.Task[None]] = []

    @broker.subscriber(
        settings.topic(RegistrationSubmitted.name),
        group_id=settings.consumer_group,
        batch=True,
        max_records=settings.batch_size,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,  # commit only after every record of the batch is answered
        decoder=raw_body,
        parser=tolerant_parser,
        title=RegistrationSubmitted.name,
        description=RegistrationSubmitted.__doc__,
    )
    async def on_submissions(body: SubmissionBatch, message: KafkaMessage) -> None:
        await handle_submissions(records_of(message), deps)

    for event in PRODUCES:  # documents the outbound topics in the AsyncAPI schema
        broker.publisher(
            settings.topic(event.name), title=event.name, description=event.__doc__, schema=event
        )

    @contextlib.asynccontextmanager
    async def lifespan(**_: Any) -> AsyncIterator[None]:
        if settings.pii_hash_key == DEV_HASH_KEY:
            log.warning("using development PII keys; set REGISTRY_PII_* in a deployment")
        await retry_transient(store.ensure_indexes)
        await retry_transient(outbox.ensure_indexes)
        await retry_transient(
            lambda: ensure_topics(settings, [e.name for e in (*CONSUMES, *PRODUCES)])
        )
        yield
        await client.close()

    async def start_relay() -> None:
        relay.append(asyncio.create_task(outbox.run_relay(settings.outbox_relay_interval_s)))

    async def stop_relay() -> None:
        for task in relay:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await outbox.relay_pending()  # flush whatever the fast path left behind

    async def ready() -> dict[str, bool]:
        mongo_ok = True
        try:
            await client.admin.command("ping")
        except Exception:
            mongo_ok = False
        return {"kafka": await broker.ping(timeout=2), "mongodb": mongo_ok}

    async def participant(params: dict[str, str]) -> AsgiResponse:
        doc = await store.get_participant(params["participant_id"])
        if doc is None:
            return json_response({"error": "participant not found"}, 404)
        doc["participant_id"] = doc.pop("_id")
        return json_response(doc)

    return ServiceApp(
        broker,
        lifespan=lifespan,
        after_startup=[start_relay],
        on_shutdown=[stop_relay],
        asgi_routes=probes(ready),
        path_routes=[("/participants/{participant_id}", participant)],
        asyncapi_path=AsyncAPIRoute("/docs/asyncapi", asyncapi_json_path="/docs/asyncapi.json"),
        logger=get_logger("jakpreneur.faststream"),
    )
