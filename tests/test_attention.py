"""Attention zoo: shapes, closed-form parameter counts, equality with the reference tutorials, declared gates,
state_dict names, knob validation."""

from __future__ import annotations

import math

import pytest
import torch

from ablate import AblateError, create_attention, list_attention
from ablate.attention import ATTENTION, Attention, hidden_width
from ablate.attention.eca import adaptive_kernel

from .reference_models import Ref000ChannelAttention, Ref002ChannelAttention, Ref003LocalAttention, n_params


def expected_params(name: str, c: int, r: int, **knobs: object) -> int:
    """Closed-form parameter count of each module (weights + biases + norm affine)."""
    h = max(1, c // r)
    cam = c * h + h + h * c + c
    k = int(knobs.get("kernel", 7))
    return {
        "none": 0,
        "simam": 0,
        "se": 2 * c * h,
        "cam": cam,
        "sam": 2 * k * k,
        "cbam": cam + 2 * k * k,
        "local": (c * h + h + h * c + c) + (c * h + h + h + 1),
        "eca": adaptive_kernel(c),
        "coord": (c * h + h) + 2 * h + 2 * (h * c + c),
        "gc": (c + 1) + (c * h + h) + 2 * h + (h * c + c),
        "nonlocal": 3 * (c * h + h) + (h * c + c) + 2 * c,
    }[name]


def test_registry_has_required_modules() -> None:
    required = {"none", "se", "cam", "sam", "cbam", "local", "eca", "coord", "gc", "nonlocal", "simam"}
    assert required <= set(list_attention())


@pytest.mark.parametrize("name", list(ATTENTION))
@pytest.mark.parametrize("c,r", [(32, 16), (64, 8), (128, 4)])
def test_shape_and_param_count(name: str, c: int, r: int) -> None:
    module = create_attention(name, c, r)
    x = torch.randn(2, c, 8, 8)
    assert module(x).shape == x.shape
    assert n_params(module) == expected_params(name, c, r)
    if ATTENTION[name].uses_reduction:
        assert module.hidden == max(1, c // r)
    else:
        assert module.hidden is None


@pytest.mark.parametrize("name", list(ATTENTION))
def test_tiny_maps_and_one_channel_work(name: str) -> None:
    """2x2 maps (VGG stage 5 at 32x32) and C < r (hidden floors at 1) must not break."""
    module = create_attention(name, 8, 16).eval()
    for size in (1, 2):
        x = torch.randn(2, 8, size, size)
        assert torch.isfinite(module(x)).all()


def test_reduction_sweep_gives_distinct_widths() -> None:
    widths = [create_attention("se", 64, r).hidden for r in (2, 4, 8, 16, 32)]
    assert widths == [32, 16, 8, 4, 2]


def test_se_equals_ref000() -> None:
    torch.manual_seed(0)
    ours = create_attention("se", 64, 16)
    ref = Ref000ChannelAttention(64, 16)
    ref.load_state_dict(ours.state_dict())  # same layer names and shapes
    x = torch.randn(3, 64, 8, 8)
    assert torch.allclose(ours(x), ref(x))


def test_cam_equals_ref002() -> None:
    ours = create_attention("cam", 3, 16)  # ref002's own example: C=3 gives hidden 1
    ref = Ref002ChannelAttention(3, 16)
    ref.load_state_dict({k.removeprefix("gate."): v for k, v in ours.state_dict().items()})
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(ours(x), ref(x))
    assert ours.hidden == 1


def test_local_equals_ref003() -> None:
    ours = create_attention("local", 64, 8)
    ref = Ref003LocalAttention(64)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 64, 8, 8)
    assert torch.allclose(ours(x), ref(x))


# state_dict keys of every module, recorded from the code before gates were declared: checkpoints and
# the reference tutorials' weights load by these names, so no refactor may change them.
STATE_DICT_KEYS = {
    "none": [],
    "se": ["fc.0.weight", "fc.2.weight"],
    "cam": ["gate.mlp.0.weight", "gate.mlp.0.bias", "gate.mlp.2.weight", "gate.mlp.2.bias"],
    "sam": ["gate.conv.weight"],
    "cbam": ["channel.mlp.0.weight", "channel.mlp.0.bias", "channel.mlp.2.weight", "channel.mlp.2.bias",
             "spatial.conv.weight"],
    "local": ["channel_attention.1.weight", "channel_attention.1.bias", "channel_attention.3.weight",
              "channel_attention.3.bias", "spatial_attention.0.weight", "spatial_attention.0.bias",
              "spatial_attention.2.weight", "spatial_attention.2.bias"],
    "eca": ["conv.weight"],
    "coord": ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
              "bn1.num_batches_tracked", "conv_h.weight", "conv_h.bias", "conv_w.weight", "conv_w.bias"],
    "gc": ["conv_mask.weight", "conv_mask.bias", "transform.0.weight", "transform.0.bias", "transform.1.weight",
           "transform.1.bias", "transform.3.weight", "transform.3.bias"],
    "nonlocal": ["theta.weight", "theta.bias", "phi.weight", "phi.bias", "g.weight", "g.bias", "out.weight",
                 "out.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"],
    "simam": [],
}


