"""Locks of a warehouse home: the single-writer lock and the per-dataset run lock.

Both are advisory `flock`s: the kernel drops them when the holder dies (even under `kill -9`),
so there is no stale-lock cleanup to get wrong. A holder writes its pid and command line into
its lock file so that a waiter can say whom it waits for.

Neither fails at once when it is taken: a second process waits, bounded (`locks.*_timeout_s`),
and says every `locks.progress_s` seconds whom it is waiting for. Only when the bound is reached
does it give up with `WarehouseBusy`.

    WriterLock  <home>/writer.lock          catalog writes: seconds to minutes at a time
    RunLock     <home>/runs/<dataset>.lock  a whole pipeline / refresh / distill / quantize run;
                <home>/runs/<dataset>.queue/ one ticket per waiter: first come, first served
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

log = logging.getLogger(__name__)


class WarehouseBusy(RuntimeError):
    """A lock of the warehouse stayed taken for longer than we were willing to wait."""


@dataclass
class Waits:
    """How long lock waits last, and how often a waiter reports (process-wide defaults;
    `configure_waits` sets them from the config's `locks` section)."""

    writer_timeout_s: float = 4 * 3600.0
    run_timeout_s: float = 24 * 3600.0
    progress_s: float = 60.0


WAITS = Waits()


def configure_waits(
    writer_timeout_s: float | None = None,
    run_timeout_s: float | None = None,
    progress_s: float | None = None,
) -> None:
    """Set the process-wide wait bounds (None leaves one as it is). `LLM4ALL_LOCK_TIMEOUT_S`,
    when set, bounds both locks instead."""
    if writer_timeout_s is not None:
        WAITS.writer_timeout_s = writer_timeout_s
    if run_timeout_s is not None:
        WAITS.run_timeout_s = run_timeout_s
    if progress_s is not None:
        WAITS.progress_s = progress_s


def _env_timeout() -> float | None:
    raw = os.environ.get("LLM4ALL_LOCK_TIMEOUT_S")
    return float(raw) if raw else None


def _holder_info(what: str) -> bytes:
    info = {"pid": os.getpid(), "argv": " ".join(sys.argv)[:200], "since": time.time()}
    return json.dumps(info | {"what": what}).encode()


def describe_holder(raw: bytes) -> str:
    """`pid 123, `llm4all pipeline -d news`, since 10:02:03` from a lock file's content."""
    try:
        info = json.loads(raw or b"{}")
    except ValueError:
        return "holder unknown"
    if not info:
        return "holder unknown"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid')}, `{info.get('argv', '?')}`, since {since}"


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class _Reporter:
    """The progress line a waiter logs now and then: whom it waits for, for how long."""

    def __init__(self, what: str, timeout_s: float) -> None:
        self.what, self.timeout_s = what, timeout_s
        self.started = time.monotonic()
        self.next_at = self.started  # the first line at once: a person sees why it stalls

    def tick(self, holder: str) -> None:
        now = time.monotonic()
        if now >= self.next_at:
            waited = now - self.started
            log.info(
                "waiting for %s, held by %s (%.0f s so far, giving up after %.0f s)",
                self.what, holder, waited, self.timeout_s,
            )  # fmt: skip
            self.next_at = now + max(WAITS.progress_s, 0.5)

    def expired(self) -> bool:
        return time.monotonic() - self.started >= self.timeout_s

    def done(self) -> None:
        waited = time.monotonic() - self.started
        if waited >= 1.0:
            log.info("got %s after waiting %.0f s", self.what, waited)


class _HeldWhileInside:
    """`with lock:` acquires on entry and releases on exit, whatever happens inside."""

    def acquire(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class WriterLock(_HeldWhileInside):
    """An exclusive flock on `<folder>/<name>`, waited for up to `timeout_s` (default: the
    process-wide writer bound)."""

    def __init__(
        self, home: Path, timeout_s: float | None = None, name: str = "writer.lock"
    ) -> None:
        self.path = Path(home) / name
        self.timeout_s = timeout_s
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        timeout = self.timeout_s
        if timeout is None:
            timeout = _env_timeout() or WAITS.writer_timeout_s
        reporter = _Reporter(f"the lock {self.path}", timeout)
        while not _try_flock(fd):
            holder = describe_holder(os.pread(fd, 4096, 0))
            if reporter.expired():
                os.close(fd)
                raise WarehouseBusy(
                    f"another llm4all process is writing to {self.path.parent} ({holder}); "
                    f"gave up after {timeout:.0f} s: wait for it to finish and try again, or "
                    "raise locks.writer_timeout_s"
                ) from None
            reporter.tick(holder)
            time.sleep(0.1)
        reporter.done()
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_info(self.path.name), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


# The run locks this process holds, by path: a pipeline holds its dataset's lock and runs
# distill and quantize inside, which take the same lock again.
_HELD: dict[str, list[int]] = {}
_HELD_GUARD = threading.Lock()


class RunLock(_HeldWhileInside):
    """One run at a time per dataset, first come first served.

    A waiter writes a ticket `<order>-<uuid>.ticket` into the dataset's queue folder and holds
    a flock on it while it waits and runs; it takes the lock only when no live ticket with an
    earlier order is left (a ticket nobody holds belongs to a dead process and is removed).
    The lock itself is a flock on `<dataset>.lock`, so mutual exclusion never depends on the
    queue. `order` defaults to now; a scheduled run passes its scheduled time, so runs
    triggered one after the other go in that order even when their processes start
    out of order. Re-entrant within a process.
    """

    def __init__(
        self,
        home: Path,
        dataset: str,
        *,
        order: float | None = None,
        label: str = "",
        timeout_s: float | None = None,
    ) -> None:
        self.dir = Path(home) / "runs"
        self.path = self.dir / f"{dataset}.lock"
        self.queue = self.dir / f"{dataset}.queue"
        self.dataset, self.label = dataset, label
        self.order = time.time() if order is None else order
        self.timeout_s = timeout_s
        self._fds: tuple[int, int, Path] | None = None
        self._reentered = False

    def acquire(self) -> None:
        key = str(self.path)
        with _HELD_GUARD:
            if key in _HELD:
                _HELD[key][0] += 1
                self._reentered = True
                return
        self.queue.mkdir(parents=True, exist_ok=True)
        ticket = self.queue / f"{int(self.order * 1e6):020d}-{uuid.uuid4().hex[:8]}.ticket"
        # Locked before it is visible under its name: a ticket nobody holds is a dead one.
        tfd = os.open(ticket.with_suffix(".new"), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(tfd, fcntl.LOCK_EX)
        os.pwrite(tfd, _holder_info(self.label or "run"), 0)
        os.rename(ticket.with_suffix(".new"), ticket)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        timeout = self.timeout_s
        if timeout is None:
            timeout = _env_timeout() or WAITS.run_timeout_s
        reporter = _Reporter(f"the run lock of dataset {self.dataset!r}", timeout)
        try:
            while True:
                ahead = self._live_tickets_before(ticket.name)
                if not ahead and _try_flock(fd):
                    break
                if reporter.expired():
                    raise WarehouseBusy(
                        f"another run of dataset {self.dataset!r} is in progress "
                        f"({self._holder(fd, ahead)}); gave up after {timeout:.0f} s: raise "
                        "locks.run_timeout_s, or wait for it to finish"
                    )
                reporter.tick(self._holder(fd, ahead))
                time.sleep(0.2)
        except BaseException:
            os.close(fd)
            ticket.unlink(missing_ok=True)
            os.close(tfd)
            raise
        reporter.done()
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_info(self.label or "run"), 0)
        self._fds = (fd, tfd, ticket)
        with _HELD_GUARD:
            _HELD[key] = [1]

    def _live_tickets_before(self, mine: str) -> list[Path]:
        for t in self.queue.glob("*.new"):  # litter of a waiter killed while queueing
            _remove_if_dead(t)
        live = []
        for t in sorted(self.queue.glob("*.ticket")):
            if t.name >= mine:
                break
            try:
                fd = os.open(t, os.O_RDONLY)
            except FileNotFoundError:
                continue  # its owner finished meanwhile
            try:
                if _try_flock(fd):  # nobody holds it: its owner died
                    t.unlink(missing_ok=True)
                else:
                    live.append(t)
            finally:
                os.close(fd)
        return live

    def _holder(self, fd: int, ahead: list[Path]) -> str:
        running = os.pread(fd, 4096, 0)
        if running:
            who = describe_holder(running)
        elif ahead:
            who = "queued " + describe_holder(_read(ahead[0]))
        else:
            who = "holder unknown"
        return who + (f"; {len(ahead)} run(s) queued before this one" if ahead else "")

    def release(self) -> None:
        key = str(self.path)
        with _HELD_GUARD:
            if self._reentered:
                _HELD[key][0] -= 1
                self._reentered = False
                return
            if self._fds is None:
                return
            _HELD.pop(key, None)
        fd, tfd, ticket = self._fds
        self._fds = None
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        ticket.unlink(missing_ok=True)
        os.close(tfd)


def _remove_if_dead(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        if _try_flock(fd):
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
