"""Typed config dataclasses from plain mappings (YAML, JSON, CLI), and the one vocabulary of value checks.

Recipe, Runtime and DataConfig are frozen dataclasses of simple types; `config_from_dict` builds
one from a mapping and every mistake names where it came from, the key and what is allowed.
Every check of a value (its type, its range, a choice with did-you-mean, a mapping's keys, NaN)
lives here and raises ConfigError(key, text); callers only put their location (the file, the
section) before the key. Nothing here imports torch: a refusal of bad input answers without it.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from .errors import AblateError, did_you_mean

C = TypeVar("C")

INT64_MAX = 2**63 - 1  # seeds, sizes and counts end up in torch, numpy and SQLite as 64-bit integers
INT64_MIN = -(2**63)


def is_unusable_number(value: Any) -> bool:
    """NaN, an infinity, or an integer beyond 64 bits: values YAML and Python parse but nothing can compute with.

    NaN compares false with every bound, so a range check alone lets it through.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not INT64_MIN <= value <= INT64_MAX
    if isinstance(value, float):
        return not math.isfinite(value)
    return False


def unusable_note(value: Any) -> str:
    """' (NaN, infinities and integers beyond 64 bits cannot work)' after such a value, else ''."""
    if isinstance(value, (list, tuple)):
        return unusable_note(next((v for v in value if is_unusable_number(v)), None))
    return " (NaN, infinities and integers beyond 64 bits cannot work)" if is_unusable_number(value) else ""


def is_integer(value: Any) -> bool:
    """A 64-bit int that is not a bool (True is an int in Python, and 1 in a study file is rarely `true`)."""
    return isinstance(value, int) and not isinstance(value, bool) and not is_unusable_number(value)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not is_unusable_number(value)


def _accepts(value: Any, hint: Any) -> bool:
    """Is `value` of the simple type `hint` (int, float, bool, str, X | None, tuple[...])?"""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_accepts(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        args = get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_accepts(v, args[0]) for v in value)
        return len(value) == len(args) and all(_accepts(v, a) for v, a in zip(value, args))
    if hint is float:
        return is_number(value)
    if hint is int:
        return is_integer(value)
    return isinstance(value, hint)


