"""Recovery of `<home>/work/`: the resumable work of runs (logit-cache shards, training
checkpoints). Every write there is staged (`*.partial` folders, hidden `.*.tmp` files),
fsynced and renamed into place, so a kill leaves only such litter; the next writer of the
warehouse clears it from folders that no live process is using:

    work/logits/<dataset>/<folder>/      in use while `<folder>.lock` beside it is held
    work/distill|refresh/<dataset>/...   in use while the dataset's run lock is held

A folder whose lock is held is left alone: its owner clears its own litter when it resumes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def _free(lock: Path) -> bool:
    """Whether nobody holds the flock on `lock` (a missing file is free)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def clear_litter(folder: Path) -> int:
    """Remove `*.partial` folders and hidden `.*.tmp` files under `folder`; how many."""
    n = 0
    for p in sorted(folder.rglob("*.partial"), reverse=True):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    for p in folder.rglob(".*.tmp"):
        p.unlink(missing_ok=True)
        n += 1
    return n


def recover_work(home: Path) -> None:
    work = home / "work"
    if not work.exists():
        return
    removed = 0
    for kind in ("logits", "distill", "refresh"):
        for ds_dir in sorted((work / kind).glob("*")) if (work / kind).exists() else []:
            if not ds_dir.is_dir():
                continue
            if kind != "logits" and not _free(home / "runs" / f"{ds_dir.name}.lock"):
                continue
            for run_dir in sorted(p for p in ds_dir.iterdir() if p.is_dir()):
                if kind == "logits" and not _free(ds_dir / f"{run_dir.name}.lock"):
                    continue
                removed += clear_litter(run_dir)
    if removed:
        log.warning("cleared %d half-written file(s) of interrupted runs under %s", removed, work)
