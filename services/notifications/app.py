"""The notifications service: FastStream app, settings, dispatcher and HTTP routes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from faststream.asgi import AsgiResponse
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.notifications.channels import ProviderConfig, Providers
from services.notifications.handlers import (
    CONSUMES,
    PRODUCES,
    Deps,
    Rules,
    dispatch_due,
    handle_events,
    system_clock,
)
from services.notifications.store import NotificationStore
from services.notifications.templates import Templates
from shared.http import ServiceApp, json_response
from shared.kafka import make_broker
from shared.logging import get_logger
from shared.mongo import Outbox, make_client
from shared.service import service_app
from shared.settings import ServiceSettings

log = get_logger(__name__)


class NotificationSettings(ServiceSettings):
    """Provider defaults point at the local stand-in that `make up` / `make run` start."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFICATIONS_", populate_by_name=True, extra="ignore"
    )

    service_name: str = "notifications"
    mongodb_database: str = "notifications"
    http_port: int = 8004
    whatsapp_base_url: str = "http://127.0.0.1:8025/whatsapp"
    whatsapp_phone_number_id: str = "jakpreneur-local"
    whatsapp_token: str = Field(default="local-stand-in-token", description="Bearer token.")
    sms_base_url: str = "http://127.0.0.1:8025/sms"
    sms_api_key: str = "local-stand-in-key"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    mail_from: str = "Jakpreneur <noreply@jakpreneur.jakarta.go.id>"
    provider_timeout_s: float = Field(default=10, gt=0)
    provider_attempts: int = Field(default=4, ge=1, description="Tries per channel, transient.")
    provider_backoff_s: float = Field(default=0.5, gt=0, description="First retry delay.")
    daily_limit: int = Field(default=5, ge=1, description="Messages per participant per day.")
    quiet_start_hour: int = Field(default=21, ge=0, le=23)
    quiet_end_hour: int = Field(default=7, ge=0, le=23)
    contact_wait_s: float = Field(
        default=24 * 3600, gt=0, description="How long a message waits for its contact."
    )
    dispatch_interval_s: float = Field(default=1.0, gt=0)


def create_app(
    settings: NotificationSettings | None = None,
    clock: Callable[[], datetime] = system_clock,
) -> ServiceApp:
    """``clock`` is injectable so tests can stand in quiet hours or the next day."""
    settings = settings or NotificationSettings()
    broker = make_broker(settings)
    client = make_client(settings.mongodb_uri)
    store = NotificationStore(client, settings.mongodb_database)
    outbox = Outbox(store.db, broker)
    templates = Templates(CONSUMES)  # a missing or broken template fails here, at start-up
    providers = Providers(
        ProviderConfig(
            whatsapp_base_url=settings.whatsapp_base_url,
            whatsapp_phone_number_id=settings.whatsapp_phone_number_id,
            whatsapp_token=settings.whatsapp_token,
            sms_base_url=settings.sms_base_url,
            sms_api_key=settings.sms_api_key,
            smtp_host=settings.smtp_host,
            smtp_port=settings.smtp_port,
            mail_from=settings.mail_from,
            timeout_s=settings.provider_timeout_s,
            attempts=settings.provider_attempts,
            backoff_s=settings.provider_backoff_s,
        )
    )
    deps = Deps(
        settings=settings,
        broker=broker,
        store=store,
        outbox=outbox,
        templates=templates,
        providers=providers,
        rules=Rules(
            daily_limit=settings.daily_limit,
            quiet_start_hour=settings.quiet_start_hour,
            quiet_end_hour=settings.quiet_end_hour,
            contact_wait=timedelta(seconds=settings.contact_wait_s),
        ),
        clock=clock,
    )

    async def prepare() -> None:
        await store.ensure_indexes()
        recovered = await store.recover_interrupted()
        if recovered:
            log.warning("messages interrupted mid-send will be sent again", count=recovered)

    async def notifications(params: dict[str, str]) -> AsgiResponse:
        pid = params["participant_id"]
        log_entries = await store.log_of(pid)
        for entry in log_entries:
            entry["message_id"] = entry.pop("_id")
        return json_response({"participant_id": pid, "messages": log_entries})

    return service_app(
        settings,
        broker=broker,
        client=client,
        outbox=outbox,
        consumes=CONSUMES,
        produces=PRODUCES,
        handle_batch=lambda records: handle_events(records, deps),
        prepare=prepare,
        periodic=[(settings.dispatch_interval_s, lambda: dispatch_due(deps))],
        path_routes=[("/participants/{participant_id}/notifications", notifications)],
        cleanup=providers.close,
    )
