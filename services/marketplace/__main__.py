"""``python -m services.marketplace``: serve the marketplace (Kafka consumer and HTTP)."""

from services.marketplace.app import MarketplaceSettings, create_app
from shared.service import serve

if __name__ == "__main__":
    serve(MarketplaceSettings(), create_app)
