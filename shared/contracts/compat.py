"""Schema compatibility: each contract's JSON-Schema snapshot under ``shared/schemas`` (checked
in), what in a changed contract would break a reader or writer of the old one
(``incompatibilities``; ``tests/shared/test_contracts.py`` runs it on every contract), and the
writer of the snapshots (``python -m shared.contracts``, ``make schemas``) after a compatible
change. Tooling: the services never call it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.contracts.catalogue import CATALOGUE

SCHEMA_DIR = Path(__file__).parents[1] / "schemas"  # shared/schemas

_DOC_KEYS = frozenset({"description", "title", "examples"})


def _shape(schema: Any) -> Any:
    """A schema without its prose, for comparing what a field accepts."""
    if isinstance(schema, dict):
        return {k: _shape(v) for k, v in schema.items() if k not in _DOC_KEYS}
    if isinstance(schema, list):
        return [_shape(v) for v in schema]
    return schema


def incompatibilities(old: dict[str, Any], new: dict[str, Any], where: str = "") -> list[str]:
    """What in ``new`` breaks a consumer or producer written against ``old``: a removed or
    retyped field, or a new required field (also inside nested models' ``$defs``)."""
    problems = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_field in old_props.items():
        if name not in new_props:
            problems.append(f"{where}{name}: removed")
        elif _shape(old_field) != _shape(new_props[name]):
            problems.append(f"{where}{name}: type changed")
    for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        problems.append(f"{where}{name}: newly required")
    for name, old_def in old.get("$defs", {}).items():
        if name not in new.get("$defs", {}):
            problems.append(f"{where}{name}: nested model removed")
        else:
            problems += incompatibilities(old_def, new["$defs"][name], f"{where}{name}.")
    return problems


def write_snapshots(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event in CATALOGUE:
        path = directory / f"{event.ce_type()}.json"
        path.write_text(json.dumps(event.model_json_schema(), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
