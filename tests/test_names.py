"""ablate.names lists built-in names without torch, for refusals before torch is imported: it must equal
the registries (and the torch-side constants it mirrors) exactly."""

from __future__ import annotations

from dataclasses import fields

from ablate import names
from ablate.arms import BackboneChoice
from ablate.attention import BUILTIN, GROUP
from ablate.cli.train import DEFAULT_VAL_FRACTION
from ablate.datasets import DATA_ENV, IMAGEFOLDER, SOURCES, DataConfig, list_datasets
from ablate.models import POSITIONS, list_backbones
from ablate.models.convnet import CNN, VGG16
from ablate.models.registry import BACKBONES
from ablate.models.registry import GROUP as BACKBONE_GROUP
from ablate.models.resnet import RESNET18, RESNET20, RESNET50, RESNET56
from ablate.precision import PRECISIONS
from ablate.spec.schema import BACKBONE_KEYS


def test_attention_types_and_their_choice_knobs_equal_the_registry() -> None:
    table = {name: {k.name: k.choices for k in cls.knobs} for name, cls in BUILTIN.items()}
    assert {n: dict(knobs) for n, knobs in names.BUILTIN_ATTENTION.items()} == table
    assert list(names.BUILTIN_ATTENTION) == list(BUILTIN)  # the order `allowed:` lists them in


def test_backbones_positions_precisions_and_datasets_equal_the_real_ones() -> None:
    assert names.BUILTIN_BACKBONES == tuple(b.name for b in (CNN, VGG16, RESNET20, RESNET56, RESNET18, RESNET50))
    assert set(names.BUILTIN_BACKBONES) <= set(BACKBONES)
    assert names.POSITIONS == tuple(POSITIONS)
    assert names.PRECISIONS == PRECISIONS
    assert names.DATASETS == tuple(SOURCES) == tuple(list_datasets())
    assert (names.DATA_ENV, names.IMAGEFOLDER) == (DATA_ENV, IMAGEFOLDER)
    assert (names.ATTENTION_GROUP, names.BACKBONE_GROUP) == (GROUP, BACKBONE_GROUP)


def test_the_live_registry_answers_once_it_is_loaded() -> None:
    """After `import ablate.attention` the names come from the registry itself (it also holds what was
    registered in code): the same list the study-file check shows as allowed."""
    assert names.attention_names()[:len(BUILTIN)] == list(BUILTIN)
    assert names.backbone_names() == list_backbones()


def test_the_torch_free_schema_keys_equal_the_config_classes() -> None:
    assert BACKBONE_KEYS == tuple(f.name for f in fields(BackboneChoice))
    assert DEFAULT_VAL_FRACTION == DataConfig.val_fraction
