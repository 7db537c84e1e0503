"""The image's entry point and health check, and the .env writer of `make compose-up`, run
in-process (the health check against a throwaway HTTP server on 127.0.0.1)."""

from __future__ import annotations

import re
import stat
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from deploy import entrypoint, envfile, healthcheck
from tests.deploy.support import ENV_EXAMPLE, SETTINGS, default_port, parse_env_file


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/healthz" else 503
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_entrypoint_picks_the_service_by_argument_or_environment() -> None:
    python = sys.executable
    assert entrypoint.command(["coaching"], {"SERVICE": "registry"}) == [
        python,
        "-m",
        "services.coaching",
    ]
    assert entrypoint.command([], {"SERVICE": "registry"}) == [python, "-m", "services.registry"]
    assert entrypoint.command(["providers", "--http-port", "9"], {}) == [
        python,
        "-m",
        "deploy.local.providers",
        "--http-port",
        "9",
    ]
    assert entrypoint.command(["jakpreneur", "dlq", "list"], {}) == ["jakpreneur", "dlq", "list"]
    with pytest.raises(SystemExit, match="usage"):
        entrypoint.command([], {})
    assert set(entrypoint.SERVICES) == set(SETTINGS)


def test_healthcheck_ports_are_the_settings_defaults() -> None:
    assert {name: healthcheck.DEFAULT_PORTS[name] for name in SETTINGS} == {
        name: default_port(name) for name in SETTINGS
    }
    assert healthcheck.port("coaching", {"COACHING_HTTP_PORT": "9002"}) == 9002
    assert healthcheck.port("coaching", {}) == default_port("coaching")


def test_healthcheck_finds_the_service_pid_1_runs(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/opt/venv/bin/python\0-m\0services.marketplace\0")
    assert healthcheck.service_name(None, {}, cmdline) == "marketplace"
    assert healthcheck.service_name("coaching", {"SERVICE": "registry"}, cmdline) == "coaching"
    assert healthcheck.service_name(None, {"SERVICE": "registry"}, cmdline) == "registry"
    cmdline.write_bytes(b"python\0-m\0deploy.local.providers\0")
    assert healthcheck.service_name(None, {}, cmdline) == "providers"
    with pytest.raises(SystemExit):
        healthcheck.service_name(None, {}, tmp_path / "absent")


def test_healthcheck_exit_status_follows_the_answer(
    http_port: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REGISTRY_HTTP_PORT", str(http_port))
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # must not be used
    absent = tmp_path / "absent"
    assert healthcheck.main(["registry"], absent) == 0
    assert healthcheck.main(["registry", "--path", "/readyz"], absent) == 1
    monkeypatch.setenv("REGISTRY_HTTP_PORT", "1")  # nothing listens there
    assert healthcheck.main(["registry", "--timeout", "1"], absent) == 1


def test_env_file_gets_fresh_working_secrets(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    assert envfile.write_env(ENV_EXAMPLE, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    example = parse_env_file(ENV_EXAMPLE.read_text())
    written = parse_env_file(target.read_text())
    assert written.keys() == example.keys()
    filled = {name for name in written if written[name] != example[name]}
    assert {
        "REGISTRY_PII_HASH_KEY",
        "REGISTRY_PII_ENCRYPTION_KEY",
        "NOTIFICATIONS_WHATSAPP_TOKEN",
        "NOTIFICATIONS_SMS_API_KEY",
        "KAFKA_ADMIN_PASSWORD",
        "KAFKA_REGISTRY_PASSWORD",
        "MONGODB_ADMIN_PASSWORD",
        "MONGODB_REGISTRY_PASSWORD",
    } <= filled
    assert filled == {name for name in example if envfile.is_secret(name)}
    for name in filled:  # usable in a JAAS line and in a MongoDB URI as they are
        assert re.fullmatch(r"[A-Za-z0-9_=-]{44}", written[name]), name
    Fernet(written["REGISTRY_PII_ENCRYPTION_KEY"])  # the registry accepts it
    again = tmp_path / "second.env"
    envfile.write_env(ENV_EXAMPLE, again)
    assert (
        parse_env_file(again.read_text())["REGISTRY_PII_HASH_KEY"]
        != (written["REGISTRY_PII_HASH_KEY"])
    )
    before = target.read_text()
    assert not envfile.write_env(ENV_EXAMPLE, target), "an existing .env is kept"
    assert target.read_text() == before


def test_an_older_env_file_keeps_its_values_and_gains_the_new_variables(tmp_path: Path) -> None:
    """A deploy/.env written before a new principal existed: its keys (which protect stored
    data) stay; the variables it lacks are appended with fresh secrets."""
    example = parse_env_file(ENV_EXAMPLE.read_text())
    target = tmp_path / ".env"
    target.write_text("REGISTRY_PII_HASH_KEY=the-old-key\nTOPIC_PREFIX=mine.\n")
    added = envfile.write_env(ENV_EXAMPLE, target)
    written = parse_env_file(target.read_text())
    assert written["REGISTRY_PII_HASH_KEY"] == "the-old-key"
    assert written["TOPIC_PREFIX"] == "mine."
    assert written.keys() == example.keys() | {"TOPIC_PREFIX"}
    assert set(added) == example.keys() - {"REGISTRY_PII_HASH_KEY", "TOPIC_PREFIX"}
    assert re.fullmatch(r"[A-Za-z0-9_=-]{44}", written["KAFKA_REGISTRY_PASSWORD"])
    assert envfile.write_env(ENV_EXAMPLE, target) == []  # nothing more to add
