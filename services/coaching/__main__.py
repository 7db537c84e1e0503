"""``python -m services.coaching``: serve coaching (Kafka consumer and HTTP)."""

from services.coaching.app import CoachingSettings, create_app
from shared.service import serve

if __name__ == "__main__":
    serve(CoachingSettings(), create_app)
