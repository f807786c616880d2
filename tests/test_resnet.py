"""Residual backbones against published counts and torchvision's own models, and SENet's positions.

Known answers: torchvision's ResNet-18 / ResNet-50 have 11,689,512 / 25,557,032 parameters at 1000
classes (torchvision's model docs); He et al.'s CIFAR ResNet-20 / ResNet-56 have 0.27M / 0.85M (table
6, option A shortcuts: parameter-free zero-padded identity); SE-ResNet-50 at r = 16 has 28.1M (SENet,
table 2); ECA adds well under 100 parameters to ResNet-50 (its adaptive kernels: 5, 5, 5, 7 per stage).
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from ablate import AblateError, build_model
from ablate.arms import BackboneChoice, enumerate_arms
from ablate.attention.eca import adaptive_kernel
from ablate.models import get_backbone

from .reference_models import n_params

IMAGENET = {"num_classes": 1000, "input_size": 224}


def cifar_resnet_closed_form(n: int, classes: int = 10) -> int:
    """He et al.'s 6n+2 CIFAR ResNet with option A shortcuts, counted by hand: conv weights (no bias), BN
    weight+bias, fc with bias; the shortcuts have no parameters."""
    stem = 3 * 16 * 9 + 2 * 16
    total = stem
    c_in = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += c_in * width * 9 + 2 * width + width * width * 9 + 2 * width
            c_in = width
    return total + 64 * classes + classes


@pytest.mark.parametrize("name,n,published", [("resnet20", 3, 0.27), ("resnet56", 9, 0.85)])
def test_cifar_resnets_match_he_et_al(name: str, n: int, published: float) -> None:
    model = build_model(name)
    assert n_params(model) == cifar_resnet_closed_form(n)
    assert round(n_params(model) / 1e6, 2) == published
    assert get_backbone(name).shortcut == "zero_pad"  # option A: the count above holds only for it
    assert "zero-padded identity" in get_backbone(name).layout()


@pytest.mark.parametrize("name,count", [("resnet18", 11_689_512), ("resnet50", 25_557_032)])
def test_imagenet_resnets_equal_torchvision(name: str, count: int) -> None:
    ours = build_model(name, **IMAGENET).eval()
    theirs = getattr(torchvision.models, name)(weights=None).eval()
    assert n_params(ours) == n_params(theirs) == count
    renamed = {("head." if k.startswith("fc.") else "features.") + k: v for k, v in theirs.state_dict().items()}
    ours.load_state_dict(renamed, strict=True)  # every key and shape matches
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_se_resnet50_matches_senet() -> None:
    model = build_model("resnet50", "se", "standard", reduction=16, **IMAGENET)
    # one SE per bottleneck on its 4 * planes output: two bias-free FCs C -> C/16 -> C
    blocks = [(256, 3), (512, 4), (1024, 6), (2048, 3)]
    closed = 25_557_032 + sum(k * 2 * c * (c // 16) for c, k in blocks)
    assert n_params(model) == closed
    assert round(n_params(model) / 1e6, 1) == 28.1  # SENet, table 2


def test_eca_adds_under_100_parameters_to_resnet50() -> None:
    extra = n_params(build_model("resnet50", "eca", "standard", **IMAGENET)) - 25_557_032
    blocks = [(256, 3), (512, 4), (1024, 6), (2048, 3)]
    assert extra == sum(k * adaptive_kernel(c) for c, k in blocks) < 100


@pytest.mark.parametrize("position", ["standard", "pre", "post", "identity"])
def test_positions_place_one_module_per_block_with_its_geometry(position: str) -> None:
    model = build_model("resnet20", "se", position, reduction=4).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    got = [(i.channels, i.height) for i in model.insertions]
    outputs = [(16, 32)] * 3 + [(32, 16)] * 3 + [(64, 8)] * 3
    inputs = [(16, 32)] * 3 + [(16, 32), (32, 16), (32, 16), (32, 16), (64, 8), (64, 8)]
    assert got == (inputs if position == "pre" else outputs)
    assert all(i.path.endswith({"standard": ".attn", "pre": ".attn_pre", "post": ".attn_post",
                                "identity": ".attn_identity"}[position]) for i in model.insertions)


def test_positions_wire_the_module_where_senet_puts_it() -> None:
    """Replace the module by f(t) = t + 1 and compare with the block written out by hand from its own layers:
    standard relu(f(branch(x)) + x), pre relu(branch(f(x)) + x), post f(relu(branch(x) + x)), identity
    relu(branch(x) + f(x))."""
    x = torch.randn(2, 16, 8, 8)
    names = {"standard": "attn", "pre": "attn_pre", "post": "attn_post", "identity": "attn_identity"}
    for position, name in names.items():
        block = build_model("resnet20", "se", position, init_seed=0).features.layer1[0].eval()
        block.get_submodule(name).forward = lambda t: t + 1

        def branch(t: torch.Tensor, block: torch.nn.Module = block) -> torch.Tensor:
            return block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(t)))))

        expected = {"standard": torch.relu(branch(x) + 1 + x), "pre": torch.relu(branch(x + 1) + x),
                    "post": torch.relu(branch(x) + x) + 1, "identity": torch.relu(branch(x) + x + 1)}[position]
        with torch.no_grad():
            assert torch.allclose(block(x), expected.detach(), atol=1e-6), position


def test_integration_points_are_four_models_and_equal_counts_where_channels_agree() -> None:
    arms = enumerate_arms([BackboneChoice("resnet20")], ["none", "se"], ["standard", "pre", "post", "identity"], [16])
    assert [a.id for a in arms] == ["resnet20/none", "resnet20/se/standard/r16/s1-3", "resnet20/se/pre/r16/s1-3",
                                    "resnet20/se/post/r16/s1-3", "resnet20/se/identity/r16/s1-3"]
    counts = {a.position: n_params(build_model(**a.build_kwargs())) - cifar_resnet_closed_form(3) for a in arms[1:]}
    same = sum(2 * c * max(1, c // 16) for c in [16] * 3 + [32] * 3 + [64] * 3)
    pre = sum(2 * c * max(1, c // 16) for c in [16] * 4 + [32] * 3 + [64] * 2)
    assert counts == {"standard": same, "post": same, "identity": same, "pre": pre} and same != pre


def test_stages_select_residual_stages_and_paired_init_holds() -> None:
    model = build_model("resnet18", "cbam", "standard", stages=[2, 4], init_seed=3)
    assert [i.block for i in model.insertions] == [2, 2, 4, 4]
    base = build_model("resnet18", init_seed=3).state_dict()
    arm = model.state_dict()
    assert all(torch.equal(arm[k], v) for k, v in base.items())  # shared layers start identical


def test_macs_and_feature_maps_for_resnets() -> None:
    from ablate.costs import static_costs

    row = static_costs(build_model("resnet20", "se", "standard"), (3, 32, 32))
    convs = (32 * 32 * 3 * 16 * 9  # stem
             + 6 * 32 * 32 * 16 * 16 * 9  # stage 1: 3 blocks x 2 convs
             + 16 * 16 * 16 * 32 * 9 + 5 * 16 * 16 * 32 * 32 * 9  # stage 2: the first conv reads 16 channels
             + 8 * 8 * 32 * 64 * 9 + 5 * 8 * 8 * 64 * 64 * 9)  # stage 3
    bn = 2 * (32 * 32 * 16 + 6 * 32 * 32 * 16 + 6 * 16 * 16 * 32 + 6 * 8 * 8 * 64)  # fvcore: 2 per element in eval
    se = sum(3 * (s * s * c + 2 * c * max(1, c // 16)) for c, s in ((16, 32), (32, 16), (64, 8)))  # pool + FCs
    head = 8 * 8 * 64 + 64 * 10
    assert row["macs_fvcore_default"] == convs + bn + se + head
    assert row["feature_maps"].split(",") == ["32x32"] * 3 + ["16x16"] * 3 + ["8x8"] * 3
    assert row["macs_uncounted"] is None  # the option-A pad is data movement, counted 0 by design


def test_residual_backbones_refuse_what_they_do_not_have() -> None:
    with pytest.raises(AblateError, match="unknown position 'after_relu' for backbone 'resnet20'"):
        build_model("resnet20", "se", "after_relu")
    with pytest.raises(AblateError, match="always built with BatchNorm"):
        build_model("resnet20", bn=False)
    with pytest.raises(AblateError, match="blocks 1..4"):
        build_model("resnet18", "se", stages=[5])
    assert math.isclose(n_params(build_model("resnet18", num_classes=10)), 11_689_512 - 513 * 990)
