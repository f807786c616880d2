"""The one error type users see.

Anything a user can get wrong (a name, a value, a file) raises `AblateError` with a message that
names the thing, the key and what is allowed. The CLI turns it into one paragraph and exit code 2;
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable


class AblateError(ValueError):
    """A user-facing error: bad input, missing data, bad configuration."""


class EnvironmentFault(AblateError):
    """The environment failed, not the input: a full disk, a read-only file system, a dead server.

    One line like any AblateError, but exit code 1: re-running the same command after fixing the
    environment is the remedy, not changing the input."""


# errno values and database messages that mean the machine, not the user's input, is at fault
_FAULT_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
                 errno.EDQUOT: "the disk quota is exhausted", errno.EIO: "an input/output error"}
_FAULT_TEXTS = {"database or disk is full": "the disk is full",
                "attempt to write a readonly database": "the storage file is read-only",
                "readonly database": "the storage file is read-only",
                "disk i/o error": "an input/output error on the storage file",
                "unable to open database file": "the storage file cannot be opened (read-only folder?)"}


def environment_fault(err: BaseException) -> str | None:
    """One line for an exception (or one in its chain) that the environment caused, else None."""
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, OSError) and node.errno in _FAULT_ERRNOS:
            where = f" ({node.filename})" if node.filename else ""
            return f"{_FAULT_ERRNOS[node.errno]}{where}: {node.strerror}. Free space or make it writable, then " \
                   "re-run the same command (it resumes)."
        text = str(node).lower()
        for sign, meaning in _FAULT_TEXTS.items():
            if sign in text:
                return f"{meaning} ({type(node).__name__}). Free space or make it writable, then re-run the same " \
                       "command (it resumes)."
        node = node.__cause__ or node.__context__
    return None


def did_you_mean(value: str, allowed: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close allowed value exists, else ''."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(kind: str, value: object, allowed: Iterable[object], where: str = "") -> AblateError:
    """Build the standard 'unknown X' error, listing the allowed values."""
    allowed = list(allowed)
    prefix = f"{where}: " if where else ""
    return AblateError(
        f"{prefix}unknown {kind} {value!r}{did_you_mean(str(value), map(str, allowed))}; "
        f"allowed: {', '.join(map(str, allowed))}."
    )
