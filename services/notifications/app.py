"""The notifications service: FastStream app, settings, dispatcher and HTTP routes."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Self

from faststream.asgi import AsgiResponse
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.notifications.channels import ProviderConfig, Providers, worst_case_s
from services.notifications.handlers import (
    CONSUMES,
    MESSAGES,
    PRODUCES,
    RENEW_FRACTION,
    Deps,
    Rules,
    dispatch_due,
    handle_events,
    system_clock,
)
from services.notifications.store import NotificationStore
from services.notifications.templates import Templates
from shared.http import Request, Route, ServiceApp, json_response
from shared.kafka import make_broker
from shared.mongo import Outbox, make_client
from shared.service import service_app
from shared.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    """Provider defaults point at the local stand-in that `make up` / `make run` start."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFICATIONS_", populate_by_name=True, extra="ignore"
    )

    development_secrets = ("whatsapp_token", "sms_api_key")

    service_name: str = "notifications"
    mongodb_database: str = "notifications"
    http_port: int = 8004
    whatsapp_base_url: str = "http://127.0.0.1:8025/whatsapp"
    whatsapp_phone_number_id: str = "jakpreneur-local"
    whatsapp_token: SecretStr = Field(
        default=SecretStr("local-stand-in-token"), description="Bearer token."
    )
    sms_base_url: str = "http://127.0.0.1:8025/sms"
    sms_api_key: SecretStr = SecretStr("local-stand-in-key")
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
    lease_s: float = Field(
        default=90,
        gt=0,
        description="How long a dispatcher holds the messages it is sending (renewed every "
        "quarter of it while it works); a crashed replica's messages go out this long after.",
    )

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Self:
        """A round starts a channel's send only while its lease outlasts the send's worst case
        (every attempt timing out, plus the backoff), and renews the lease every
        ``RENEW_FRACTION`` of it; a shorter lease would let another replica take a message
        whose send is still under way, and send it twice, or never let a send start."""
        worst = worst_case_s(
            self.provider_attempts, self.provider_timeout_s, self.provider_backoff_s
        )
        if self.lease_s * (1 - RENEW_FRACTION) <= worst:
            raise ValueError(
                f"lease_s ({self.lease_s:g}) must exceed a send's worst case ({worst:g} s: "
                f"provider_attempts x provider_timeout_s + backoff) by a renewal interval, "
                f"i.e. be more than {worst / (1 - RENEW_FRACTION):g} s"
            )
        return self


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
    # a missing or broken template fails here, at start-up
    templates = Templates(list(MESSAGES.values()))
    providers = Providers(
        ProviderConfig(
            whatsapp_base_url=settings.whatsapp_base_url,
            whatsapp_phone_number_id=settings.whatsapp_phone_number_id,
            whatsapp_token=settings.whatsapp_token.get_secret_value(),
            sms_base_url=settings.sms_base_url,
            sms_api_key=settings.sms_api_key.get_secret_value(),
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
        lease=timedelta(seconds=settings.lease_s),
        instance=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
    )

    async def prepare() -> None:
        # No reset of "sending" jobs here: those are another replica's sends in flight, or a
        # crashed one's, which any dispatcher takes over once their lease runs out.
        await store.ensure_indexes()

    async def notifications(request: Request) -> AsgiResponse:
        """Only ops and the participant themself read it (shared.auth.ROLES): no scope
        needs a participant's region here, so the service keeps none."""
        pid = request.params["participant_id"]
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
        path_routes=[
            Route("/participants/{participant_id}/notifications", "notifications", notifications)
        ],
        cleanup=providers.close,
    )
