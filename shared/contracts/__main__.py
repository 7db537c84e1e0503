"""``python -m shared.contracts`` (``make schemas``): write every contract's JSON-Schema
snapshot after a compatible change."""

import sys

from shared.contracts.compat import write_snapshots

for written_path in write_snapshots():
    sys.stdout.write(f"wrote {written_path}\n")
