"""deploy/Dockerfile and .dockerignore, read as text (no Docker engine here): the stages,
the runtime user, what the build context holds, and that `pip install .` ships every data
file the services read."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.support import (
    DOCKERFILE,
    DOCKERIGNORE,
    NON_ROOT_UID,
    ROOT,
    SETTINGS,
    default_port,
    dockerignore_rules,
    in_build_context,
    prefix_of,
)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Files under deploy/ that describe deployments; the image does not need them.
DEPLOYMENT_FILES = ("deploy/Dockerfile", "deploy/compose.yaml", "deploy/.env*", "deploy/k8s/*")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for word, rest in self.instructions if word == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, each with its (KEYWORD, arguments) in order."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert match, rest
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m[1]], match[1])
            stages.append(Stage(base, match[2] or ""))
        elif not stages and keyword == "ARG":
            name, _, default = rest.partition("=")
            global_args[name] = default
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


ARGS, STAGES = parse(DOCKERFILE.read_text())
RUNTIME = STAGES[-1]


def packages() -> dict[str, Path]:
    """The importable packages `pip install .` ships (pyproject's find include), by name."""
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    found = {}
    for init in ROOT.glob("*/**/__init__.py"):
        name = ".".join(init.parent.relative_to(ROOT).parts)
        if any(fnmatch.fnmatch(name, pattern) for pattern in include):
            found[name] = init.parent
    return found


def data_files() -> list[str]:
    """Non-Python files inside the shipped packages (relative paths), deployment files aside."""
    files = []
    for directory in {p.relative_to(ROOT).parts[0] for p in packages().values()}:
        for path in sorted((ROOT / directory).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if (
                path.is_file()
                and path.suffix not in (".py", ".pyc")
                and "__pycache__" not in path.parts
                and not any(fnmatch.fnmatch(rel, pattern) for pattern in DEPLOYMENT_FILES)
            ):
                files.append(rel)
    return files


def test_two_stages_on_python_311_slim() -> None:
    assert ARGS["PYTHON_IMAGE"] == "python:3.11-slim"
    assert [(s.base, s.name) for s in STAGES] == [
        ("python:3.11-slim", "builder"),
        ("python:3.11-slim", "runtime"),
    ]
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_runtime_runs_as_a_numeric_non_root_user() -> None:
    users = RUNTIME.args("USER")
    assert users, "the runtime stage sets no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid == str(NON_ROOT_UID) and gid in ("", str(NON_ROOT_UID))
    created = " ".join(RUNTIME.args("RUN"))
    assert f"--uid {NON_ROOT_UID}" in created and f"--gid {NON_ROOT_UID}" in created


def test_runtime_stage_has_no_build_tools_and_no_sources() -> None:
    commands = " ".join(RUNTIME.args("RUN"))
    for tool in ("apt-get install", "pip install", "gcc", "build-essential", "git "):
        assert tool not in commands, tool
    assert "pip uninstall -y pip" in commands
    copies = RUNTIME.args("COPY")
    assert copies and all(c.startswith("--from=builder ") for c in copies), copies
    builder = " ".join(STAGES[0].args("RUN"))
    assert "pip install --no-deps ." in builder
    assert "--only-binary=:all:" in builder, "the builder needs no compiler: wheels only"


def test_builder_copies_every_shipped_package() -> None:
    copied = {c.split()[0] for c in STAGES[0].args("COPY")}
    top_level = {name.split(".")[0] for name in packages()}
    assert top_level == {"shared", "services", "deploy", "tools"}
    assert copied == top_level | {"pyproject.toml"}


def test_package_data_ships_every_data_file() -> None:
    """A data file that no package-data glob matches is missing from the image."""
    globs: dict[str, list[str]] = PYPROJECT["tool"]["setuptools"]["package-data"]
    dirs = packages()
    missing = []
    for rel in data_files():
        path = ROOT / rel
        shipped = any(
            path.is_relative_to(dirs[package])
            and any(
                fnmatch.fnmatch(path.relative_to(dirs[package]).as_posix(), glob)
                for glob in patterns
            )
            for package, patterns in globs.items()
        )
        if not shipped:
            missing.append(rel)
    assert data_files(), "no data files found: the scan is broken"
    assert missing == []


def test_build_context_holds_the_project_and_no_secrets() -> None:
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    needed = ["pyproject.toml", *data_files()]
    for package in packages().values():
        needed += [p.relative_to(ROOT).as_posix() for p in package.glob("*.py")]
    assert [rel for rel in needed if not in_build_context(rel, rules)] == []
    for rel in (
        ".env",
        "deploy/.env",
        "services/registry/.env",
        ".git/config",
        ".venv/bin/python",
        ".run/stack.env",
        "tests/conftest.py",
        "docs/benchmark.md",
        "deploy/k8s/base/kustomization.yaml",
        "shared/__pycache__/settings.cpython-311.pyc",
        "jakpreneur_pipeline.egg-info/PKG-INFO",
    ):
        assert not in_build_context(rel, rules), rel


def test_entrypoint_healthcheck_and_ports() -> None:
    (entrypoint,) = RUNTIME.args("ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "-m", "deploy.entrypoint"]
    (healthcheck,) = RUNTIME.args("HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    assert json.loads(command) == ["python", "-m", "deploy.healthcheck"]
    assert "--interval=" in options and "--timeout=" in options
    for module in ("entrypoint", "healthcheck"):
        assert (ROOT / "deploy" / f"{module}.py").is_file()
    exposed = {int(p) for line in RUNTIME.args("EXPOSE") for p in line.split()}
    assert exposed == {default_port(name) for name in SETTINGS}


def test_services_bind_all_interfaces_in_the_image() -> None:
    env = " ".join(RUNTIME.args("ENV"))
    for cls in SETTINGS.values():
        assert f"{prefix_of(cls)}HTTP_HOST=0.0.0.0" in env


def test_time_zones_are_available_to_zoneinfo() -> None:
    """The services build ZoneInfo("Asia/Jakarta") at import; a slim image may carry no
    /usr/share/zoneinfo, so the image needs the tzdata package."""
    uses_zoneinfo = any(
        "ZoneInfo(" in path.read_text()
        for directory in ("shared", "services")
        for path in (ROOT / directory).rglob("*.py")
    )
    dependencies = " ".join(PYPROJECT["project"]["dependencies"])
    installs = " ".join(STAGES[0].args("RUN"))
    assert not uses_zoneinfo or "tzdata" in dependencies or re.search(r"\btzdata\b", installs)
