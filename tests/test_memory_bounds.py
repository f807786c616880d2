"""The torch-free memory bound (ablate.memory.check_baselines_fit) against the estimate that runs the models.

BASELINE_ACTIVATIONS is a table, so a backbone that changes must change it: the first test recomputes
every entry by running the model. The second checks that the table's bound equals the full estimate of
the baseline arm for an input of at least the probe size (weights aside), so a refusal before torch says
what the later one would have said.
"""

from __future__ import annotations

import pytest

from ablate.errors import AblateError
from ablate.memory import BASELINE_ACTIVATIONS, PROBE_SIZE, activation_numels, check_baselines_fit, pass_bytes
from ablate.models import build_model
from ablate.names import BUILTIN_BACKBONES


def _builder(backbone: str, channels: int):
    return lambda size: build_model(backbone=backbone, attention="none", num_classes=10, in_channels=channels,
                                    input_size=size, init_seed=0)


def test_the_table_holds_every_builtin_backbone_as_it_runs() -> None:
    assert set(BASELINE_ACTIVATIONS) == set(BUILTIN_BACKBONES)
    for backbone, (total, largest) in BASELINE_ACTIVATIONS.items():
        for channels in (1, 3):
            got = activation_numels(_builder(backbone, channels), (channels, PROBE_SIZE, PROBE_SIZE))
            assert got[:2] == (total, largest), backbone


@pytest.mark.parametrize("backbone", ["cnn", "resnet20"])
def test_the_bound_before_torch_is_the_full_estimate_without_weights(backbone: str) -> None:
    shape = (3, 256, 256)
    total, largest, _ = activation_numels(_builder(backbone, 3), shape)
    table = BASELINE_ACTIVATIONS[backbone]
    scale = 256 * 256 / PROBE_SIZE**2  # 16
    assert (total, largest) == (int(table[0] * scale), int(table[1] * scale))
    need = sum(pass_bytes((total, largest, 0), shape, 64, training=True).values())
    assert need == 64 * 3 * 256 * 256 * 4 + 64 * 2 * total * 4  # input batch + activations and gradients, float32


def test_the_bound_refuses_only_what_it_knows() -> None:
    huge = (3, 4096, 4096)
    with pytest.raises(AblateError, match=r"training cnn/none at batch 64, input 3x4096x4096"):
        check_baselines_fit(["cnn"], huge, "cpu", train_batch=64, where="w", remedy="r")
    check_baselines_fit(["cnn"], huge, "cuda", train_batch=64, where="w", remedy="r")  # GPU memory: after torch
    check_baselines_fit(["my.pkg:Net"], huge, "cpu", train_batch=64, where="w", remedy="r")  # not tabled
    check_baselines_fit(["cnn"], (3, 32, 32), "cpu", train_batch=64, where="w", remedy="r")  # below the probe
