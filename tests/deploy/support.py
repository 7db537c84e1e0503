"""What the deployment checks share: the services' Settings and the environment variable
names they accept, Compose-style ``.env`` parsing and ``${VAR}`` interpolation, and
``.dockerignore`` matching. Standard library, PyYAML and the project only."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings

from services.coaching.app import CoachingSettings
from services.marketplace.app import MarketplaceSettings
from services.notifications.app import NotificationSettings
from services.registry.app import RegistrySettings
from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
OVERLAYS = ("dev", "prod")

SETTINGS: dict[str, type[ServiceSettings]] = {
    "registry": RegistrySettings,
    "coaching": CoachingSettings,
    "marketplace": MarketplaceSettings,
    "notifications": NotificationSettings,
}
NON_ROOT_UID = 10001
# Fields that must never be a literal in a manifest: by name, and the MongoDB URI (it carries
# the database password in any real deployment).
SECRET_WORDS = ("key", "token", "password", "secret")
ALSO_SECRET = {"mongodb_uri"}
# Secrets a deployment may leave unset: a key ring, whose single key (set) is then a one-key
# ring; set when a key is rolled (README, "PII keys").
OPTIONAL_SECRETS = {"pii_hash_keys": "pii_hash_key", "pii_encryption_keys": "pii_encryption_key"}


def prefix_of(cls: type[BaseSettings]) -> str:
    return str(cls.model_config.get("env_prefix", ""))


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Every environment variable name ``cls`` reads (upper-case) -> the field it sets.

    As pydantic-settings does it: a field with a ``validation_alias`` is read under each
    alias choice (no prefix), and also under prefix + field name when ``populate_by_name``;
    any other field under prefix + field name. Matching is case-insensitive.
    """
    prefix = prefix_of(cls)
    by_name = bool(cls.model_config.get("populate_by_name"))
    names: dict[str, str] = {}
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        if alias is None:
            names[(prefix + field).upper()] = field
            continue
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        for choice in choices:
            if isinstance(choice, str):
                names[choice.upper()] = field
            elif isinstance(choice, AliasPath) and isinstance(choice.path[0], str):
                names[choice.path[0].upper()] = field
        if by_name:
            names[(prefix + field).upper()] = field
    return names


def infra_names() -> set[str]:
    """The unprefixed variables every service reads (Kafka, MongoDB, topics): the alias
    choices of the shared fields."""
    names: set[str] = set()
    for info in ServiceSettings.model_fields.values():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
    return names


def secret_by_name(field: str) -> bool:
    return any(word in field.lower() for word in SECRET_WORDS)


# The infrastructure settings every deployment sets (others, e.g. tracing, stay optional).
DEPLOYED_INFRA = {
    "KAFKA_BOOTSTRAP_SERVERS",
    "MONGODB_URI",
    "TOPIC_PREFIX",
    "TOPIC_PARTITIONS",
    "TOPIC_REPLICATION_FACTOR",
    "TOPIC_RETENTION_MS",
}


def is_secret_field(field: str) -> bool:
    """Must come from a Secret in Kubernetes (the MongoDB URI too: it holds a password)."""
    return field in ALSO_SECRET or secret_by_name(field)


def required_secret(field: str) -> bool:
    """A secret every deployment sets (a key ring may stay unset: see OPTIONAL_SECRETS)."""
    return is_secret_field(field) and field not in OPTIONAL_SECRETS


def default_port(service: str) -> int:
    value = SETTINGS[service].model_fields["http_port"].default
    assert isinstance(value, int)
    return value


def server_properties(env: Mapping[str, str]) -> dict[str, str]:
    """A Kafka broker's server properties as the apache/kafka image makes them from its
    ``KAFKA_*`` variables (KafkaDockerWrapper: prefix dropped, lower case, ``_`` -> ``.``,
    ``___`` -> ``-``, ``__`` -> ``_``; a few JVM variables are not properties)."""
    skip = {
        "KAFKA_VERSION",
        "KAFKA_HEAP_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_LOG4J_ROOT_LOGLEVEL",
        "KAFKA_LOG4J_LOGGERS",
        "KAFKA_TOOLS_LOG4J_LOGLEVEL",
        "KAFKA_JMX_HOSTNAME",
    }
    return {
        name.removeprefix("KAFKA_")
        .lower()
        .replace("_", ".")
        .replace("...", "-")
        .replace("..", "_"): str(value)
        for name, value in env.items()
        if name.startswith("KAFKA_") and name not in skip
    }


# ------------------------------------------------------------------ .env and ${VAR}

_ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as Compose reads them: comments and blank lines skipped, one level of
    matching quotes removed."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ASSIGNMENT.match(stripped)
        if not match:
            raise ValueError(f"not an env assignment: {line!r}")
        value = match["value"].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[match["name"]] = value
    return values


def documented_names(text: str) -> dict[str, list[str]]:
    """Each assigned name of an env file -> the comment lines right above it."""
    docs: dict[str, list[str]] = {}
    comments: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("# ").strip())
        elif match := _ASSIGNMENT.match(stripped):
            docs[match["name"]] = [c for c in comments if c]
            comments = []
        else:
            comments = []
    return docs


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(ValueError):
    pass


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of one string: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``, ``${VAR+alt}``."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"] or "", match["arg"] or ""
        is_set = name in env
        value = env.get(name, "")
        usable = bool(value) if op.startswith(":") else is_set
        if op.endswith("-"):
            return value if usable else arg
        if op.endswith("?"):
            if not usable:
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op.endswith("+"):
            return arg if usable else ""
        return value

    return _VARIABLE.sub(replace, text)


def variables_in(text: str) -> set[str]:
    return {m["braced"] or m["bare"] for m in _VARIABLE.finditer(text) if not m["escaped"]}


def walk_strings(node: Any, change: Callable[[str], str]) -> Any:
    """``node`` (loaded YAML) with ``change`` applied to every string value (not keys)."""
    if isinstance(node, dict):
        return {key: walk_strings(value, change) for key, value in node.items()}
    if isinstance(node, list):
        return [walk_strings(value, change) for value in node]
    if isinstance(node, str):
        return change(node)
    return node


def strings_in(node: Any) -> Iterator[str]:
    """Every string value of ``node`` (loaded YAML), keys left out."""
    if isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)
    elif isinstance(node, str):
        yield node


# ------------------------------------------------------------------------ .dockerignore


def _pattern(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception, pattern) per line, as Docker reads ``.dockerignore``."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = pattern.strip("/")  # Docker cleans the pattern like a path
        rules.append((negated, _pattern(pattern)))
    return rules


def in_build_context(path: str, rules: Iterable[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether ``path`` (relative, '/'-separated) is sent to the builder: the last rule that
    matches it or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, pattern in rules:
        if any(pattern.match(candidate) for candidate in candidates):
            excluded = not negated
    return not excluded
