"""``python -m services.registry``: serve the registry (Kafka consumer and HTTP)."""

from services.registry.app import RegistrySettings, create_app
from shared.service import serve

if __name__ == "__main__":
    serve(RegistrySettings(), create_app)
