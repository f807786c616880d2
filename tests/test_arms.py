"""Arm enumeration: counts on small grids, collapse rules, stable ids."""

from __future__ import annotations

from ablate.arms import BackboneChoice, enumerate_arms

CNN, VGG = BackboneChoice("cnn"), BackboneChoice("vgg16")


def test_none_once_per_backbone_and_factors_collapse() -> None:
    arms = enumerate_arms([CNN, VGG], ["none", "se", "simam"], ["after_relu"], [8, 16, 32])
    ids = [a.id for a in arms]
    assert ids.count("cnn/none") == 1 and ids.count("vgg16/none") == 1
    # se: 3 ratios; simam: no ratio -> 1; per backbone: 1 + 3 + 1
    assert len(arms) == 2 * (1 + 3 + 1)
    assert "cnn/simam/after_relu/s1-3" in ids


def test_coinciding_positions_collapse_per_backbone() -> None:
    positions = ["after_relu", "block_end", "every_conv", "after_pool"]
    cnn = enumerate_arms([CNN], ["se"], positions, [16])
    vgg = enumerate_arms([VGG], ["se"], positions, [16])
    # 1-conv CNN blocks: after_relu = block_end = every_conv; VGG: every_conv differs
    assert [a.position for a in cnn] == ["after_relu", "after_pool"]
    assert [a.position for a in vgg] == ["after_relu", "every_conv", "after_pool"]


def test_knob_product_and_defaults_not_in_id() -> None:
    arms = enumerate_arms([CNN], ["cbam"], ["after_relu"], [16],
                          knobs={"cbam": {"order": ["channel_first", "parallel"], "kernel": [3, 7]}})
    assert len(arms) == 4
    assert arms[0].id == "cnn/cbam/after_relu/r16/s1-3/kernel=3"
    assert "cnn/cbam/after_relu/r16/s1-3" in [a.id for a in arms]  # channel_first + 7 are the defaults


def test_stages_dedupe_all_equals_full_list() -> None:
    arms = enumerate_arms([CNN], ["se"], ["after_relu"], [16], stages=["all", [1, 2, 3], [2]])
    assert [a.id for a in arms] == ["cnn/se/after_relu/r16/s1-3", "cnn/se/after_relu/r16/s2"]


def test_build_kwargs_round_trip() -> None:
    from ablate import build_model

    for arm in enumerate_arms([CNN, VGG], ["none", "eca", "cbam"], ["after_bn"], [4], stages=[[1, 3]]):
        model = build_model(**arm.build_kwargs())
        assert len(model.insertions) == (0 if arm.is_baseline else 2)


def test_hidden_widths_follow_the_seed_formula() -> None:
    from ablate.arms import hidden_widths

    # cnn: one conv per block, 32/64/128 channels; hidden = max(1, C // r)
    assert hidden_widths(CNN, "after_relu", (1, 2, 3), 16) == (2, 4, 8)
    assert hidden_widths(CNN, "after_relu", (1, 2, 3), 1000) == (1, 1, 1)
    # vgg16 every_conv on block 3 (three 256-wide convs) inserts three modules
    assert hidden_widths(VGG, "every_conv", (3,), 64) == (4, 4, 4)


def test_reductions_with_equal_hidden_widths_collapse_to_the_smallest() -> None:
    arms = enumerate_arms([CNN], ["none", "se", "eca"], ["after_relu"], [1000, 128, 64])
    # r128 and r1000 both build hidden widths (1, 1, 1); r64 builds (1, 1, 2); eca has no ratio
    assert [a.id for a in arms] == ["cnn/none", "cnn/se/after_relu/r128/s1-3", "cnn/se/after_relu/r64/s1-3",
                                    "cnn/eca/after_relu/s1-3"]
    # on block 1 alone (32 channels) r32 and r64 both give hidden 1, r16 gives 2
    only_first = enumerate_arms([CNN], ["se"], ["after_relu"], [16, 32, 64], stages=[[1]])
    assert [a.reduction for a in only_first] == [16, 32]


def test_model_built_from_collapsed_ratios_is_identical() -> None:
    from ablate import build_model

    small, large = (build_model("cnn", "se", reduction=r, init_seed=0) for r in (128, 1000))
    assert [i.hidden for i in small.insertions] == [i.hidden for i in large.insertions] == [1, 1, 1]
    assert all((a == b).all() for a, b in zip(small.state_dict().values(), large.state_dict().values()))


def test_each_backbone_takes_its_own_positions_and_says_so() -> None:
    from ablate.arms import collapse_notes

    res = BackboneChoice("resnet20")
    arms = enumerate_arms([CNN, res], ["none", "se"], ["after_relu", "standard", "post"], [16])
    assert [a.id for a in arms] == ["cnn/none", "cnn/se/after_relu/r16/s1-3", "resnet20/none",
                                    "resnet20/se/standard/r16/s1-3", "resnet20/se/post/r16/s1-3"]
    notes = collapse_notes([CNN, res], ["none", "se"], ["after_relu", "standard", "post"], [16])
    assert "position 'standard' does not exist on cnn; not used there." in notes
    assert "position 'after_relu' does not exist on resnet20; not used there." in notes


def test_a_position_no_backbone_has_is_refused() -> None:
    import pytest

    from ablate.errors import AblateError

    with pytest.raises(AblateError, match="exists on none of the backbones cnn"):
        enumerate_arms([CNN], ["se"], ["identity"], [16])


def test_residual_positions_never_collapse_and_ratios_collapse_on_resnet_widths() -> None:
    res = BackboneChoice("resnet20")
    arms = enumerate_arms([res], ["se"], ["standard", "pre", "post", "identity"], [16, 32, 64])
    # 16..64 channels: r=64 gives hidden 1 everywhere, as r=32 does on 16 and 32 channels but not on 64 (hidden 2)
    assert [(a.position, a.reduction) for a in arms if a.position == "standard"] == [("standard", 16), ("standard", 32),
                                                                                      ("standard", 64)]
    assert len({a.position for a in arms}) == 4
    assert enumerate_arms([res], ["se"], ["standard"], [64, 128])[0].reduction == 64  # both: hidden 1 everywhere
    assert len(enumerate_arms([res], ["se"], ["standard"], [64, 128])) == 1
