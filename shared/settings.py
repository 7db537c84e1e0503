"""Settings shared by every service.

The infrastructure fields are read without a service prefix (``KAFKA_BOOTSTRAP_SERVERS``,
``MONGODB_URI``, ``TOPIC_PREFIX``, ...) because every service of one deployment talks to the
same cluster; each service's own fields carry its prefix (``REGISTRY_...``).
"""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT = "development"
# The issuer of the local stack's tokens (deploy/local/identity.py): refused outside development.
DEVELOPMENT_ISSUER = "https://jakpreneur.invalid/development"
# The development key of the DLQ's personal fields (DLQ_PERSONAL_KEY): refused outside
# development like the other development secrets.
DEV_DLQ_PERSONAL_KEY = "ZGV2LW9ubHktZGxxLXBlcnNvbmFsLWRhdGEta2V5ISE="
DAY_MS = 24 * 3600 * 1000


class DevelopmentSecretsError(RuntimeError):
    """A service was started on development keys or tokens outside development. Not a
    ValueError, so that pydantic does not wrap it with the input (the keys) in its text."""


class AuthenticationNotConfiguredError(RuntimeError):
    """A service outside development has no token issuer to check its HTTP callers with
    (a RuntimeError for the same reason as :class:`DevelopmentSecretsError`)."""


class InsecureSettingsError(RuntimeError):
    """A service was started outside development on an unauthenticated or unencrypted link.
    Not a ValueError, so that pydantic does not print the input (passwords) with it."""


# The shared fields whose defaults are development secrets (every service has them).
INFRASTRUCTURE_SECRETS = ("dlq_personal_key",)


class InvalidKeyError(RuntimeError):
    """A key setting is not a key (a RuntimeError for the same reason as
    :class:`DevelopmentSecretsError`: the text must not carry the value)."""


