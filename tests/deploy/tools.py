"""The real tools behind the offline deployment checks, built from the Go module proxy once
into the project's cache beside the Kafka jars and mongod (``~/.cache/jakpreneur``;
``JAKPRENEUR_CACHE`` moves it):

- kustomize (``kustomize-v5.8.1/``), which renders ``deploy/k8s`` without kubectl or a cluster
  (without Go, ``kubectl kustomize``, kubectl's built-in copy, is used when present);
- composecheck (``composecheck-v2.16.2/``, source in ``composecheck/``), which loads
  ``deploy/compose.yaml`` with compose-go as ``docker compose config`` does, no engine needed.

``python -m tests.deploy.tools kustomize DIR`` prints DIR rendered (``make k8s-render``);
``python -m tests.deploy.tools compose FILE ENV_FILE`` prints the resolved compose project;
``python -m tests.deploy.tools build`` builds both (``make test`` does, beside its other installs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from deploy.local.launcher import cache_dir

KUSTOMIZE_VERSION = "v5.8.1"  # builds with this machine kind's Go; newer ones may need newer
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
COMPOSECHECK_SOURCE = Path(__file__).with_name("composecheck")
COMPOSE_GO_VERSION = "v2.16.2"  # as pinned in composecheck/go.mod


def _go_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "GOTOOLCHAIN": "local",  # never fetch a toolchain: this one must do
        "GOFLAGS": "-buildvcs=false -trimpath",
        "CGO_ENABLED": "0",
        **extra,
    }


def _build_into(target: Path, what: str, build: Callable[[Path], None]) -> Path:
    """Run ``build(dir)`` into ``<dir>.partial``, then rename: a broken build is redone."""
    partial = target.parent.with_name(target.parent.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    sys.stderr.write(f"[deploy tests] building {what} into {target.parent} (once)\n")
    build(partial)
    shutil.rmtree(target.parent, ignore_errors=True)
    partial.rename(target.parent)
    return target


def kustomize_binary() -> Path:
    return cache_dir() / f"kustomize-{KUSTOMIZE_VERSION}" / "kustomize"


def composecheck_binary() -> Path:
    return cache_dir() / f"composecheck-{COMPOSE_GO_VERSION}" / "composecheck"


def kustomize_command() -> list[str]:
    """The command that renders a kustomization directory given after it."""
    target = kustomize_binary()
    if not target.exists() and shutil.which("go"):

        def go_install(into: Path) -> None:
            module = f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"
            subprocess.run(
                ["go", "install", module], env=_go_env(GOBIN=str(into)), check=True, timeout=900
            )

        _build_into(target, f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}", go_install)
    if target.exists():
        return [str(target), "build"]
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    raise RuntimeError(f"kustomize needs Go (to build {KUSTOMIZE_MODULE}) or kubectl")


def composecheck() -> Path:
    target = composecheck_binary()
    if not target.exists():

        def go_build(into: Path) -> None:
            subprocess.run(
                ["go", "build", "-o", str(into / target.name), "."],
                cwd=COMPOSECHECK_SOURCE,
                env=_go_env(),
                check=True,
                timeout=900,
            )

        _build_into(target, f"composecheck (compose-go {COMPOSE_GO_VERSION})", go_build)
    return target


def _run(command: list[str], what: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{result.stderr}")
    return result.stdout


def render_text(directory: Path) -> str:
    return _run([*kustomize_command(), str(directory)], f"kustomize build {directory}")


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects of kustomization ``directory`` rendered, as dicts."""
    return [doc for doc in yaml.safe_load_all(render_text(directory)) if doc]


def compose_config_text(compose_file: Path, env_file: Path) -> str:
    return _run([str(composecheck()), str(compose_file), str(env_file)], "composecheck")


def compose_config(compose_file: Path, env_file: Path) -> dict[str, Any]:
    """The project as `docker compose --env-file ENV_FILE config` resolves it."""
    loaded = yaml.safe_load(compose_config_text(compose_file, env_file))
    assert isinstance(loaded, dict)
    return loaded


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "kustomize":
        sys.stdout.write(render_text(Path(argv[1])))
    elif len(argv) == 3 and argv[0] == "compose":
        sys.stdout.write(compose_config_text(Path(argv[1]), Path(argv[2])))
    elif argv == ["build"]:  # both, if not built yet (make test builds them beside the rest)
        sys.stdout.write(f"{' '.join(kustomize_command())}\n{composecheck()}\n")
    else:
        sys.stderr.write(
            "usage: python -m tests.deploy.tools kustomize DIR\n"
            "       python -m tests.deploy.tools compose COMPOSE_FILE ENV_FILE\n"
            "       python -m tests.deploy.tools build\n"
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
