"""deploy/compose.yaml and deploy/.env.example, checked offline: the Compose Specification
schema, compose-go (the loader of Docker Compose), the variables, and what the services'
Settings accept."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest

from tests.deploy import tools
from tests.deploy.support import (
    COMPOSE_FILE,
    DEPLOY,
    DEPLOYED_INFRA,
    ENV_EXAMPLE,
    NON_ROOT_UID,
    ROOT,
    SETTINGS,
    MissingVariable,
    default_port,
    documented_names,
    env_names,
    infra_names,
    interpolate,
    prefix_of,
    secret_by_name,
    strings_in,
    variables_in,
)

SCHEMA = Path(__file__).with_name("schemas") / "compose-spec.json"
# Variables of .env.example that Compose itself uses (images, the Kafka cluster id), not
# the services.
COMPOSE_ONLY = {"JAKPRENEUR_IMAGE", "KAFKA_IMAGE", "MONGO_IMAGE", "KAFKA_CLUSTER_ID"}
INFRA = ("kafka", "mongo")


def services_of(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The four services' compose entries."""
    return {name: compose["services"][name] for name in SETTINGS}


def environment(entry: dict[str, Any]) -> dict[str, str]:
    env = entry.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_docker_compose_loads_the_file_as_these_checks_read_it(
    compose: dict[str, Any], compose_go: dict[str, Any]
) -> None:
    """compose-go (the loader of `docker compose`) accepts the file, and resolves every
    service's environment and published ports exactly as the checks here do."""
    assert compose_go["name"] == "jakpreneur"
    assert set(compose_go["services"]) == set(compose["services"])
    for name, entry in compose["services"].items():
        theirs = compose_go["services"][name]
        ours = {key: str(value) for key, value in environment(entry).items()}
        assert ours == {key: str(value) for key, value in theirs.get("environment", {}).items()}
        published = [
            f"{p['host_ip']}:{p['published']}:{p['target']}" for p in theirs.get("ports", [])
        ]
        assert published == entry.get("ports", []), name
        conditions = {dep: d["condition"] for dep, d in theirs.get("depends_on", {}).items()}
        assert conditions == {dep: d["condition"] for dep, d in entry.get("depends_on", {}).items()}


def test_docker_compose_refuses_to_start_without_the_secrets() -> None:
    with pytest.raises(RuntimeError) as refused:
        tools.compose_config(COMPOSE_FILE, ENV_EXAMPLE)  # the example: secrets left empty
    for name in (
        "REGISTRY_PII_HASH_KEY",
        "REGISTRY_PII_ENCRYPTION_KEY",
        "NOTIFICATIONS_WHATSAPP_TOKEN",
        "NOTIFICATIONS_SMS_API_KEY",
    ):
        assert f"required variable {name} is missing a value" in str(refused.value)


def test_the_schema_rejects_a_misspelt_key(compose: dict[str, Any]) -> None:
    """The vendored schema really constrains services (not a permissive stand-in)."""
    schema = json.loads(SCHEMA.read_text())
    broken = {**compose, "services": {"registry": {"image": "x", "restart_policy": "always"}}}
    assert not jsonschema.Draft7Validator(schema).is_valid(broken)


def test_every_variable_is_documented_in_the_env_example(
    compose_raw: dict[str, Any], env_example: dict[str, str]
) -> None:
    used = {name for text in strings_in(compose_raw) for name in variables_in(text)}
    assert used, "compose.yaml reads no variable"
    assert used - env_example.keys() == set(), "used by compose.yaml, missing in .env.example"
    assert env_example.keys() - used == set(), "in .env.example, unused by compose.yaml"
    docs = documented_names(ENV_EXAMPLE.read_text())
    assert [name for name, comments in docs.items() if not comments] == []


def test_env_example_names_are_settings_fields(env_example: dict[str, str]) -> None:
    """A misspelt REGISTRY_PII_HASHKEY would be ignored by the service (extra="ignore")."""
    for name in env_example:
        owner = next((s for s, cls in SETTINGS.items() if name.startswith(prefix_of(cls))), None)
        if owner is not None:
            assert name in env_names(SETTINGS[owner]), f"{name} is no {owner} setting"
        else:
            assert name in infra_names() | COMPOSE_ONLY, f"{name} is read by nothing"


def test_env_example_commits_no_secret(env_example: dict[str, str]) -> None:
    secrets = [name for name in env_example if secret_by_name(name)]
    assert {"REGISTRY_PII_HASH_KEY", "NOTIFICATIONS_WHATSAPP_TOKEN"} <= set(secrets)
    assert {name: env_example[name] for name in secrets if env_example[name]} == {}


def test_secrets_are_required_variables_never_literals(compose_raw: dict[str, Any]) -> None:
    """Each secret field of a service is set (its default is a dev-only value) from a
    ``${NAME:?...}`` variable: never a literal, and `compose up` stops when it is empty."""
    for service, entry in services_of(compose_raw).items():
        fields = env_names(SETTINGS[service])
        env = environment(entry)
        set_by = {fields[name]: name for name in env if name in fields}
        secrets = {field for field in SETTINGS[service].model_fields if secret_by_name(field)}
        assert secrets <= set_by.keys(), f"{service} leaves {secrets - set_by.keys()} at defaults"
        for field in secrets:
            name = set_by[field]
            assert re.fullmatch(r"\$\{" + name + r":\?[^}]+\}", env[name]), f"{service}: {name}"
            with pytest.raises(MissingVariable):
                interpolate(env[name], {})


