"""Backbones and the insertion logic: turn an arm's factors into a model."""

from .backbones import Backbone, BuildContext, Built, Site
from .build import AttentionNet, Insertion, attention_modules, build_model, resolve_stages
from .convnet import ConvBlocks
from .positions import POSITIONS, block_slots, check_position, list_positions
from .registry import BACKBONES, get_backbone, list_backbones, register_backbone, resolve_backbone
from .resnet import ResNet

__all__ = [
    "BACKBONES",
    "POSITIONS",
    "AttentionNet",
    "Backbone",
    "BuildContext",
    "Built",
    "ConvBlocks",
    "Insertion",
    "ResNet",
    "Site",
    "attention_modules",
    "block_slots",
    "build_model",
    "check_position",
    "get_backbone",
    "list_backbones",
    "list_positions",
    "register_backbone",
    "resolve_backbone",
    "resolve_stages",
]
