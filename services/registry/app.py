"""The registry service: FastStream app, subscriber, lifespan and HTTP routes."""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path
from typing import Any, Self

from faststream.asgi import AsgiResponse
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.registry import erasure, journey
from services.registry.handlers import Deps, handle_batch
from services.registry.store import SINGLE_KEY_ID, PiiVault, RegistryStore, parse_key_ring
from shared.auth import Subject, withhold
from shared.contracts import consumed_by, produced_by
from shared.http import Request, Route, ServiceApp, document_response, json_response
from shared.kafka import make_broker
from shared.logging import get_logger
from shared.mongo import Outbox, make_client
from shared.service import service_app
from shared.settings import ServiceSettings

log = get_logger(__name__)

# Development keys, so that `make run` works out of the box. A deployment sets its own.
DEV_HASH_KEY = "dev-only-nik-lookup-key-change-me"
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktY2hhbmdlLW0="


class PiiKeys(BaseSettings):
    """The registry's PII keys (``REGISTRY_PII_*``), alone: what the service and
    ``jakpreneur keys rotate`` both read.

    Each is a key ring, ``id:key,id:key,...`` with the current key first:
    ``REGISTRY_PII_HASH_KEYS`` (HMAC keys of NIK look-ups; every NIK is hashed under each)
    and ``REGISTRY_PII_ENCRYPTION_KEYS`` (Fernet keys; new values are encrypted under the
    first, the others still decrypt). Without a ring, the single ``REGISTRY_PII_HASH_KEY`` /
    ``REGISTRY_PII_ENCRYPTION_KEY`` is a one-key ring with the id ``0`` (so deployments and
    manifests from before key rings work unchanged); with a ring, the single field is set to
    the ring's current key, so that the refusal of development keys sees the key in use.
    A ring that cannot be used stops the start with :class:`KeyRingError`, which names the
    variable and a key's id, never a key.
    """

    model_config = SettingsConfigDict(env_prefix="REGISTRY_", populate_by_name=True, extra="ignore")

    # Secrets: never in a repr, a log or an error's text.
    pii_hash_key: SecretStr = Field(
        default=SecretStr(DEV_HASH_KEY),
        description="HMAC key of NIK look-ups (the current one, with a ring).",
    )
    pii_encryption_key: SecretStr = Field(
        default=SecretStr(DEV_ENCRYPTION_KEY),
        description="Fernet key encrypting NIK and KK at rest (the current one, with a ring).",
    )
    pii_hash_keys: SecretStr = Field(
        default=SecretStr(""),
        description="Ring of NIK look-up keys, `id:key,...`, current first; replaces "
        "pii_hash_key when set. Keep a retired key until `jakpreneur keys rotate` has run.",
    )
    pii_encryption_keys: SecretStr = Field(
        default=SecretStr(""),
        description="Ring of Fernet keys, `id:key,...`, current first; replaces "
        "pii_encryption_key when set. Keep a retired key until `jakpreneur keys rotate` has run.",
    )

    @model_validator(mode="before")
    @classmethod
    def _current_key_from_ring(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for single, ring in RINGS.items():
            text = _secret_text(data.get(ring))
            if text:
                data = {**data, single: parse_key_ring(text, _variable(ring))[0][1]}
        return data

    @model_validator(mode="after")
    def _usable_rings(self) -> Self:
        self.pii_vault()  # every key parses (a Fernet key is 32 bytes): KeyRingError if not
        return self

    def hash_ring(self) -> list[tuple[str, str]]:
        return self._ring("pii_hash_key")

    def encryption_ring(self) -> list[tuple[str, str]]:
        return self._ring("pii_encryption_key")

    def _ring(self, single: str) -> list[tuple[str, str]]:
        ring = RINGS[single]
        text = _secret_text(getattr(self, ring))
        if text:
            return parse_key_ring(text, _variable(ring))
        return [(SINGLE_KEY_ID, _secret_text(getattr(self, single)))]

    def pii_vault(self) -> PiiVault:
        return PiiVault(self.hash_ring(), self.encryption_ring())

    def development_keys(self) -> list[str]:
        """The settings whose current key is one of the development keys in git."""
        return [
            single
            for single, dev in (
                ("pii_hash_key", DEV_HASH_KEY),
                ("pii_encryption_key", DEV_ENCRYPTION_KEY),
            )
            if self._ring(single)[0][1] == dev
        ]


# The single-key setting -> its ring.
RINGS = {"pii_hash_key": "pii_hash_keys", "pii_encryption_key": "pii_encryption_keys"}


def _secret_text(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value().strip()
    return value.strip() if isinstance(value, str) else ""


def _variable(field_name: str) -> str:
    return f"REGISTRY_{field_name.upper()}"


class RegistrySettings(ServiceSettings, PiiKeys):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_", populate_by_name=True, extra="ignore")

    development_secrets = ("pii_hash_key", "pii_encryption_key")

    service_name: str = "registry"
    mongodb_database: str = "registry"
    http_port: int = 8001
    erasure_deadline_s: float = Field(
        default=3 * 24 * 3600,
        gt=0,
        description="An erasure request not confirmed by every service within this is "
        "flagged overdue (REGISTRY_ERASURE_DEADLINE_S; UU 27/2022 asks for 3x24 hours).",
    )
    erasure_check_interval_s: float = Field(
        default=60, gt=0, description="How often overdue erasure requests are looked for."
    )


DASHBOARD_DIR = Path(__file__).with_name("dashboard")
DASHBOARD_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
# What only ops and the participant themself see of a participant (shared.auth.ROLES).
PERSONAL_FIELDS = frozenset({"full_name", "display_name", "birth_date", "contact"})
CONSUMES = consumed_by("registry")  # the catalogue says who reads what
PRODUCES = produced_by("registry")


def create_app(settings: RegistrySettings | None = None) -> ServiceApp:
    settings = settings or RegistrySettings()
    broker = make_broker(settings)
    client = make_client(settings.mongodb_uri)
    store = RegistryStore(
        client,
        settings.mongodb_database,
        settings.pii_vault(),
    )
    outbox = Outbox(store.db, broker)
    deps = Deps(settings=settings, broker=broker, store=store, outbox=outbox)
    deadline = timedelta(seconds=settings.erasure_deadline_s)

    async def prepare() -> None:
        if settings.pii_hash_key.get_secret_value() == DEV_HASH_KEY:  # only allowed in development
            log.warning("using development PII keys (JAKPRENEUR_ENV=development)")
        await store.ensure_indexes()
        await store.backfill_journeys()

    async def subject_of(participant_id: str) -> Subject | None:
        doc = await store.scope_of(participant_id)
        if doc is None:
            return None
        profile = doc.get("profile", {})
        return Subject(
            participant_id,
            city=profile.get("city"),
            kecamatan=profile.get("kecamatan"),
            pendamping_id=doc.get("mentor_id"),
        )

    async def participant(request: Request) -> AsgiResponse:
        doc = await store.get_participant(request.params["participant_id"])
        if doc is not None:
            withhold(request.principal, doc, PERSONAL_FIELDS)
        return document_response(doc, "participant not found")

    async def participant_journey(request: Request) -> AsgiResponse:
        doc = await store.journey(request.params["participant_id"])
        return document_response(
            None if doc is None else journey.present(doc), "participant has no journey"
        )

    async def submission(request: Request) -> AsgiResponse:
        """A submission's outcome; for an already-registered one, whose NIK it is (ops)."""
        doc = await store.submission(request.params["submission_id"])
        if doc is None:
            return json_response({"error": "submission not answered"}, 404)
        return json_response(doc)

    async def funnel(request: Request) -> AsgiResponse:
        """The programme funnel; filters: city, kecamatan, sector, has_business,
        registered_month (YYYY-MM), held to the caller's scope (``scope``)."""
        params = request.params
        match = journey.parse_filters(params, request.scope_filters)
        result = journey.funnel(await store.journeys_matching(match, journey.FUNNEL_FIELDS))
        return json_response(
            {
                "filters": {k: params[k] for k in journey.FILTERS if params.get(k)},
                "scope": dict(request.scope_filters),
                **result,
            }
        )

    async def dashboard_asset(params: dict[str, str]) -> AsgiResponse:
        """The dashboard's own files; nothing comes from a CDN. Open: they hold no data (the
        page asks /funnel for its numbers, with the token it was given), and a browser
        cannot send a bearer token with the request for a page."""
        name = params.get("asset", "index.html")
        if name not in DASHBOARD_TYPES:
            return json_response({"error": "not found"}, 404)
        body = (DASHBOARD_DIR / name).read_bytes()
        return AsgiResponse(body, 200, {"content-type": DASHBOARD_TYPES[name]})

    return service_app(
        settings,
        broker=broker,
        client=client,
        outbox=outbox,
        consumes=CONSUMES,
        produces=PRODUCES,
        handle_batch=lambda records: handle_batch(records, deps),
        prepare=prepare,
        periodic=[
            (settings.erasure_check_interval_s, lambda: erasure.check_overdue(deps, deadline))
        ],
        path_routes=[
            Route(
                "/participants/{participant_id}/journey",
                "journey",
                participant_journey,
                "participant has no journey",
            ),
            Route(
                "/participants/{participant_id}/erasure",
                "erasure",
                functools.partial(erasure.request_erasure, deps, deadline),
                "participant not found",
                method="POST",
            ),
            Route(
                "/participants/{participant_id}/erasure",
                "erasure",
                functools.partial(erasure.erasure_status, deps, deadline),
                "participant not found",
            ),
            Route(
                "/participants/{participant_id}",
                "participant",
                participant,
                "participant not found",
            ),
            Route(
                "/submissions/{submission_id}", "submission", submission, "submission not answered"
            ),
            Route("/funnel", "funnel", funnel),
        ],
        open_routes=[("/dashboard", dashboard_asset), ("/dashboard/{asset}", dashboard_asset)],
        subject_of=subject_of,
    )