def type_name(hint: Any) -> str:
    """'float', 'int | None', 'list[str]': a type hint in the words of a YAML study file (tuples are lists)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in get_args(hint))
    if origin is tuple:
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list[{type_name(args[0])}]"
        return f"list[{', '.join(type_name(a) for a in args)}]"
    return "None" if hint is type(None) else getattr(hint, "__name__", None) or str(hint)


def _coerce(value: Any, hint: Any) -> Any:
    """Friendly conversions for values from YAML/JSON/CLI: lists -> tuples, one value where a list is
    expected -> a one-item tuple, '1e-3' -> 1e-3, 1 -> 1.0."""
    if isinstance(value, list):
        return tuple(value)
    options = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    if value is not None and not isinstance(value, tuple) and any(
            get_origin(h) is tuple and get_args(h)[-1] is Ellipsis for h in options):
        return (value,)
    wants_float = hint is float or (get_origin(hint) in (Union, types.UnionType) and float in get_args(hint))
    return as_float(value) if wants_float else value


def as_float(value: Any) -> Any:
    """'1e-3' -> 0.001 and 3 -> 3.0 (PyYAML reads 1e-3, without a dot, as a string); anything else unchanged.

    An int beyond 64 bits stays an int, so the type check refuses it rather than float() overflowing.
    """
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return float(value) if is_integer(value) else value


class ConfigError(AblateError):
    """One field's bad value: the key and what is wrong, kept apart so that every caller can put the
    key on its own path ('recipe.lr', 'grid.backbones[0].name') before the message."""

    def __init__(self, key: str, text: str) -> None:
        self.key, self.text = key, text
        super().__init__(f"{key}: {text}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return (type(self), (self.key, self.text))


def key_path(where: str, key: str) -> str:
    """'recipe' + 'lr' -> 'recipe.lr'; an index key ('[0]') joins without a dot."""
    if not where:
        return key
    return f"{where}{key}" if key.startswith("[") else f"{where}.{key}"


def check_types(obj: Any) -> None:
    """Raise ConfigError naming the first dataclass field whose value has the wrong type."""
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not _accepts(value, hints[f.name]):
            raise ConfigError(f.name, f"must be {type_name(hints[f.name])}, got {value!r}{unusable_note(value)}.")


def config_from_dict(cls: type[C], d: Mapping[str, Any], where: str = "", keys: Sequence[str] | None = None) -> C:
    """Build frozen config dataclass `cls` from a mapping, the one way every config section is read.

    Field checks live in the class's `__post_init__` (check_types, check_choice, check_range), so a
    config built in code is checked the same way. Every mistake names its key path under `where`
    ('recipe.lr: must be > 0.0, got 0.'); `keys` limits what a file may set (default: every field).
    """
    if not isinstance(d, Mapping):
        raise AblateError(f"{where or cls.__name__}: expected a mapping of {cls.__name__} settings, got "
                          f"{type(d).__name__}.")
    hints = get_type_hints(cls)
    names = list(keys) if keys is not None else [f.name for f in fields(cls)]  # type: ignore[arg-type]
    required = [f.name for f in fields(cls)  # type: ignore[arg-type]
                if f.default is MISSING and f.default_factory is MISSING]
    check_keys(where, d, names, required)
    try:
        return cls(**{k: _coerce(v, hints[k]) for k, v in d.items()})
    except ConfigError as err:
        raise ConfigError(key_path(where, err.key), err.text) from None
    except AblateError as err:  # a rule across fields (nesterov needs sgd): the section is the key
        raise AblateError(f"{where}: {err}" if where else str(err)) from None


def check_keys(key: str, value: Any, allowed: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
    """A mapping whose keys are all `allowed` (an unknown one gets a did-you-mean) and include `required`."""
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping with keys {', '.join(allowed)}, got {type(value).__name__}.")
    for k in value:
        if k not in allowed:
            raise ConfigError(key_path(key, str(k)),
                              f"unknown key{did_you_mean(str(k), allowed)}; allowed keys: {', '.join(allowed)}.")
    for k in required:
        if k not in value:
            raise ConfigError(key_path(key, k), "required key is missing.")
    return dict(value)


def check_integer(key: str, value: Any, low: int | None = None, high: int | None = INT64_MAX) -> int:
    """A 64-bit integer (not a bool) within [low, high]."""
    if not is_integer(value):
        raise ConfigError(key, f"expected an integer, got {value!r}{unusable_note(value)}.")
    check_range(key, value, low, high)
    return int(value)


def check_number(key: str, value: Any) -> float:
    """A finite number ('1e-3' as YAML reads it, without a dot, included)."""
    value = as_float(value)
    if not is_number(value):
        raise ConfigError(key, f"expected a finite number, got {value!r}{unusable_note(value)}.")
    return float(value)


def check_usable_numbers(key: str, value: Any) -> None:
    """Refuse NaN, infinities and integers beyond 64 bits anywhere in a nested document, naming the key path.

    Every section checks its own numbers too; this walk also covers values handed on unchecked
    (attention knobs, tuning choices) and gives every such mistake the same message.
    """
    if isinstance(value, Mapping):
        for k, v in value.items():
            check_usable_numbers(key_path(key, str(k)), v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_usable_numbers(f"{key}[{i}]", v)
    elif is_unusable_number(value):
        raise ConfigError(key, f"{value!r} is not a usable number: NaN, infinities and integers beyond 64 bits "
                               "cannot work.")


def check_choice(key: str, value: Any, allowed: Sequence[Any]) -> None:
    """One of `allowed`, else the allowed values and the closest one."""
    if value not in allowed:
        raise ConfigError(key, f"unknown value {value!r}{did_you_mean(str(value), map(str, allowed))}; allowed: "
                               f"{', '.join(map(str, allowed))}.")


def check_range(key: str, value: float | None, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """`value` (when not None) must lie in the interval; the message spells the interval out."""
    if value is None:
        return
    bad = (low is not None and (value <= low if low_open else value < low)) or (
        high is not None and (value >= high if high_open else value > high))
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise ConfigError(key, f"must be {' and '.join(s for s in (lo, hi) if s)}, got {value!r}.")
