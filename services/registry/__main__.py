"""``python -m services.registry``: serve the registry (Kafka consumer and HTTP) with uvicorn."""

import uvicorn

from services.registry.app import RegistrySettings, create_app
from shared.logging import configure_logging

if __name__ == "__main__":
    settings = RegistrySettings()
    configure_logging(settings.service_name, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # our structlog set-up, not uvicorn's
        timeout_graceful_shutdown=30,
    )
