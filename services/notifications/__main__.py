"""``python -m services.notifications``: serve notifications (Kafka consumer and HTTP)."""

from services.notifications.app import NotificationSettings, create_app
from shared.service import serve

if __name__ == "__main__":
    serve(NotificationSettings(), create_app)
