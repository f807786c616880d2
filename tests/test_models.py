"""Backbones and insertion: every arm builds, keeps shapes, and the reference tutorials' models are exact."""

from __future__ import annotations

import pytest
import torch

from ablate import AblateError, build_model, list_attention, list_backbones, list_positions
from ablate.models import attention_modules

from .reference_models import Ref000CNN, n_params, ref003_vgg16_with_attention

BASE_CNN = (3 * 32 * 9 + 32 + 64) + (32 * 64 * 9 + 64 + 128) + (64 * 128 * 9 + 128 + 256) + (2048 * 512 + 512) + (
    512 * 10 + 10
)


def test_lists() -> None:
    assert list_backbones()[:6] == ["cnn", "vgg16", "resnet20", "resnet56", "resnet18", "resnet50"]
    assert set(list_positions()) == {"after_conv", "after_bn", "after_relu", "block_end", "after_pool", "every_conv",
                                     "standard", "pre", "post", "identity"}


@pytest.mark.parametrize("backbone", ["cnn", "vgg16"])
@pytest.mark.parametrize("position", ["after_conv", "after_bn", "after_relu", "block_end", "after_pool", "every_conv"])
@pytest.mark.parametrize("attention", [a for a in list_attention() if a != "nonlocal"])
def test_every_arm_builds_and_keeps_shapes(backbone: str, position: str, attention: str) -> None:
    model = build_model(backbone, attention, position, reduction=16).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    n_blocks = 3 if backbone == "cnn" else 5
    per_block = 1 if (position != "every_conv" or backbone == "cnn") else None
    found = attention_modules(model)
    if attention == "none":
        assert found == [] and model.insertions == []
    elif per_block == 1:
        assert len(found) == n_blocks == len(model.insertions)
    else:
        assert len(found) == 13  # one per VGG16 conv


@pytest.mark.parametrize("position", ["after_relu", "every_conv", "after_pool"])
def test_nonlocal_builds(position: str) -> None:
    model = build_model("cnn", "nonlocal", position, reduction=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_ref000_cnn_parameter_counts() -> None:
    assert n_params(build_model("cnn")) == n_params(Ref000CNN()) == BASE_CNN
    se = build_model("cnn", "se", "after_relu", reduction=16)
    assert n_params(se) == n_params(Ref000CNN(se=True)) == BASE_CNN + sum(2 * c * (c // 16) for c in (32, 64, 128))


def test_ref000_cnn_state_dict_transfers() -> None:
    """Same layers in the same order: ref000's weights load into ours and give the same logits."""
    ref, ours = Ref000CNN(se=True).eval(), build_model("cnn", "se", "after_relu", 16).eval()
    ours_params = list(ours.state_dict().values())
    ref_params = list(ref.state_dict().values())
    assert [p.shape for p in ours_params] == [p.shape for p in ref_params]
    ours.load_state_dict(dict(zip(ours.state_dict().keys(), ref_params)))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_ref003_vgg16_parameter_count() -> None:
    ours = build_model(
        "vgg16", "local", "block_end", reduction=8, num_classes=1000, input_size=224, head="imagenet", bn=False
    )
    assert n_params(ours) == n_params(ref003_vgg16_with_attention(1000))
    plain = build_model("vgg16", num_classes=1000, input_size=224, head="imagenet", bn=False)
    assert n_params(plain) == 138_357_544  # torchvision vgg16, documented count
    assert [i.height for i in ours.insertions] == [224, 112, 56, 28, 14]


def test_cnn_adapts_to_fashion_mnist() -> None:
    model = build_model("cnn", "cbam", in_channels=1, input_size=28).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model.head[1].in_features == 128 * 3 * 3
    assert [(i.height, i.channels) for i in model.insertions] == [(28, 32), (14, 64), (7, 128)]


def test_insertion_records_maps_and_widths() -> None:
    model = build_model("vgg16", "se", "block_end", reduction=16)
    assert [(i.height, i.hidden) for i in model.insertions] == [(32, 4), (16, 8), (8, 16), (4, 32), (2, 32)]
    model = build_model("cnn", "se", "after_pool", reduction=16)
    assert [i.height for i in model.insertions] == [16, 8, 4]


def test_stages_subset() -> None:
    model = build_model("vgg16", "se", "block_end", stages=[1, 5])
    assert [i.block for i in model.insertions] == [1, 5]


def test_unit_positions_order_layers() -> None:
    names = [n for n, _ in build_model("cnn", "se", "after_conv").features.block1.named_children()]
    assert names == ["conv1", "attn1", "bn1", "relu1", "pool"]
    names = [n for n, _ in build_model("cnn", "se", "after_bn").features.block1.named_children()]
    assert names == ["conv1", "bn1", "attn1", "relu1", "pool"]
    names = [n for n, _ in build_model("vgg16", "se", "every_conv").features.block1.named_children()]
    assert names == ["conv1", "bn1", "relu1", "attn1", "conv2", "bn2", "relu2", "attn2", "pool"]


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"backbone": "resnet"}, "unknown backbone 'resnet'"),
        ({"backbone": "cnn", "attention": "cbma"}, "did you mean 'cbam'"),
        ({"backbone": "cnn", "position": "middle"}, "allowed: after_conv"),
        ({"backbone": "cnn", "attention": "se", "reduction": 0}, "reduction ratio"),
        ({"backbone": "cnn", "attention": "se", "stages": [4]}, "blocks 1..3"),
        ({"backbone": "cnn", "attention": "se", "position": "after_bn", "bn": False}, "without BatchNorm"),
        ({"backbone": "cnn", "head": "imagenet"}, "allowed: mlp"),
        ({"backbone": "vgg16", "input_size": 28}, "too small"),
        ({"backbone": "cnn", "attention": "se", "kernel": 3}, "has no knob"),
    ],
)
def test_bad_build_arguments(kwargs: dict, fragment: str) -> None:
    with pytest.raises(AblateError, match=fragment):
        build_model(**kwargs)


@pytest.mark.parametrize("backbone,positions", [
    ("cnn", ["after_conv", "after_bn", "after_relu", "block_end", "after_pool", "every_conv"]),
    ("vgg16", ["after_conv", "after_bn", "after_relu", "block_end", "after_pool", "every_conv"]),
    ("resnet20", ["standard", "pre", "post", "identity"]),
    ("resnet18", ["standard", "pre", "post", "identity"]),
    ("resnet50", ["standard", "pre", "post", "identity"]),
])
def test_declared_sites_are_where_the_modules_sit(backbone: str, positions: list[str]) -> None:
    """One geometry: the channels and map size a backbone declares for each site are what the module placed
    there receives in a real forward pass (checked with hooks), for every built-in backbone and position."""
    from ablate.models import get_backbone
    from ablate.models.check import check_arm

    for position in positions:
        check_arm({"backbone": backbone, "attention": "eca", "position": position}, f"{backbone}/{position}",
                  num_classes=10, in_channels=3, input_size=32)
        sites = get_backbone(backbone).sites(position)
        model = build_model(backbone, "eca", position)
        assert [(s.path, s.channels, s.height) for s in sites] == [(i.path, i.channels, i.height)
                                                                    for i in model.insertions]


def test_stage_paths_name_each_stage_output() -> None:
    assert build_model("cnn", "se").stage_paths == ("features.block1.attn1", "features.block2.attn1",
                                                    "features.block3.attn1")
    assert build_model("vgg16").stage_paths[0] == "features.block1.relu2"
    assert build_model("resnet20").stage_paths == ("features.layer1.2", "features.layer2.2", "features.layer3.2")
