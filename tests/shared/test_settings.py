"""Development keys and tokens are in git: a service refuses them outside development."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.notifications.app import NotificationSettings
from services.registry.app import DEV_ENCRYPTION_KEY, DEV_HASH_KEY, RegistrySettings
from shared.settings import DevelopmentSecretsError


def test_settings_refuse_development_secrets_outside_development() -> None:
    with pytest.raises(DevelopmentSecretsError, match="pii_hash_key, pii_encryption_key"):
        RegistrySettings(jakpreneur_env="production")
    with pytest.raises(DevelopmentSecretsError, match="whatsapp_token, sms_api_key"):
        NotificationSettings(jakpreneur_env="production")
    own = RegistrySettings(
        jakpreneur_env="production", pii_hash_key="k" * 32, pii_encryption_key="A" * 43 + "="
    )
    assert own.pii_hash_key == "k" * 32
    assert RegistrySettings(jakpreneur_env="development").pii_hash_key == DEV_HASH_KEY


def test_a_service_process_without_development_mark_does_not_start() -> None:
    """As deployed, with JAKPRENEUR_ENV unset: the registry exits at once, naming the fields
    and never printing the key material."""
    env = {k: v for k, v in os.environ.items() if k != "JAKPRENEUR_ENV"}
    env = {k: v for k, v in env.items() if not k.startswith("REGISTRY_PII_")}
    done = subprocess.run(
        [sys.executable, "-m", "services.registry"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    output = (done.stdout + done.stderr).decode()
    assert done.returncode != 0
    assert "development secrets in pii_hash_key, pii_encryption_key" in output
    assert DEV_HASH_KEY not in output and DEV_ENCRYPTION_KEY not in output
