"""The container image's entry point: ``python -m deploy.entrypoint [NAME] [ARGS...]``.

NAME picks what the container runs; without an argument it is read from ``SERVICE``:

- ``registry``, ``coaching``, ``marketplace``, ``notifications``: ``python -m services.NAME``;
- ``providers``: the local provider stand-in (``python -m deploy.local.providers``);
- anything else runs as given, e.g. ``docker run IMAGE jakpreneur dlq list``.

The process is replaced (exec), so the service is PID 1 and receives SIGTERM itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

SERVICES = ("registry", "coaching", "marketplace", "notifications")
PROVIDERS = "providers"
USAGE = (
    "usage: IMAGE {registry|coaching|marketplace|notifications|providers} [ARGS...]\n"
    "   or: SERVICE=registry IMAGE\n"
    "   or: IMAGE COMMAND [ARGS...]"
)


def command(argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The command line that the container execs for its arguments and environment."""
    args = list(argv)
    name = args.pop(0) if args else environ.get("SERVICE", "").strip()
    if name in SERVICES:
        return [sys.executable, "-m", f"services.{name}", *args]
    if name == PROVIDERS:
        return [sys.executable, "-m", "deploy.local.providers", *args]
    if not name:
        raise SystemExit(USAGE)
    return [name, *args]


def main() -> None:
    argv = command(sys.argv[1:], os.environ)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
