"""Errors that name the study file and the key path: the value checks are ablate.config's, this adds where.

Every check of a value (type, range, choice, did-you-mean, keys, NaN) raises ConfigError(key, text)
in ablate.config; `Located` runs it and re-raises one AblateError '<file>: <key>: <text>', so a study
file, `ablate train`'s options and a config built in code share one vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..config import (
    INT64_MAX,
    ConfigError,
    check_choice,
    check_integer,
    check_keys,
    check_number,
    check_usable_numbers,
)
from ..errors import AblateError

T = TypeVar("T")


class Located:
    """The study file's checks, each naming the file and the key path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, message: str) -> AblateError:
        return AblateError(f"{self.path}: {key}: {message}" if key else f"{self.path}: {message}")

    def check(self, check: Callable[..., T], key: str, *args: Any) -> T:
        """`check(key, *args)` from ablate.config, its ConfigError re-raised with the file named."""
        try:
            return check(key, *args)
        except ConfigError as err:
            raise self.error(err.key, err.text) from None

    def mapping(self, value: Any, key: str, allowed: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
        return self.check(check_keys, key, value, allowed, required)

    def integer(self, value: Any, key: str, low: int | None = None, high: int = INT64_MAX) -> int:
        return self.check(check_integer, key, value, low, high)

    def number(self, value: Any, key: str) -> float:
        return self.check(check_number, key, value)

    def choice(self, value: Any, key: str, allowed: Sequence[Any]) -> Any:
        self.check(check_choice, key, value, allowed)
        return value

    def usable_numbers(self, value: Any, key: str = "") -> None:
        self.check(check_usable_numbers, key, value)

    def seq(self, value: Any, key: str, *, nonempty: bool = True) -> list[Any]:
        """A list as written, or one value as a one-item list."""
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            value = [value]
        if nonempty and not value:
            raise self.error(key, "must not be empty.")
        return list(value)

    def nested(self, key: str, build: Callable[..., T], value: Any) -> T:
        """Run a section's own from_dict, re-raising its error with the file and section named."""
        try:
            return build(value, where=key)
        except AblateError as err:
            raise AblateError(f"{self.path}: {err}") from None
