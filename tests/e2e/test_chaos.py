"""Fault injection under load (issue 12), the short run of ``make chaos``: a fresh
supervised stack fed by the simulator at a steady rate; each service, then mongod, then
Kafka is SIGKILLed mid-stream and comes back; once settled, every guarantee holds when the
topics are read back from the beginning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.chaos import VICTIMS, Options, run_chaos

pytestmark = pytest.mark.integration
PARTICIPANTS = 200


def test_every_guarantee_holds_through_a_kill_of_each_process(tmp_path: Path) -> None:
    summary = run_chaos(
        Options(
            participants=PARTICIPANTS,
            rate=4.0,
            seed=12,
            run_dir=tmp_path / "run",
            topic_prefix="chaos-test.",
            settle_timeout_s=300,
        )
    )
    evidence = json.dumps(summary, indent=2, default=str)

    # each process was killed while the stream was flowing, and came back
    kills = {kill["victim"]: kill for kill in summary["kill_log"]}
    assert list(kills) == list(VICTIMS), evidence
    for victim, kill in kills.items():
        assert kill["settled"] < PARTICIPANTS, f"{victim} was killed after the stream"
        assert kill["restarts_after"] == kill["restarts_before"] + 1, victim
        assert kill["new_pid"] not in (None, kill["pid"]), victim
        assert summary["restarts_observed"][victim] >= 1, victim

    # every guarantee held: each check passed, and none of them vacuously
    failed = {name: c for name, c in summary["checks"].items() if not c["ok"]}
    assert not failed, json.dumps(failed, indent=2)
    assert summary["duplicates_found"] == 0
    assert summary["plans_settled"] == PARTICIPANTS
    assert summary["funnel"] == summary["intended"]
    checked = {name: c["checked"] for name, c in summary["checks"].items()}
    assert checked["every submission answered by exactly one distinct event"] == PARTICIPANTS
    assert checked["one product-listed per listing"] > 0, evidence
    assert checked["one financing-referred per referral"] > 0, evidence
    assert checked["one notification outcome per event told about"] > 0, evidence
    assert summary["intended"]["financing-referred"] > 0
