"""Lazy package exports (PEP 562): a name is imported from its module on first use.

Importing torch costs seconds and hundreds of MB, so a package whose modules mix light and heavy
names (`ablate`, `ablate.spec`, `ablate.datasets`) exports the heavy ones through this, and a
refusal that needs only the light ones never loads torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str],
                 namespace: Mapping[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's `__getattr__` and `__dir__`: `names` maps each exported name to the module (absolute, or
    relative to `package`) that defines it; `namespace` is the package's globals()."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*namespace, *names])

    return __getattr__, __dir__