class ServiceSettings(BaseSettings):
    """Base class: subclasses set ``env_prefix`` and add their own fields."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    # Fields whose defaults are the development keys and tokens in git: a service refuses
    # to start on them unless JAKPRENEUR_ENV=development (make up/run/test set it).
    development_secrets: ClassVar[tuple[str, ...]] = ()

    service_name: str = Field(description="Name used as ce_source, consumer group and DLQ header.")
    jakpreneur_env: str = Field(
        default="production",
        validation_alias=AliasChoices("jakpreneur_env", "JAKPRENEUR_ENV"),
        description="`development` allows the development keys and tokens in git; any other "
        "value (the default) refuses them.",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Comma-separated host:port list of the Kafka cluster.",
    )
    kafka_security_protocol: str = Field(
        default="PLAINTEXT",
        pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$",
        validation_alias=AliasChoices("kafka_security_protocol", "KAFKA_SECURITY_PROTOCOL"),
        description="SASL_PLAINTEXT on a local stack (127.0.0.1), SASL_SSL anywhere else.",
    )
    kafka_sasl_mechanism: str = Field(
        default="SCRAM-SHA-512",
        validation_alias=AliasChoices("kafka_sasl_mechanism", "KAFKA_SASL_MECHANISM"),
    )
    kafka_sasl_username: str = Field(
        default="",
        validation_alias=AliasChoices("kafka_sasl_username", "KAFKA_SASL_USERNAME"),
        description="This service's Kafka principal (its ACLs come from the catalogue).",
    )
    kafka_sasl_password: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("kafka_sasl_password", "KAFKA_SASL_PASSWORD"),
    )
    kafka_ssl_cafile: str = Field(
        default="",
        validation_alias=AliasChoices("kafka_ssl_cafile", "KAFKA_SSL_CAFILE"),
        description="CA bundle that signed the brokers' certificates (SASL_SSL); empty: the "
        "system's trust store.",
    )
    mongodb_uri: str = Field(
        default="mongodb://127.0.0.1:27017/?replicaSet=rs0",
        validation_alias=AliasChoices("mongodb_uri", "MONGODB_URI"),
        repr=False,  # it carries this service's password
        description="MongoDB connection string; a replica set, so transactions work.",
    )
    topic_prefix: str = Field(
        default="",
        validation_alias=AliasChoices("topic_prefix", "TOPIC_PREFIX"),
        description="Prepended to every topic name, for shared clusters.",
    )
    topic_partitions: int = Field(
        default=6,
        ge=1,
        validation_alias=AliasChoices("topic_partitions", "TOPIC_PARTITIONS"),
        description="Partitions of the topics a service creates at start-up.",
    )
    topic_replication_factor: int = Field(
        default=1,
        ge=1,
        validation_alias=AliasChoices("topic_replication_factor", "TOPIC_REPLICATION_FACTOR"),
    )
    topic_retention_ms: int = Field(
        default=30 * DAY_MS,
        ge=1,
        validation_alias=AliasChoices("topic_retention_ms", "TOPIC_RETENTION_MS"),
        description="How long the topics keep their records, but for those below: what the "
        "journeys, the funnel and downstream consumers (dashboards, the bank) read.",
    )
    topic_personal_retention_ms: int = Field(
        default=7 * DAY_MS,
        ge=1,
        validation_alias=AliasChoices("topic_personal_retention_ms", "TOPIC_PERSONAL_RETENTION_MS"),
        description="Retention of the topics whose events carry personal fields (per the "
        "catalogue: registration-submitted) and of their DLQs, compacted topics excepted "
        "(they keep each key's latest record); never longer than TOPIC_RETENTION_MS.",
    )
    dlq_personal_key: SecretStr = Field(
        default=SecretStr(DEV_DLQ_PERSONAL_KEY),
        validation_alias=AliasChoices("dlq_personal_key", "DLQ_PERSONAL_KEY"),
        description="Fernet key(s), comma-separated, the current first: a dead-lettered "
        "record's personal fields are encrypted under the first, and `jakpreneur dlq "
        "replay` opens them with any. The same in every service and in ops' CLI.",
    )
    otlp_endpoint: str = Field(
        default="",
        validation_alias=AliasChoices("otlp_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/HTTP collector base URL (e.g. http://otel-collector:4318); "
        "empty: spans are not exported.",
    )
    mongodb_database: str = Field(default="", description="This service's own database.")
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"
    batch_size: int = Field(
        default=500,
        ge=1,
        description="Records consumed and decided together (500: about 7 % less CPU per "
        "participant than 200 in a burst, docs/benchmark.md).",
    )
    max_poll_interval_ms: int = Field(
        default=300_000,
        ge=1000,
        description="A consumer that has not polled for this long (e.g. waiting out an outage) "
        "leaves its group; its batch is then redelivered, which the inbox makes harmless.",
    )
    stall_timeout_s: float = Field(
        default=60,
        gt=0,
        description="A consumer with records behind it that has handled no batch for this "
        "long is stalled (aiokafka can hang after a broker restart): the process exits so "
        "its orchestrator restarts it; in-process, /healthz says so.",
    )
    parked_ttl_s: float = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="How long a fact may wait for what it names (a revocation for its "
        "certificate, a review for its product) before it goes to the DLQ as parked-expired.",
    )
    parked_check_interval_s: float = Field(
        default=300, gt=0, description="How often parked facts are checked for expiry."
    )
    outbox_relay_interval_s: float = Field(
        default=1.0, gt=0, description="How often the relay looks for events left unpublished."
    )
    # HTTP authentication (shared.auth): bearer JWTs of the province's OIDC provider.
    auth_issuer: str = Field(
        default="",
        validation_alias=AliasChoices("auth_issuer", "AUTH_ISSUER"),
        description="The `iss` every token must carry (the OIDC issuer URL).",
    )
    auth_audience: str = Field(
        default="jakpreneur",
        validation_alias=AliasChoices("auth_audience", "AUTH_AUDIENCE"),
        description="The `aud` every token must carry.",
    )
    auth_jwks_url: str = Field(
        default="",
        validation_alias=AliasChoices("auth_jwks_url", "AUTH_JWKS_URL"),
        description="The issuer's JWKS (https://..., or file://... locally). Required outside "
        "development; in development, unset means every endpoint but the probes and metrics "
        "answers 503.",
    )

    @model_validator(mode="after")
    def _no_development_secrets(self) -> Self:
        if self.jakpreneur_env == DEVELOPMENT:
            return self
        fields = type(self).model_fields
        on_defaults = [
            name
            for name in (*self.development_secrets, *INFRASTRUCTURE_SECRETS)
            if getattr(self, name) == fields[name].get_default(call_default_factory=True)
        ]
        if on_defaults:
            raise DevelopmentSecretsError(
                f"{self.service_name}: development secrets in {', '.join(on_defaults)}; set "
                "them (or JAKPRENEUR_ENV=development for a local stack)"
            )
        return self

    @model_validator(mode="after")
    def _dlq_key_is_a_key(self) -> Self:
        """A key that is not one would fail the first dead letter, long after start-up."""
        from cryptography.fernet import Fernet

        try:
            for key in self.dlq_personal_key.get_secret_value().split(","):
                Fernet(key.strip())
        except ValueError:
            raise InvalidKeyError(
                f"{self.service_name}: DLQ_PERSONAL_KEY is not a list of Fernet keys "
                "(32 url-safe base64-encoded bytes each, comma-separated)"
            ) from None
        return self

    @model_validator(mode="after")
    def _secure_transports(self) -> Self:
        """Outside development every link is authenticated and encrypted: Kafka over
        SASL_SSL with this service's principal, MongoDB with its user, the issuer's keys over
        https (a plain-text or file:// JWKS could be swapped under the service)."""
        if self.jakpreneur_env == DEVELOPMENT:
            return self
        problems = []
        if self.kafka_security_protocol != "SASL_SSL":
            problems.append(f"KAFKA_SECURITY_PROTOCOL is {self.kafka_security_protocol}")
        if not (self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
            problems.append("no KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD")
        if "@" not in self.mongodb_uri.partition("://")[2].partition("/")[0]:
            problems.append("MONGODB_URI names no user")
        if self.auth_jwks_url and not self.auth_jwks_url.startswith("https://"):
            problems.append("AUTH_JWKS_URL is not https")
        if problems:
            raise InsecureSettingsError(
                f"{self.service_name}: {'; '.join(problems)} (outside development: SASL_SSL "
                "with the service's principal, its MongoDB user, an https JWKS; "
                "JAKPRENEUR_ENV=development for a local stack)"
            )
        return self

    @model_validator(mode="after")
    def _authentication_configured(self) -> Self:
        """Outside development a service refuses to start without a token issuer (it would
        answer nobody) or with the local stack's (anyone with a checkout can mint those).
        With a JWKS URL, the issuer and audience are needed anywhere: unset, PyJWT would
        skip their checks."""
        problems = []
        if self.auth_jwks_url and not (self.auth_issuer and self.auth_audience):
            problems.append("AUTH_JWKS_URL needs AUTH_ISSUER and AUTH_AUDIENCE")
        if self.jakpreneur_env != DEVELOPMENT:
            if not self.auth_jwks_url:
                problems.append("no AUTH_JWKS_URL")
            if self.auth_issuer == DEVELOPMENT_ISSUER:
                problems.append("AUTH_ISSUER is the local development issuer")
        if problems:
            raise AuthenticationNotConfiguredError(
                f"{self.service_name}: {'; '.join(problems)} (HTTP callers are checked "
                "against the province's OIDC issuer; JAKPRENEUR_ENV=development for a local "
                "stack)"
            )
        return self

    def topic(self, name: str) -> str:
        """The physical topic of an event name under this deployment's prefix."""
        return f"{self.topic_prefix}{name}"

    @property
    def consumer_group(self) -> str:
        return f"{self.topic_prefix}{self.service_name}"
