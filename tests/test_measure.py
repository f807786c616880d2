"""Cost profiling: every expected number is derived here by hand (closed form), never copied from output.

Policy reminders (ablate.columns.MAC_POLICY): fvcore's default counts conv/linear/matmul MACs,
batch_norm in eval as 2 per element and adaptive_avg_pool2d as 1 per input element, everything else
0; the `full` policy adds 1 per output element for elementwise ops, 1 per input element for
reductions (mean, sum, amax, softmax, adaptive pools), output x kernel area for windowed pools.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pandas as pd
import pytest
import torch
from torch import nn

from ablate import columns, costs, macs, timing
from ablate.arms import Arm, BackboneChoice, arms_from_names, dropped_positions
from ablate.attention import create_attention
from ablate.cli import main
from ablate.cli.profile import parse_input_shape
from ablate.device import resolve_device
from ablate.errors import AblateError
from ablate.models import build_model

CNN_BLOCKS = ((3, 32), (32, 64), (64, 128))  # (in, out) channels of the three conv units
CNN_SIZES = (32, 16, 8)  # feature map at each conv (and at after_relu) for a 32x32 input
VGG_CFG = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------------------------------
# MACs of single modules


@pytest.mark.parametrize("policy", columns.POLICIES)
def test_conv_macs_are_output_elements_times_kernel_volume(policy: str) -> None:
    total, by_module, _ = macs.count_macs(nn.Conv2d(3, 8, 3, padding=1), (3, 8, 8), policy)  # type: ignore[arg-type]
    assert total == 8 * 8 * 8 * 3 * 3 * 3 == by_module[""]


def test_se_default_counts_fcs_and_avg_pool_full_adds_relu_sigmoid_and_gate() -> None:
    c, r, s = 64, 16, 8
    se = create_attention("se", c, r)
    fcs = c * (c // r) + (c // r) * c
    avg_pool = c * s * s  # fvcore's default handle: 1 per input element
    assert macs.count_macs(se, (c, s, s), "fvcore")[0] == fcs + avg_pool
    relu, sigmoid, gate = c // r, c, c * s * s
    assert macs.count_macs(se, (c, s, s), "full")[0] == fcs + avg_pool + relu + sigmoid + gate


class Gate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


def test_elementwise_mul_is_zero_by_default_and_one_per_element_in_full() -> None:
    assert macs.count_macs(Gate(), (4, 5, 6), "fvcore")[0] == 0
    assert macs.count_macs(Gate(), (4, 5, 6), "full")[0] == 4 * 5 * 6


def test_simam_is_free_under_fvcore_and_costs_its_elementwise_work_in_full() -> None:
    c, s = 64, 8
    n = c * s * s
    simam = create_attention("simam", c)
    assert macs.count_macs(simam, (c, s, s), "fvcore")[0] == 0
    # per element: mean (read), x - mean, pow, sum (read), d / (...), + 0.5, sigmoid, x * gate = 8;
    # per channel: v / n, v + lambda, 4 * (...) = 3. Shape arithmetic (H*W - 1) is 0-dim: 0.
    assert macs.count_macs(simam, (c, s, s), "full")[0] == 8 * n + 3 * c


def test_batch_size_scales_macs_and_bad_policy_is_a_user_error() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert macs.count_macs(conv, (3, 8, 8), batch_size=4)[0] == 4 * 8 * 8 * 8 * 27
    with pytest.raises(AblateError, match="allowed: fvcore, full"):
        macs.count_macs(conv, (3, 8, 8), "flops")  # type: ignore[arg-type]


def test_count_macs_counts_in_eval_mode_and_restores_the_mode() -> None:
    model = build_model("cnn", "se").train()
    assert macs.count_macs(model, (3, 32, 32))[0] == macs.count_macs(model.eval(), (3, 32, 32))[0]
    model.train()
    macs.count_macs(model, (3, 32, 32))
    assert model.training


# ---------------------------------------------------------------------------------------------
# whole models


def cnn_baseline_params(num_classes: int = 10) -> int:
    convs = sum(cin * cout * 9 + cout for cin, cout in CNN_BLOCKS)
    bns = sum(2 * cout for _, cout in CNN_BLOCKS)
    flat = 128 * 4 * 4  # 32 -> 16 -> 8 -> 4 after three 2x2 pools
    head = flat * 512 + 512 + 512 * num_classes + num_classes
    return convs + bns + head


def test_cnn_baseline_params_closed_form() -> None:
    assert cnn_baseline_params() == 1_147_914  # the ~1.15 M of ref000, from the arithmetic above
    assert macs.count_params(build_model("cnn", "none")) == cnn_baseline_params()
    assert macs.attention_params(build_model("cnn", "none")) == 0


def test_se_cnn_attention_params() -> None:
    model = build_model("cnn", "se", "after_relu", 16)
    expected = sum(2 * c * (c // 16) for c in (32, 64, 128))
    assert macs.attention_params(model) == expected
    assert macs.count_params(model) == cnn_baseline_params() + expected


def test_cnn_baseline_macs_closed_form_under_both_policies() -> None:
    convs = sum(s * s * cout * cin * 9 for (cin, cout), s in zip(CNN_BLOCKS, CNN_SIZES))
    activations = sum(cout * s * s for (_, cout), s in zip(CNN_BLOCKS, CNN_SIZES))  # = pool inputs too
    linear = 128 * 4 * 4 * 512 + 512 * 10
    default = convs + 2 * activations + linear  # batch_norm: 2 per element
    full = default + activations + 512 + activations  # + conv ReLUs, head ReLU, 2x2 pools (read once)
    model = build_model("cnn", "none")
    assert macs.count_macs(model, (3, 32, 32), "fvcore")[0] == default
    assert macs.count_macs(model, (3, 32, 32), "full")[0] == full


def test_vgg16_macs_closed_form() -> None:
    convs = bns = 0
    cin, size = 3, 32
    for widths in VGG_CFG:
        for cout in widths:
            convs += size * size * cout * cin * 9
            bns += 2 * cout * size * size
            cin = cout
        size //= 2
    assert 0.30e9 < convs < 0.32e9  # the ~0.31 GMACs of VGG16 at 32x32
    head = 512 + 512 * 10  # cifar head: global avg pool (reads 512x1x1) + Linear(512, 10)
    assert macs.count_macs(build_model("vgg16"), (3, 32, 32))[0] == convs + bns + head


def test_attention_macs_sum_only_the_inserted_modules() -> None:
    simam = build_model("cnn", "simam", "after_relu")
    _, by_default, _ = macs.count_macs(simam, (3, 32, 32), "fvcore")
    _, by_full, _ = macs.count_macs(simam, (3, 32, 32), "full")
    assert macs.attention_macs(simam, by_default) == 0
    expected = sum(8 * c * s * s + 3 * c for (_, c), s in zip(CNN_BLOCKS, CNN_SIZES))
    assert macs.attention_macs(simam, by_full) == expected

    se = build_model("cnn", "se", "after_relu", 16)
    _, by_default, _ = macs.count_macs(se, (3, 32, 32), "fvcore")
    expected = sum(c * s * s + 2 * c * (c // 16) for (_, c), s in zip(CNN_BLOCKS, CNN_SIZES))
    assert macs.attention_macs(se, by_default) == expected


# ---------------------------------------------------------------------------------------------
# rows and the grid


def _row(arm: Arm, shape: tuple[int, int, int] = (3, 32, 32)) -> dict:
    rows, _ = costs.profile_backbone([arm], shape, timing=False)
    return next(r for r in rows if r["arm"] == arm.id)


def test_profile_row_without_timing() -> None:
    row = _row(Arm(BackboneChoice("cnn"), "se", "after_relu", 16, (1, 2, 3)))
    assert row["arm"] == "cnn/se/after_relu/r16/s1-3"
    assert row["feature_maps"] == "32x32,16x16,8x8"
    assert row["hidden"] == "2,4,8"
    assert row["params"] == cnn_baseline_params() + row["attn_params"]
    assert row["macs_full"] > row["macs_fvcore_default"]
    assert not any(k.startswith("latency") for k in row)


def test_profile_rows_carry_the_arms_ids_and_non_default_knobs() -> None:
    row = _row(Arm(BackboneChoice("cnn"), "eca", "after_relu", None, (2, 3), (("k", 3),)))
    assert row["arm"] == "cnn/eca/after_relu/s2-3/k=3" and row["knobs"] == "k=3"
    assert row["feature_maps"] == "16x16,8x8" and row["attn_params"] == 3 + 3  # one 1-D conv of k=3 per block


def test_profile_rejects_non_square_and_bad_shapes() -> None:
    with pytest.raises(AblateError, match="square"):
        _row(Arm(BackboneChoice("cnn"), "none"), (3, 32, 16))
    with pytest.raises(AblateError, match="CxHxW"):
        parse_input_shape("3x32")
    assert parse_input_shape(" 1x28X28 ") == (1, 28, 28)


def test_enumerate_collapses_factors_that_do_not_apply() -> None:
    arms = arms_from_names(["cnn", "vgg16"], ["none", "se", "simam"], ["after_relu"], [8, 16])
    labels = [a.id for a in arms]
    assert len(labels) == len(set(labels)) == 2 * (1 + 2 + 1)
    for backbone, n_blocks in (("cnn", 3), ("vgg16", 5)):
        assert labels.count(f"{backbone}/none") == 1
        assert sum(lbl.startswith(f"{backbone}/simam/") for lbl in labels) == 1
        assert f"{backbone}/se/after_relu/r8/s1-{n_blocks}" in labels
    assert next(a for a in arms if a.id == "cnn/none").position is None  # no position or ratio on the baseline


def test_enumerate_keeps_positions_that_build_the_same_model_once() -> None:
    arms = arms_from_names(["cnn"], ["sam"], ["after_relu", "block_end", "after_pool"], [16])
    assert [a.position for a in arms] == ["after_relu", "after_pool"]
    assert dropped_positions("cnn", ["after_relu", "block_end"]) == {"block_end": "after_relu"}


def test_enumerate_rejects_unknown_names() -> None:
    with pytest.raises(AblateError, match="allowed:"):
        arms_from_names(["cnn"], ["squeeze"])


def test_baseline_deltas_are_relative_to_the_same_backbone_none() -> None:
    df = pd.DataFrame(
        {"backbone": ["a", "a", "b", "b"], "attention": ["none", "se", "none", "se"], "params": [100, 110, 50, 75]}
    )
    out = columns.add_baseline_deltas(df, ["params"])
    assert out["params_vs_none_pct"].tolist() == pytest.approx([0.0, 10.0, 0.0, 50.0])


# ---------------------------------------------------------------------------------------------
# time and memory on CPU


def test_interleaved_profile_on_cpu_with_channels_last_and_train_step() -> None:
    arms = arms_from_names(["cnn"], ["se", "cbam"])  # no 'none': the baseline is timed anyway
    setting = timing.Setting(channels_last=True, rounds=3, block_time=0.002, blocks=1, warmup=1)
    step = costs.TrainStep(4, lambda m: torch.optim.SGD(m.parameters(), lr=0.01))
    before = torch.get_num_threads()
    rows, record = costs.profile_backbone(arms, (3, 32, 32), setting=setting, batch_sizes=(1, 2), train_step=step)
    assert torch.get_num_threads() == before
    assert [r["arm"] for r in rows] == ["cnn/none", "cnn/se/after_relu/r16/s1-3", "cnn/cbam/after_relu/r16/s1-3"]
    base, se = rows[0], rows[1]
    assert base["latency_b1_overhead_pct"] is None and base["train_step_overhead_pct"] is None
    for col in ("latency_b1_ms_median", "latency_b2_ms_median", "train_step_ms_median"):
        assert se[col] > 0
    assert se["throughput_b2_img_s"] == pytest.approx(2 / (se["latency_b2_ms_median"] / 1e3))
    low, mid, high = (se[c] for c in ("latency_b1_overhead_ci_low_pct", "latency_b1_overhead_pct",
                                      "latency_b1_overhead_ci_high_pct"))
    assert low <= mid <= high
    assert len(record["metrics"]["latency_b1"]["times_s"]["cnn/none"]) == 3  # per-round values kept for the report
    assert record["metrics"]["train_step"]["batch_size"] == 4
    assert se["batch_sizes"] == [1, 2] and se["threads"] == 1 and se["rounds"] == 3


def test_peak_memory_is_not_invented_on_cpu() -> None:
    assert timing.peak_memory_mib(build_model("cnn"), 2, (3, 32, 32), timing.Setting()) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_a_user_error() -> None:
    with pytest.raises(AblateError, match="CUDA is not available"):
        resolve_device("cuda")


# ---------------------------------------------------------------------------------------------
# the CLI


def test_cli_profile_csv_with_timing() -> None:
    code, out, _ = run_cli(
        "profile", "--backbone", "cnn", "--attention", "none,se,simam", "--reduction", "8,16",
        "--batch-sizes", "1,2", "--block-time", "0.002", "--rounds", "3", "--train-batch", "2", "--format", "csv",
        "--device", "cpu",
    )  # fmt: skip
    assert code == 0
    df = pd.read_csv(io.StringIO(out))
    assert df["arm"].tolist() == ["cnn/none", "cnn/se/after_relu/r8/s1-3", "cnn/se/after_relu/r16/s1-3",
                                  "cnn/simam/after_relu/s1-3"]  # fmt: skip
    for col in ("params", "attn_params", "macs_fvcore_default", "macs_full", "attn_macs_full",
                "latency_b1_ms_median", "latency_b1_ms_iqr", "throughput_b2_img_s", "peak_mem_b2_mib",
                "latency_b1_overhead_pct", "latency_b1_overhead_ci_low_pct", "latency_b1_overhead_ci_high_pct",
                "train_step_ms_median", "train_step_overhead_pct", "train_step_overhead_ci_high_pct"):  # fmt: skip
        assert col in df.columns
    assert df["peak_mem_b2_mib"].isna().all()  # written as n/a on CPU
    assert (df["latency_b1_ms_median"] > 0).all()
    assert df["latency_b1_overhead_pct"].isna().tolist() == [True, False, False, False]  # null for the baseline
    assert df.loc[0, "params"] == cnn_baseline_params()


def test_cli_profile_table_and_json(tmp_path) -> None:
    code, out, _ = run_cli("profile", "--attention", "none,eca", "--no-timing")
    assert code == 0
    assert "| cnn/eca/after_relu/s1-3" in out and "| vs none" in out
    assert columns.MAC_POLICY["full"] in out
    code, out, _ = run_cli("profile", "--attention", "none,eca", "--no-timing", "--json", str(tmp_path / "p.json"))
    assert code == 0 and "| cnn/eca/after_relu/s1-3" in out  # the table is still printed
    data = json.loads((tmp_path / "p.json").read_text())
    assert set(data["mac_policy"]) == {"fvcore", "full"}
    assert [r["arm"] for r in data["rows"]] == ["cnn/none", "cnn/eca/after_relu/s1-3"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("--attention", "none,squeeze"), "allowed: none, se,"),
        (("--input", "3x32"), "CxHxW"),
        (("--input", "3x32x16"), "square"),
        (("--backbone", "resnet"), "allowed: cnn, vgg16"),
        (("--device", "tpu"), "device"),
    ],
)
def test_cli_profile_user_errors_exit_2(argv: tuple[str, ...], needle: str) -> None:
    code, out, err = run_cli("profile", "--no-timing", *argv)
    assert code == 2 and out == ""
    assert needle in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cli_cuda_without_cuda_exits_2() -> None:
    code, _, err = run_cli("profile", "--attention", "none", "--device", "cuda")
    assert code == 2 and "CUDA is not available" in err


# ---------------------------------------------------------------------------------------------
# CUDA (run with -m gpu on a machine with a GPU)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("graph", [False, True])
def test_cuda_timing_bf16_channels_last_graphs_and_peak_memory(graph: bool) -> None:
    arms = arms_from_names(["vgg16"], ["cbam"])
    setting = timing.Setting(device="cuda", precision="bf16", channels_last=True, rounds=3, block_time=0.01,
                             cuda_graph=graph)
    before = torch.backends.cudnn.benchmark
    rows, _ = costs.profile_backbone(arms, (3, 32, 32), setting=setting, batch_sizes=(8,))
    assert torch.backends.cudnn.benchmark == before  # switched on only while timing
    assert all(r["latency_b8_ms_median"] > 0 for r in rows)
    assert all(r["peak_mem_b8_mib"] > 0 for r in rows)  # activations above weights and input


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_cli_profile() -> None:
    code, out, _ = run_cli(
        "profile", "--attention", "none,se", "--device", "cuda", "--batch-sizes", "1,32", "--precision", "bf16",
        "--channels-last", "--block-time", "0.02", "--format", "csv",
    )  # fmt: skip
    assert code == 0
    df = pd.read_csv(io.StringIO(out))
    assert (df["peak_mem_b32_mib"] > 0).all() and (df["throughput_b32_img_s"] > 0).all()
