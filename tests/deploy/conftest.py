"""Fixtures of the offline deployment checks: no Docker engine, cluster or network needed
(kustomize and composecheck are built once from the Go module proxy, see tools.py). One
module, test_compose_kafka.py (marked integration), starts a Kafka broker with the compose
file's security settings on the project's own Kafka jars (those of `make up`)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from deploy.envfile import fill_secrets
from tests.deploy import tools
from tests.deploy.support import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    K8S,
    OVERLAYS,
    interpolate,
    parse_env_file,
    walk_strings,
)


@pytest.fixture(scope="session")
def compose_raw() -> dict[str, Any]:
    """deploy/compose.yaml as written (anchors merged, ${VAR} not replaced)."""
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="session")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE.read_text())


@pytest.fixture(scope="session")
def env_text() -> str:
    """deploy/.env as `make compose-up` creates it: the example, secrets filled in."""
    return fill_secrets(ENV_EXAMPLE.read_text())


@pytest.fixture(scope="session")
def env_file(env_text: str) -> dict[str, str]:
    return parse_env_file(env_text)


@pytest.fixture(scope="session")
def compose(compose_raw: dict[str, Any], env_file: dict[str, str]) -> dict[str, Any]:
    """The compose file as `docker compose --env-file deploy/.env` sees it."""
    resolved = walk_strings(compose_raw, lambda text: interpolate(text, env_file))
    assert isinstance(resolved, dict)
    return resolved


@pytest.fixture(scope="session")
def compose_go(env_text: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file as compose-go (Docker Compose's loader) resolves it, `config`-style."""
    env = tmp_path_factory.mktemp("compose") / ".env"
    env.write_text(env_text)
    return tools.compose_config(COMPOSE_FILE, env)


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Each overlay's objects, rendered by kustomize."""
    return {overlay: tools.render(K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name = request.param
    assert isinstance(name, str)
    return name
