"""Write ``docs/asyncapi.yaml``, the system-wide AsyncAPI document, from the catalogue.

``python -m tools.asyncapi`` (``make asyncapi``) writes it; ``--check`` exits 1 when the file
in git is not what the catalogue gives now (tests/docs checks the same). The document itself
is built by :func:`shared.asyncapi.system_document`, which the services' own documents share.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from shared.asyncapi import system_document

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"
HEADER = (
    "# Generated from the contract catalogue by `python -m tools.asyncapi` (make asyncapi):\n"
    "# do not edit; change shared/contracts/, shared/examples.py or shared/asyncapi.py.\n"
)


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line strings as literal blocks, so the prose reads as written."""


def _text(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def render() -> str:
    body = yaml.dump(
        system_document(),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    parser.add_argument("--output", type=Path, default=DOCUMENT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.output.exists() or args.output.read_text() != text:
            sys.stderr.write(f"{args.output} is stale: run `make asyncapi`\n")
            return 1
        return 0
    args.output.write_text(text)
    sys.stdout.write(f"wrote {args.output}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
