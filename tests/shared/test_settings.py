"""Development keys and tokens are in git: a service refuses them outside development."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.notifications.app import NotificationSettings
from services.registry.app import DEV_ENCRYPTION_KEY, DEV_HASH_KEY, RegistrySettings
from shared.settings import (
    DEV_DLQ_PERSONAL_KEY,
    DEVELOPMENT_ISSUER,
    AuthenticationNotConfiguredError,
    DevelopmentSecretsError,
    InsecureSettingsError,
    InvalidKeyError,
    ServiceSettings,
)


def test_settings_refuse_development_secrets_outside_development() -> None:
    with pytest.raises(DevelopmentSecretsError, match="pii_hash_key, pii_encryption_key"):
        RegistrySettings(jakpreneur_env="production")
    with pytest.raises(DevelopmentSecretsError, match="whatsapp_token, sms_api_key"):
        NotificationSettings(jakpreneur_env="production")
    own = RegistrySettings(
        **SECURE,
        jakpreneur_env="production",
        pii_hash_key="k" * 32,
        pii_encryption_key="A" * 43 + "=",
        auth_issuer=PROVINCE_ISSUER,
    )
    assert own.pii_hash_key.get_secret_value() == "k" * 32
    # every service: the DLQ's development key, refused; a key that is not one, too
    with pytest.raises(DevelopmentSecretsError, match="dlq_personal_key"):
        ServiceSettings(
            service_name="x",
            jakpreneur_env="production",
            **SECURE | {"dlq_personal_key": DEV_DLQ_PERSONAL_KEY},
            auth_issuer=PROVINCE_ISSUER,
        )
    with pytest.raises(InvalidKeyError, match="DLQ_PERSONAL_KEY") as refused:
        ServiceSettings(service_name="x", jakpreneur_env="development", dlq_personal_key="k")
    assert "'k'" not in str(refused.value)
    assert RegistrySettings(jakpreneur_env="development").pii_hash_key.get_secret_value() == (
        DEV_HASH_KEY
    )


PROVINCE_ISSUER = "https://sso.jakarta.go.id/realms/jakpreneur"
# What a deployment gives every service: its principal over SASL_SSL, its MongoDB user, the
# issuer's keys over https, the key of the DLQ's personal fields.
SECURE = {
    "dlq_personal_key": "B" * 43 + "=",
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_username": "registry",
    "kafka_sasl_password": "pw",
    "mongodb_uri": "mongodb://registry:pw@db:27017/?replicaSet=rs0",
    "auth_jwks_url": PROVINCE_ISSUER + "/protocol/openid-connect/certs",
}


def test_settings_refuse_to_run_without_a_token_issuer_outside_development() -> None:
    """No JWKS (nobody could be let in) or the local stack's issuer (anyone with a checkout
    can mint its tokens): refused, unless in development."""
    deployed = {"jakpreneur_env": "production", "service_name": "x"}
    with pytest.raises(AuthenticationNotConfiguredError, match="no AUTH_JWKS_URL"):
        ServiceSettings(**deployed, **SECURE | {"auth_jwks_url": ""}, auth_issuer=PROVINCE_ISSUER)
    with pytest.raises(AuthenticationNotConfiguredError, match="development issuer"):
        ServiceSettings(**deployed, **SECURE, auth_issuer=DEVELOPMENT_ISSUER)
    with pytest.raises(AuthenticationNotConfiguredError, match="needs AUTH_ISSUER"):
        ServiceSettings(service_name="x", jakpreneur_env="development", auth_issuer="")
    settings = ServiceSettings(**deployed, **SECURE, auth_issuer=PROVINCE_ISSUER)
    assert settings.auth_audience == "jakpreneur"
    unset = ServiceSettings(service_name="x", jakpreneur_env="development", auth_jwks_url="")
    assert unset.auth_jwks_url == ""  # development: starts, and answers 503 (shared.http)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "KAFKA_SECURITY_PROTOCOL is SASL_PLAIN"),
        ({"kafka_security_protocol": "PLAINTEXT"}, "KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
        ({"kafka_sasl_password": ""}, "no KAFKA_SASL_USERNAME"),
        ({"mongodb_uri": "mongodb://db:27017/?replicaSet=rs0"}, "MONGODB_URI names no user"),
        ({"auth_jwks_url": "http://sso/certs"}, "AUTH_JWKS_URL is not https"),
        ({"auth_jwks_url": "file:///tmp/jwks.json"}, "AUTH_JWKS_URL is not https"),
    ],
)
def test_outside_development_every_link_is_authenticated_and_encrypted(
    change: dict[str, str], named: str
) -> None:
    deployed = {"jakpreneur_env": "production", "service_name": "x"}
    ServiceSettings(**deployed, **SECURE, auth_issuer=PROVINCE_ISSUER)  # all of it: starts
    with pytest.raises(InsecureSettingsError, match=named) as refused:
        ServiceSettings(**deployed, **SECURE | change, auth_issuer=PROVINCE_ISSUER)
    assert "pw" not in str(refused.value).replace("password", "")  # no password in the text
    development = {"jakpreneur_env": "development", "service_name": "x"}
    ServiceSettings(**development, **SECURE | change, auth_issuer=PROVINCE_ISSUER)


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


def test_keys_tokens_and_passwords_stay_out_of_reprs_and_errors() -> None:
    """A settings object in a log line, or a refusal's text, shows no secret."""
    from pydantic import ValidationError

    from services.notifications.app import NotificationSettings

    keys = {"pii_hash_key": "hash-key-" + "h" * 23, "pii_encryption_key": "A" * 43 + "="}
    registry = RegistrySettings(
        **keys,
        kafka_sasl_password="kafka-secret-pw",
        mongodb_uri="mongodb://registry:mongo-secret-pw@h/",
        auth_jwks_url="https://sso.example/jwks",
        auth_issuer="https://sso.example",
    )
    text = repr(registry) + str(registry)
    for secret in (*keys.values(), "kafka-secret-pw", "mongo-secret-pw"):
        assert secret not in text
    with pytest.raises(ValidationError) as refused:  # a lease shorter than a send
        NotificationSettings(jakpreneur_env="development", sms_api_key="sms-secret-key", lease_s=1)
    assert "sms-secret-key" not in str(refused.value)
