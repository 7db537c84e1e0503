"""The coaching service: FastStream app, settings and HTTP routes."""

from __future__ import annotations

import json
from pathlib import Path

from faststream.asgi import AsgiResponse
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.coaching.handlers import CONSUMES, PRODUCES, Deps, check_expiries, handle_facts
from services.coaching.store import CoachingStore
from shared.auth import Subject
from shared.http import Request, Route, ServiceApp, document_response
from shared.kafka import make_broker
from shared.logging import get_logger
from shared.mongo import Outbox, make_client
from shared.service import service_app
from shared.settings import ServiceSettings

log = get_logger(__name__)


class CoachingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COACHING_", populate_by_name=True, extra="ignore")

    service_name: str = "coaching"
    mongodb_database: str = "coaching"
    http_port: int = 8002
    cohort_capacity: int = Field(default=30, ge=1, description="Seats per training cohort.")
    cohort_sessions: int = Field(default=4, ge=1, description="Sessions per training cohort.")
    mentors_file: Path = Field(
        default=Path(__file__).with_name("mentors.json"),
        description="Pendamping roster per kecamatan/city centre (JSON).",
    )
    expiry_check_interval_s: float = Field(
        default=3600, gt=0, description="How often certificates are checked for expiry."
    )


MISSING = "participant not known to coaching"


def create_app(settings: CoachingSettings | None = None) -> ServiceApp:
    settings = settings or CoachingSettings()
    broker = make_broker(settings)
    client = make_client(settings.mongodb_uri)
    store = CoachingStore(client, settings.mongodb_database)
    outbox = Outbox(store.db, broker)
    deps = Deps(
        settings=settings,
        broker=broker,
        store=store,
        outbox=outbox,
        cohort_capacity=settings.cohort_capacity,
        cohort_sessions=settings.cohort_sessions,
    )

    async def prepare() -> None:
        await store.ensure_indexes()
        roster = json.loads(settings.mentors_file.read_text())
        count = await store.load_mentors(roster["centres"])
        log.info("pendamping roster loaded", mentors=count, file=str(settings.mentors_file))

    async def subject_of(participant_id: str) -> Subject | None:
        doc = await store.states.get(participant_id)
        if doc is None:
            return None
        profile, mentoring = doc.get("profile") or {}, doc.get("mentoring") or {}
        return Subject(
            participant_id,
            city=profile.get("city"),
            kecamatan=profile.get("kecamatan"),
            pendamping_id=mentoring.get("mentor_id"),
        )

    async def coaching(request: Request) -> AsgiResponse:
        doc = await store.states.get(request.params["participant_id"])
        return document_response(doc, MISSING)

    return service_app(
        settings,
        broker=broker,
        client=client,
        outbox=outbox,
        consumes=CONSUMES,
        produces=PRODUCES,
        handle_batch=lambda records: handle_facts(records, deps),
        prepare=prepare,
        periodic=[(settings.expiry_check_interval_s, lambda: check_expiries(deps))],
        path_routes=[
            Route("/participants/{participant_id}/coaching", "coaching", coaching, MISSING)
        ],
        subject_of=subject_of,
        parking=store.parking,
    )
