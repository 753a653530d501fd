"""Crash-safe file writes: write beside the target, fsync, rename over it. A reader sees the old
file or the new one, never half of one; a crash leaves at most a hidden `.<name>.tmp` behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file, or a folder (so that a rename inside it is durable)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; when the block ends without an error,
    the file is fsynced and renamed over `path` (and the folder fsynced), else removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def fsync_tree(root: Path, files: bool = True) -> None:
    """fsync every file under `root` (unless `files` is False) and every folder, `root`
    included, so that the tree and the names in it survive a crash."""
    root = Path(root)
    dirs = [root]
    for p in root.rglob("*"):
        if p.is_dir():
            dirs.append(p)
        elif files and p.is_file():
            fsync_path(p)
    for d in dirs:
        fsync_path(d)
