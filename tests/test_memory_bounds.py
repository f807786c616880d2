"""The torch-free memory bound (ablate.memory.check_baselines_fit) against the estimate that runs the models.

BASELINE_ACTIVATIONS is a table, so a backbone that changes must change it: the first test recomputes
every entry by running the model. The second checks that the table's bound is at most the full estimate
of the baseline arm with ten classes (above the probe size both scale the probe's numbers alike), so a
refusal before torch never refuses what the later estimate would pass.
"""

from __future__ import annotations

import pytest

from ablate.errors import AblateError
from ablate.memory import (
    BASELINE_ACTIVATIONS,
    PROBE_SIZE,
    activation_numels,
    baseline_numels,
    check_baselines_fit,
    pass_bytes,
)
from ablate.models import build_model
from ablate.names import BUILTIN_BACKBONES


def _builder(backbone: str, channels: int, classes: int = 1):
    return lambda size: build_model(backbone=backbone, attention="none", num_classes=classes, in_channels=channels,
                                    input_size=size, init_seed=0)


def test_the_table_holds_every_builtin_backbone_as_it_runs() -> None:
    assert set(BASELINE_ACTIVATIONS) == set(BUILTIN_BACKBONES)
    for backbone, sizes in BASELINE_ACTIVATIONS.items():
        assert PROBE_SIZE in sizes
        for size, (total, largest) in sizes.items():
            for channels in (1, 3):
                got = activation_numels(_builder(backbone, channels), (channels, size, size))
                assert got[:2] == (total, largest), (backbone, size)


@pytest.mark.parametrize("backbone,size", [("cnn", 256), ("resnet20", 256), ("cnn", 28), ("resnet18", 32)])
def test_the_bound_before_torch_is_a_lower_bound_of_the_full_estimate(backbone: str, size: int) -> None:
    shape = (3, size, size)
    total, largest, params = activation_numels(_builder(backbone, 3, classes=10), shape)
    bound = baseline_numels(backbone, shape)
    assert bound is not None and bound[0] <= total and bound[1] <= largest and bound[2] == 0
    if size >= PROBE_SIZE:  # scaled from the probe, as the full estimate is: 16x the probe's numbers
        table = BASELINE_ACTIVATIONS[backbone][PROBE_SIZE]
        assert bound[:2] == (int(table[0] * size * size / PROBE_SIZE**2), int(table[1] * size * size / PROBE_SIZE**2))
    need = sum(pass_bytes(bound, shape, 64, training=True).values())
    assert need == 64 * 3 * size * size * 4 + 64 * 2 * bound[0] * 4  # input batch + activations and gradients


def test_the_bound_refuses_only_what_it_knows() -> None:
    huge = (3, 4096, 4096)
    with pytest.raises(AblateError, match=r"training cnn/none at batch 64, input 3x4096x4096"):
        check_baselines_fit(["cnn"], huge, "cpu", train_batch=64, where="w", remedy="r")
    check_baselines_fit(["cnn"], huge, "cuda", train_batch=64, where="w", remedy="r")  # GPU memory: after torch
    check_baselines_fit(["my.pkg:Net"], huge, "cpu", train_batch=64, where="w", remedy="r")  # not tabled
    check_baselines_fit(["vgg16"], (3, 28, 28), "cpu", train_batch=64, where="w", remedy="r")  # not tabled there
    assert baseline_numels("cnn", (3, 48, 48)) is None  # between tabled sizes below the probe