def knob_variants(name: str) -> list[dict[str, object]]:
    """The defaults, then each knob's other choices one at a time."""
    variants: list[dict[str, object]] = [{}]
    for knob in ATTENTION[name].knobs:
        variants += [{knob.name: c} for c in knob.choices or () if c != knob.default]
    return variants


def test_state_dict_keys_are_unchanged() -> None:
    assert set(STATE_DICT_KEYS) == set(ATTENTION)
    for name, keys in STATE_DICT_KEYS.items():
        for knobs in knob_variants(name):
            assert list(create_attention(name, 32, 4, **knobs).state_dict()) == keys, (name, knobs)


# the gate maps each module declares; the other modules declare none
DECLARED_GATES = {
    "se": {"channel"},
    "cam": {"channel"},
    "eca": {"channel"},
    "sam": {"spatial"},
    "cbam": {"channel", "spatial"},
    "local": {"channel", "spatial"},
    "coord": {"spatial"},
}


def gate_maps(module: Attention, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run `module` on `x` with hooks on its declared gate modules; its gate maps from that forward."""
    captured: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, out, k=name: captured.__setitem__(k, out))
               for name, m in module.gate_modules().items()]
    try:
        module(x)
    finally:
        for h in handles:
            h.remove()
    return module.gate_maps(captured)


@pytest.mark.parametrize("name,knobs", [(n, k) for n in ATTENTION for k in knob_variants(n)])
def test_declared_gates_have_documented_shapes_and_range(name: str, knobs: dict[str, object]) -> None:
    """'channel' is B x C, 'spatial' B x H x W (H != W here, so swapped axes show); sigmoid gates lie in [0, 1]."""
    torch.manual_seed(0)
    module = create_attention(name, 16, 4, **knobs).eval()
    x = torch.randn(2, 16, 8, 6) * 3
    with torch.no_grad():
        maps = gate_maps(module, x)
    assert set(maps) == DECLARED_GATES.get(name, set())
    shapes = {"channel": (2, 16), "spatial": (2, 8, 6)}
    for kind, value in maps.items():
        assert value.shape == shapes[kind], (kind, value.shape)
        if knobs.get("gate", "sigmoid") == "sigmoid":  # se's tanh and relu gates are not in [0, 1]
            assert 0 <= value.min() and value.max() <= 1, kind


@pytest.mark.parametrize("name", ["se", "cam", "eca", "sam", "local"])
def test_declared_gates_are_what_the_input_is_multiplied_by(name: str) -> None:
    torch.manual_seed(0)
    module = create_attention(name, 16, 4).eval()
    x = torch.randn(2, 16, 8, 6)
    with torch.no_grad():
        maps = gate_maps(module, x)
        weights = torch.ones(())
        if "channel" in maps:
            weights = weights * maps["channel"][:, :, None, None]
        if "spatial" in maps:
            weights = weights * maps["spatial"][:, None]
        assert torch.allclose(module(x), x * weights)


def test_eca_adaptive_kernel_formula() -> None:
    for c in (16, 32, 64, 128, 256, 512):
        t = int(abs((math.log2(c) + 1) / 2))
        assert create_attention("eca", c).k == (t if t % 2 else t + 1)
    assert create_attention("eca", 64, k=5).k == 5


def test_cbam_orders_differ_and_sam_kernel() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    outs = []
    for order in ("channel_first", "spatial_first", "parallel"):
        torch.manual_seed(1)
        outs.append(create_attention("cbam", 16, 4, order=order)(x))
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])
    assert n_params(create_attention("sam", 16, kernel=3)) == 18


def test_residual_blocks_start_as_identity() -> None:
    """gc zero-inits its last conv and nonlocal its output BN: both are identity at init."""
    x = torch.randn(2, 16, 8, 8)
    for name in ("gc", "nonlocal"):
        module = create_attention(name, 16, 4).eval()
        assert torch.allclose(module(x), x)


def test_simam_matches_formula() -> None:
    x = torch.randn(1, 2, 4, 4)
    lam = 1e-4
    d = (x - x.mean(dim=(2, 3), keepdim=True)) ** 2
    v = d.sum(dim=(2, 3), keepdim=True) / 15
    expected = x * torch.sigmoid(d / (4 * (v + lam)) + 0.5)
    assert torch.allclose(create_attention("simam", 2, **{"lambda": lam})(x), expected)


def test_hidden_width_is_exact() -> None:
    assert hidden_width(64, 16) == 4 and hidden_width(64, 32) == 2 and hidden_width(8, 16) == 1


@pytest.mark.parametrize(
    "name,kwargs,fragment",
    [
        ("simma", {}, "did you mean .simam."),
        ("se", {"kernel": 7}, "has no knob 'kernel'"),
        ("sam", {"kernel": 5}, "allowed: 7 | 3"),
        ("eca", {"k": 4}, "odd integer"),
        ("cbam", {"order": "sideways"}, "channel_first | spatial_first | parallel"),
        ("simam", {"lambda": -1.0}, "a number > 0"),
        ("se", {"reduction": 0}, "reduction ratio must be an integer >= 1"),
    ],
)
def test_bad_names_and_values(name: str, kwargs: dict, fragment: str) -> None:
    reduction = kwargs.pop("reduction", 16)
    with pytest.raises(AblateError, match=fragment.replace("|", r"\|")):
        create_attention(name, 32, reduction, **kwargs)
