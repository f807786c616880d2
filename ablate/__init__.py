"""ablate: does this attention module help my CNN, where should it go, and what does it cost?

The library entry points (`build_model`, `create_attention`, the `list_*` registries) are loaded on
first use: `import ablate` (and so `ablate --help`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import AblateError

if TYPE_CHECKING:
    from .attention import create_attention, list_attention
    from .models import build_model, list_backbones, list_positions

__version__ = "0.1.0"

__all__ = ["AblateError", "build_model", "create_attention", "list_attention", "list_backbones", "list_positions"]

_HOMES = {"create_attention": ".attention", "list_attention": ".attention", "build_model": ".models",
          "list_backbones": ".models", "list_positions": ".models"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
