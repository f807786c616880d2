"""ablate: does this attention module help my CNN, where should it go, and what does it cost?

The library names below load on first use, so `import ablate` (and `ablate --help`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import AblateError

__version__ = "0.1.0"

_LAZY = {
    "build_model": "ablate.models",
    "list_backbones": "ablate.models",
    "list_positions": "ablate.models",
    "register_backbone": "ablate.models",
    "create_attention": "ablate.attention",
    "list_attention": "ablate.attention",
    "register_attention": "ablate.attention",
}

__all__ = ["AblateError", "build_model", "create_attention", "list_attention", "list_backbones", "list_positions",
           "register_attention", "register_backbone"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ablate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
