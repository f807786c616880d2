"""Backbones and the insertion logic: turn an arm's factors into a model."""

from .backbones import BACKBONES, get_backbone, list_backbones
from .build import AttentionNet, Insertion, attention_modules, build_model, resolve_stages
from .positions import POSITIONS, block_slots, list_positions

__all__ = [
    "BACKBONES",
    "POSITIONS",
    "AttentionNet",
    "Insertion",
    "attention_modules",
    "block_slots",
    "build_model",
    "get_backbone",
    "list_backbones",
    "list_positions",
    "resolve_stages",
]
