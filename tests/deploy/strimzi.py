"""The Strimzi ``KafkaUser`` resources of each overlay, rendered from the contract catalogue
(:func:`shared.access.strimzi_users`: a SCRAM-SHA-512 user per principal and its ACLs) into
``deploy/k8s/overlays/<overlay>/kafka-users.yaml``, which is checked in:

    python -m tests.deploy.strimzi            # writes both files again (after a catalogue change)
    python -m tests.deploy.strimzi --check    # exit 1 when a checked-in file is stale

tests/deploy/test_k8s.py fails when a checked-in file differs from a fresh rendering, so a
change of the catalogue cannot reach a cluster without its ACLs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shared.access import SIMULATOR, strimzi_users

OVERLAYS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "overlays"
FILE_NAME = "kafka-users.yaml"
# The Strimzi Kafka resource's name (its CA Secret: jakpreneur-cluster-ca-cert).
CLUSTER = "jakpreneur"


@dataclass(frozen=True)
class Overlay:
    name: str
    prefix: str = ""  # TOPIC_PREFIX of the overlay's jakpreneur-config
    without: tuple[str, ...] = ()  # principals that have no business in that namespace

    @property
    def path(self) -> Path:
        return OVERLAYS_DIR / self.name / FILE_NAME

    def users(self) -> list[dict[str, Any]]:
        return [
            user
            for user in strimzi_users(self.prefix, CLUSTER)
            if user["metadata"]["name"] not in self.without
        ]

    def render(self) -> str:
        header = (
            f"# Strimzi KafkaUsers of the {self.name} overlay: a SCRAM-SHA-512 user per Kafka\n"
            "# principal and its ACLs, generated from the contract catalogue (shared/access.py).\n"
            "# Do not edit: `python -m tests.deploy.strimzi` writes this file again.\n"
        )
        if self.without:
            header += f"# Not in this overlay: {', '.join(self.without)}.\n"
        body = yaml.safe_dump_all(self.users(), sort_keys=False, default_flow_style=False)
        return header + "---\n" + body


# The simulator writes every inbound fact (it plays the portal, the LMS, Bank DKI, ...): a
# development tool, so production has no such principal.
OVERLAYS = (Overlay("dev"), Overlay("prod", without=(SIMULATOR,)))


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        sys.stderr.write("usage: python -m tests.deploy.strimzi [--check]\n")
        return 2
    stale = []
    for overlay in OVERLAYS:
        fresh = overlay.render()
        current = overlay.path.read_text() if overlay.path.exists() else ""
        if fresh == current:
            continue
        stale.append(str(overlay.path))
        if not check:
            overlay.path.write_text(fresh)
    if stale:
        verb = "stale" if check else "written"
        sys.stderr.write(f"{verb}: {', '.join(stale)}\n")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
