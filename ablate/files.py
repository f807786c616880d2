"""Atomic file writes: every file ablate writes (reports, checkpoints, dataset files) is complete or absent.

The data is written to a new temporary file in the destination's folder and renamed into place
(os.replace is atomic within a file system); the temporary file gets the permissions the user's
umask gives, as open() would, not mkstemp's private 0600, so a team can read what one member wrote.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def new_temp(path: Path) -> Path:
    """A new, empty, uniquely named file beside `path`, with mode 0o666 & ~umask.

    The kernel applies the umask to O_CREAT's mode, so nothing reads or sets the process umask
    (os.umask can only be read by setting it, a race with other threads); O_EXCL makes the name ours.
    """
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` to a new file beside `path`, then rename it into place: a crash never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_temp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
