"""``python -m services.coaching``: serve coaching (Kafka consumer and HTTP) with uvicorn."""

import uvicorn

from services.coaching.app import CoachingSettings, create_app
from shared.logging import configure_logging

if __name__ == "__main__":
    settings = CoachingSettings()
    configure_logging(settings.service_name, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        timeout_graceful_shutdown=30,
    )
