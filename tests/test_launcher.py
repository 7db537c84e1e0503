"""The launcher leaves no orphan: a server dies with the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deploy.local.launcher import Mongod, install_mongod

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers signal 0; it is gone for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def wait_gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_stop_ends_the_server(tmp_path: Path) -> None:
    mongod = Mongod(tmp_path).start()
    assert mongod.process is not None
    pid = mongod.process.pid
    assert alive(pid)
    mongod.stop()
    assert wait_gone(pid)


def test_a_server_dies_with_a_killed_launcher(tmp_path: Path) -> None:
    install_mongod()
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from deploy.local.launcher import Mongod
        m = Mongod(Path({str(tmp_path)!r})).start()
        print(m.process.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert wait_gone(child), "mongod outlived the launcher that started it"