def test_service_environment_names_are_settings_fields(compose: dict[str, Any]) -> None:
    for service, entry in services_of(compose).items():
        accepted = env_names(SETTINGS[service])
        unknown = set(environment(entry)) - set(accepted)
        assert not unknown, f"{service} does not read {sorted(unknown)}"
        assert infra_names() & set(environment(entry)) >= DEPLOYED_INFRA, service


def test_services_bind_all_interfaces_and_publish_on_loopback(compose: dict[str, Any]) -> None:
    for service, entry in services_of(compose).items():
        env = environment(entry)
        prefix = prefix_of(SETTINGS[service])
        assert env.get(f"{prefix}HTTP_HOST") == "0.0.0.0", service
        port = int(env.get(f"{prefix}HTTP_PORT", default_port(service)))
        assert entry["ports"] == [f"127.0.0.1:{port}:{port}"], service
        assert entry["command"] == [service]
    for name, entry in compose["services"].items():
        for mapping in entry.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} widely"


def test_services_wait_for_healthy_infrastructure(compose: dict[str, Any]) -> None:
    for service, entry in services_of(compose).items():
        assert entry["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "mongo": {"condition": "service_healthy"},
            "mongo-init": {"condition": "service_completed_successfully"},
        }, service
    for name in INFRA:
        assert compose["services"][name]["healthcheck"]["test"], name


def test_one_shot_services_are_awaited_by_a_long_running_one(compose: dict[str, Any]) -> None:
    """`up --wait` fails on an exited container unless a running service depends on it
    completing."""
    services = compose["services"]
    one_shot = [name for name, entry in services.items() if entry.get("restart") == "no"]
    assert one_shot == ["mongo-init"]
    for name in one_shot:
        assert any(
            entry.get("depends_on", {}).get(name, {}).get("condition")
            == "service_completed_successfully"
            for entry in services.values()
        ), name


def test_services_are_hardened(compose: dict[str, Any]) -> None:
    for name in (*SETTINGS, "providers"):
        entry = compose["services"][name]
        assert entry["read_only"] is True, name
        assert any(str(t).split(":")[0] == "/tmp" for t in entry["tmpfs"]), name
        assert entry["user"] == f"{NON_ROOT_UID}:{NON_ROOT_UID}", name
        assert entry["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in entry["security_opt"], name
        assert entry["deploy"]["resources"]["limits"]["memory"], name
        build = entry["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
            ROOT / "deploy" / "Dockerfile"
        )


def test_service_healthchecks_probe_their_own_service(compose: dict[str, Any]) -> None:
    for service, entry in services_of(compose).items():
        test = entry["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "deploy.healthcheck"], service
        assert test[4] == service
        assert test[5:] == ["--path", "/readyz"]
    assert compose["services"]["providers"]["healthcheck"]["test"][4] == "providers"


def test_kafka_is_a_single_kraft_node_without_topic_auto_creation(
    compose: dict[str, Any],
) -> None:
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"].split(",")
    assert len(env["CLUSTER_ID"]) == 22
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    bootstrap = environment(compose["services"]["registry"])["KAFKA_BOOTSTRAP_SERVERS"]
    assert bootstrap in advertised.values(), "the services must use an advertised listener"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_mongo_is_a_replica_set_the_services_connect_to(compose: dict[str, Any]) -> None:
    mongo = compose["services"]["mongo"]
    assert re.fullmatch(r"mongo:8\.\d+", mongo["image"])
    command = mongo["command"]
    replica_set = command[command.index("--replSet") + 1]
    assert "--bind_ip_all" in command
    init = " ".join(compose["services"]["mongo-init"]["command"])
    assert f'_id: "{replica_set}"' in init and "rs.initiate" in init
    assert 'codeName !== "NotYetInitialized"' in init, "initiate only a fresh set"
    for service, entry in services_of(compose).items():
        uri = urlsplit(environment(entry)["MONGODB_URI"])
        assert parse_qs(uri.query)["replicaSet"] == [replica_set], service
        assert f'host: "{uri.netloc}"' in init, "the member's name must be the services' host"


def test_notifications_reach_the_stand_in_on_their_shared_loopback(
    compose: dict[str, Any],
) -> None:
    providers = compose["services"]["providers"]
    assert providers["network_mode"] == "service:notifications"
    assert providers["command"] == ["providers"]
    env = environment(compose["services"]["notifications"])
    assert urlsplit(env["NOTIFICATIONS_WHATSAPP_BASE_URL"]).netloc == "127.0.0.1:8025"
    assert urlsplit(env["NOTIFICATIONS_SMS_BASE_URL"]).netloc == "127.0.0.1:8025"
    assert (env["NOTIFICATIONS_SMTP_HOST"], env["NOTIFICATIONS_SMTP_PORT"]) == ("127.0.0.1", "2525")


def test_makefile_targets_run_compose_with_the_env_file() -> None:
    makefile = (ROOT / "Makefile").read_text()
    command = "docker compose -f deploy/compose.yaml --env-file deploy/.env"
    assert f"COMPOSE := {command}" in makefile
    assert re.search(
        r"^compose-up: deploy/\.env.*\n\t\$\(COMPOSE\) up -d --build --wait$", makefile, re.M
    )
    assert re.search(r"^compose-down: .*\n\t\$\(COMPOSE\) down$", makefile, re.M)
    assert re.search(
        r"^deploy/\.env:\n\t.*-m deploy\.envfile deploy/\.env\.example \$@$", makefile, re.M
    )
    phony = " ".join(re.findall(r"^\.PHONY:(.*)$", makefile, re.M)).split()
    assert {"compose-up", "compose-down"} <= set(phony)
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().split()
