"""``python -m deploy.envfile EXAMPLE TARGET``: write TARGET (mode 0600) from EXAMPLE, each
empty secret (a variable whose name has KEY, TOKEN, SECRET or PASSWORD in it) filled with a
fresh random value: 32 random bytes, base64url, which is also a valid Fernet key.

An existing TARGET keeps every value it has (its secrets may already protect data); the
variables EXAMPLE has and it lacks (a new service's password, say) are appended, secrets
filled the same way.
"""

from __future__ import annotations

import base64
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD")
_ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


def random_secret() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def is_secret(name: str) -> bool:
    return bool(SECRET_NAME.search(name.upper()))


def fill_secrets(text: str, generate: Callable[[], str] = random_secret) -> str:
    """The env file ``text`` with every empty secret assignment given a generated value."""
    lines = []
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line)
        if match and is_secret(match["name"]) and match["value"].strip() in ("", '""', "''"):
            line = f"{match['name']}={generate()}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _names(text: str) -> set[str]:
    return {m["name"] for line in text.splitlines() if (m := _ASSIGNMENT.match(line))}


def missing(example: str, target: str) -> str:
    """The assignments of ``example`` whose variable ``target`` does not set, filled."""
    have = _names(target)
    lines = [
        line
        for line in example.splitlines()
        if (m := _ASSIGNMENT.match(line)) and m["name"] not in have
    ]
    return fill_secrets("\n".join(lines)) if lines else ""


def write_env(example: Path, target: Path) -> list[str]:
    """Create ``target`` from ``example``, or append what it lacks; the names written."""
    old = target.read_text() if target.exists() else ""
    added = missing(example.read_text(), old) if old else fill_secrets(example.read_text())
    if old and not added:
        return []
    partial = target.with_name(target.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(old + ("" if not old or old.endswith("\n") else "\n") + added)
    partial.rename(target)
    return sorted(_names(added))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m deploy.envfile EXAMPLE TARGET\n")
        return 2
    example, target = Path(args[0]), Path(args[1])
    existed = target.exists()
    written = write_env(example, target)
    if not existed:
        sys.stderr.write(f"wrote {target} from {example}, with fresh secrets\n")
    elif written:  # names only: the values are secrets
        sys.stderr.write(f"{target}: added {', '.join(written)} (fresh secrets); kept the rest\n")
    else:
        sys.stderr.write(f"{target} has every variable of {example}; left as it is\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
