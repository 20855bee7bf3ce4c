"""`mmats up` as a user or a service manager runs it: a foreground process, stopped by a signal.

Ctrl-C (SIGINT) and a service manager's stop (SIGTERM: systemd, `docker stop`, `kill`) must both bring
the system down gracefully: working orders canceled, the summary printed, the cluster-address record
removed, exit status 0. The process starts its own local Ray cluster, apart from the test session's.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from control.cluster_address import address_file
from tests.e2e.conftest import free_port

MMATS = Path(sys.executable).with_name("mmats")


def _lines(proc: subprocess.Popen[str], out: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.put(line)


def _wait_for(out: queue.Queue[str], seen: list[str], text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = out.get(timeout=1.0)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return
    pytest.fail(f"no {text!r} within {timeout_s:g} s; output so far:\n{''.join(seen)}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_up_stops_gracefully_on_a_signal(sig: signal.Signals, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [str(MMATS), "up", "--home", str(tmp_path / "home"), "--port", str(free_port()), "--num-cpus", "2",
         "--status-every", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=Path(__file__).parents[2])
    out: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=_lines, args=(proc, out), daemon=True).start()
    try:
        _wait_for(out, seen, "controls:", 240)
        _wait_for(out, seen, "kill RUNNING", 60)  # a status line: the system runs
        record = address_file("mmats")
        assert record.exists()
        proc.send_signal(sig)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    while not out.empty():
        seen.append(out.get())
    text = "".join(seen)
    assert code == 0, text
    assert "summary: equity" in text, text
    assert "SIGTERM received" not in text, text
    assert not record.exists(), "the cluster-address record outlived the system"
