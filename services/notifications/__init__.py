"""Participant-facing messages in Bahasa Indonesia over WhatsApp, SMS and e-mail."""
