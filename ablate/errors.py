"""The one error type users see.

Anything a user can get wrong (a name, a value, a file) raises `AblateError` with a message that
names the thing, the key and what is allowed. The CLI turns it into one paragraph and exit code 2;
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AblateError(ValueError):
    """A user-facing error: bad input, missing data, bad configuration."""


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
