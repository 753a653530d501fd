"""The run lock: one run per dataset at a time, waiters served in order, dead waiters skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from warehouse import WarehouseBusy
from warehouse.lock import RunLock

_WAITER = """
import sys, time
from pathlib import Path
from warehouse.lock import RunLock
home, order, hold, log = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
with RunLock(home, "news", order=order, label=sys.argv[2]):
    with open(log, "a") as f:
        f.write(f"start {order}\\n")
    time.sleep(hold)
    with open(log, "a") as f:
        f.write(f"end {order}\\n")
"""


def _waiter(home: Path, order: float, hold: float, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _WAITER, str(home), str(order), str(hold), str(log)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def _wait_for_tickets(home: Path, n: int) -> None:
    deadline = time.monotonic() + 60
    while len(list((home / "runs" / "news.queue").glob("*.ticket"))) < n:
        assert time.monotonic() < deadline, "the waiters never queued"
        time.sleep(0.05)


def test_runs_take_turns_in_the_order_they_were_scheduled(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with RunLock(tmp_path, "news", order=0.0):
        # Started in reverse order of their scheduled times: they must run 1, 2, 3.
        procs = [_waiter(tmp_path, order, 0.2, log) for order in (3.0, 2.0, 1.0)]
        _wait_for_tickets(tmp_path, 4)
    for p in procs:
        assert p.wait(timeout=120) == 0
    lines = log.read_text().split()
    assert lines == ["start", "1.0", "end", "1.0", "start", "2.0", "end", "2.0",
                     "start", "3.0", "end", "3.0"]  # fmt: skip
    assert not list((tmp_path / "runs" / "news.queue").iterdir())  # every ticket removed


def test_a_killed_waiter_does_not_block_the_queue(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with RunLock(tmp_path, "news", order=0.0):
        dead = _waiter(tmp_path, 1.0, 0.0, log)
        _wait_for_tickets(tmp_path, 2)
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        live = _waiter(tmp_path, 2.0, 0.0, log)
        _wait_for_tickets(tmp_path, 2)
    assert live.wait(timeout=120) == 0
    assert log.read_text().split() == ["start", "2.0", "end", "2.0"]


def _try_in_subprocess(home: Path, dataset: str) -> subprocess.CompletedProcess:
    code = (
        "from pathlib import Path\nfrom warehouse.lock import RunLock\n"
        f"RunLock(Path({str(home)!r}), {dataset!r}, timeout_s=0.5).acquire()"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip


def test_the_lock_is_reentrant_in_a_process_and_waits_are_bounded(tmp_path: Path) -> None:
    with RunLock(tmp_path, "news", label="outer"), RunLock(tmp_path, "news", label="inner"):
        busy = _try_in_subprocess(tmp_path, "news")
        assert busy.returncode == 1
        assert "another run of dataset 'news' is in progress" in busy.stderr
        assert f"pid {os.getpid()}" in busy.stderr  # names the holder
        assert _try_in_subprocess(tmp_path, "other").returncode == 0  # datasets are independent
    with RunLock(tmp_path, "news", timeout_s=0.5):  # released by the outer exit only
        pass
    with pytest.raises(WarehouseBusy, match="gave up"), RunLock(tmp_path, "news"):
        raise WarehouseBusy("gave up")  # an error inside leaves the lock released
    assert _try_in_subprocess(tmp_path, "news").returncode == 0
