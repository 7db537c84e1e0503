"""The marketplace service: FastStream app, settings and HTTP routes."""

from __future__ import annotations

from faststream.asgi import AsgiResponse
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.marketplace.handlers import CONSUMES, PRODUCES, Deps, Financing, handle_facts
from services.marketplace.store import MarketplaceStore
from shared.auth import Subject
from shared.http import Request, Route, ServiceApp, document_response, json_response
from shared.kafka import make_broker
from shared.mongo import Outbox, make_client
from shared.service import service_app
from shared.settings import ServiceSettings


class MarketplaceSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARKETPLACE_", populate_by_name=True, extra="ignore"
    )

    service_name: str = "marketplace"
    mongodb_database: str = "marketplace"
    http_port: int = 8003
    financing_product_name: str = Field(
        default="Kredit Usaha Mikro Bank DKI", description="The credit product referred to."
    )
    financing_max_amount_idr: int = Field(default=10_000_000, ge=0)
    financing_rate_percent: float = Field(default=7.0, ge=0)
    export_programme: str = Field(
        default="Jakpreneur Go-International", description="Export facilitation programme."
    )


MISSING = "participant not known to the marketplace"


def create_app(settings: MarketplaceSettings | None = None) -> ServiceApp:
    settings = settings or MarketplaceSettings()
    broker = make_broker(settings)
    client = make_client(settings.mongodb_uri)
    store = MarketplaceStore(client, settings.mongodb_database)
    outbox = Outbox(store.db, broker)
    deps = Deps(
        settings=settings,
        broker=broker,
        store=store,
        outbox=outbox,
        financing=Financing(
            product_name=settings.financing_product_name,
            max_amount_idr=settings.financing_max_amount_idr,
            rate_percent=settings.financing_rate_percent,
        ),
        export_programme=settings.export_programme,
    )

    async def subject_of(participant_id: str) -> Subject | None:
        doc = await store.states.get(participant_id)
        if doc is None:
            return None
        return Subject(
            participant_id,
            city=doc.get("city"),
            kecamatan=doc.get("kecamatan"),
            financing_referred=doc.get("referral") is not None,
        )

    async def marketplace(request: Request) -> AsgiResponse:
        doc = await store.states.get(request.params["participant_id"])
        return document_response(doc, MISSING)

    async def financing(request: Request) -> AsgiResponse:
        """The financing referral and its decision: what Bank DKI reads (with the ledger)."""
        participant_id = request.params["participant_id"]
        doc = await store.states.get(participant_id)
        if doc is None:
            return json_response({"error": MISSING}, 404)
        return json_response({"participant_id": participant_id, "referral": doc.get("referral")})

    async def sales(request: Request) -> AsgiResponse:
        """The monthly sales ledger."""
        params = request.params
        doc = await store.states.get(params["participant_id"])
        if doc is None:
            return json_response({"error": MISSING}, 404)
        months = [
            {k: s[k] for k in ("period", "revenue_idr", "transactions", "channel")}
            for s in doc.get("sales", [])
        ]
        return json_response(
            {
                "participant_id": params["participant_id"],
                "months": months,
                "total_revenue_idr": sum(m["revenue_idr"] for m in months),
            }
        )

    return service_app(
        settings,
        broker=broker,
        client=client,
        outbox=outbox,
        consumes=CONSUMES,
        produces=PRODUCES,
        handle_batch=lambda records: handle_facts(records, deps),
        parking=store.parking,
        path_routes=[
            Route("/participants/{participant_id}/sales", "sales", sales, MISSING),
            Route(
                "/participants/{participant_id}/marketplace", "marketplace", marketplace, MISSING
            ),
            Route("/participants/{participant_id}/financing", "financing", financing, MISSING),
        ],
        subject_of=subject_of,
    )
