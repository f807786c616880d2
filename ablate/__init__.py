"""ablate: does this attention module help my CNN, where should it go, and what does it cost?"""

from .attention import create_attention, list_attention
from .errors import AblateError
from .models import build_model, list_backbones, list_positions

__version__ = "0.1.0"

__all__ = ["AblateError", "build_model", "create_attention", "list_attention", "list_backbones", "list_positions"]
