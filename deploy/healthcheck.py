"""The container's health check: ``python -m deploy.healthcheck [NAME] [--path PATH]``.

Exits 0 when ``GET http://127.0.0.1:PORT/PATH`` answers 200 in time, 1 otherwise. Only the
standard library is used, so a check costs a few milliseconds of CPU.

NAME defaults to ``SERVICE``, else to the service that PID 1 runs (the image's entry point
execs ``python -m services.NAME``). PORT is ``<NAME>_HTTP_PORT`` when set (the service reads
the same variable), else the service's default port. PATH defaults to ``/healthz`` (the
provider stand-in has only ``/readyz``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

# The defaults of each Settings class's ``http_port`` (tests/deploy checks they agree).
DEFAULT_PORTS = {
    "registry": 8001,
    "coaching": 8002,
    "marketplace": 8003,
    "notifications": 8004,
    "providers": 8025,
}
DEFAULT_PATHS = {"providers": "/readyz"}
_MODULE = re.compile(r"^(?:services\.(\w+)|deploy\.local\.(providers))$")


def running_service(cmdline: Path = Path("/proc/1/cmdline")) -> str | None:
    """The service a ``python -m MODULE`` process runs, from its command line."""
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return None
    for arg in args:
        match = _MODULE.match(arg.decode(errors="replace"))
        if match:
            return match.group(1) or match.group(2)
    return None


def service_name(name: str | None, environ: Mapping[str, str], cmdline: Path) -> str:
    chosen = name or environ.get("SERVICE", "").strip() or running_service(cmdline)
    if chosen is None or chosen not in DEFAULT_PORTS:
        raise SystemExit(f"healthcheck: unknown service {chosen!r}; one of {sorted(DEFAULT_PORTS)}")
    return chosen


def port(name: str, environ: Mapping[str, str]) -> int:
    return int(environ.get(f"{name.upper()}_HTTP_PORT") or DEFAULT_PORTS[name])


def healthy(url: str, timeout: float) -> bool:
    # No proxy: an http_proxy variable in the container must not route a loopback check.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str] | None = None, cmdline: Path = Path("/proc/1/cmdline")) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", nargs="?", help="service name (default: $SERVICE or PID 1's)")
    parser.add_argument("--path", help="path to GET (default /healthz)")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    name = service_name(args.name, os.environ, cmdline)
    path = args.path or DEFAULT_PATHS.get(name, "/healthz")
    url = f"http://127.0.0.1:{port(name, os.environ)}{path}"
    ok = healthy(url, args.timeout)
    if not ok:
        sys.stderr.write(f"healthcheck: {url} did not answer 200\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
