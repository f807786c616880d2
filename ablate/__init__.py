"""ablate: does this attention module help my CNN, where should it go, and what does it cost?

The library names below load on first use, so `import ablate` (and `ablate --help`) does not import torch.
"""

from __future__ import annotations

from .errors import AblateError
from .lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
