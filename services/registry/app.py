"""The registry service: FastStream app, subscriber, lifespan and HTTP routes."""

from __future__ import annotations

from pathlib import Path

from faststream.asgi import AsgiResponse
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.registry import journey
from services.registry.handlers import Deps, handle_batch
from services.registry.store import PiiVault, RegistryStore
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


class RegistrySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_", populate_by_name=True, extra="ignore")

    development_secrets = ("pii_hash_key", "pii_encryption_key")

    service_name: str = "registry"
    mongodb_database: str = "registry"
    http_port: int = 8001
    # Secrets: never in a repr, a log or an error's text.
    pii_hash_key: SecretStr = Field(
        default=SecretStr(DEV_HASH_KEY), description="HMAC key of NIK look-ups."
    )
    pii_encryption_key: SecretStr = Field(
        default=SecretStr(DEV_ENCRYPTION_KEY),
        description="Fernet key encrypting NIK and KK at rest.",
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
        PiiVault(
            settings.pii_hash_key.get_secret_value(),
            settings.pii_encryption_key.get_secret_value(),
        ),
    )
    outbox = Outbox(store.db, broker)
    deps = Deps(settings=settings, broker=broker, store=store, outbox=outbox)

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
        return document_response(doc, "participant has no journey")

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
        result = journey.funnel(await store.journeys_matching(match))
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
        path_routes=[
            Route(
                "/participants/{participant_id}/journey",
                "journey",
                participant_journey,
                "participant has no journey",
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
