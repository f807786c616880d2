"""The one error type users see.

Anything a user can get wrong (a name, a value, a file) raises `AblateError` with a message that
names the thing, the key and what is allowed. The CLI turns it into one paragraph and exit code 2;
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable, Mapping


class AblateError(ValueError):
    """A user-facing error: bad input, missing data, bad configuration."""


class EnvironmentFault(AblateError):
    """The environment failed, not the input: a full disk, a read-only file system, a dead server.

    One line like any AblateError, but exit code 1: re-running the same command after fixing the
    environment is the remedy, not changing the input."""


# errno values and database messages that mean the machine, not the user's input, is at fault: what happened
# ({at}: where, when known; {within}: the wait that ran out) and what fixes it
_FAULT_ERRNOS = {errno.ENOSPC: ("the disk is full{at}", "free space on it"),
                 errno.EROFS: ("the file system is read-only{at}", "make it writable"),
                 errno.EDQUOT: ("the disk quota is exhausted{at}", "free space or raise the quota"),
                 errno.EIO: ("an input/output error{at}", "check the disk")}
_NO_ANSWER = ("the storage server{at} did not answer within {within} (connect timeout)",
              "check that it is up and reachable from here, or raise $ABLATE_CONNECT_TIMEOUT_S")
_FAULT_TEXTS = {
    "database or disk is full": ("the disk holding the storage file{at} is full", "free space on it"),
    "readonly database": ("the storage file{at} is read-only", "make the file and its folder writable"),
    "disk i/o error": ("an input/output error on the storage file{at}", "check the disk"),
    "unable to open database file": ("the storage file{at} cannot be opened (is its folder read-only?)",
                                     "make its folder writable"),
    "due to statement timeout": ("the storage server{at} did not answer within {within} (statement timeout; e.g. a "
                                 "table locked by another session)",
                                 "wait until it is free, or raise $ABLATE_STATEMENT_TIMEOUT_S"),
    "timeout expired": _NO_ANSWER,  # psycopg / libpq
    "(timed out)": _NO_ANSWER,  # PyMySQL
}


def environment_fault(err: BaseException, storage: str | None = None, folder: str | None = None,
                      waits: Mapping[str, int] | None = None) -> str | None:
    """One line for an exception (or one in its chain) that the environment caused, else None.

    Deep in Optuna and the drivers an error carries no path, so the caller names what it was using:
    `storage` (the storage file's path, or the masked URL of its server), `folder` (where it writes,
    for an OSError without a file name) and `waits` ("connect" / "statement": the timeouts in seconds).
    """
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, OSError) and node.errno in _FAULT_ERRNOS:
            meaning, remedy = _FAULT_ERRNOS[node.errno]
            place = node.filename or folder
            return f"{meaning.format(at=f' ({place})' if place else '')}: {node.strerror}; {remedy}, then " \
                   "re-run the same command."
        text = str(node).lower()
        for sign, (meaning, remedy) in _FAULT_TEXTS.items():
            if sign in text:
                kind = "statement" if "statement" in sign else "connect"
                within = f"{waits[kind]} s" if waits and kind in waits else f"its {kind} timeout"
                return f"{meaning.format(at=f' {storage}' if storage else '', within=within)}; {remedy}, then " \
                       "re-run the same command."
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
