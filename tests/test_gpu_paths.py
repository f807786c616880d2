"""The logic around the GPU paths, on CPU: precision choice, loss scaling, torch.compile across arms,
checkpoints across devices and damaged checkpoints, determinism records, dataset fit checks.

No CUDA device is needed: capability checks and free memory are monkeypatched, compilation uses
torch.compile's eager backend (dynamo captures graphs exactly as for inductor, and runs them eagerly).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

import ablate.gpu_check as gpu_check
import ablate.runner as runner_module
import ablate.train as train_module
from ablate.checkpoint import UnreadableCheckpoint, load_checkpoint
from ablate.cli import main
from ablate.contract import FAIL_ATTR, RETRY_ATTR
from ablate.datasets import Data, DataConfig, DataMeta, Split, load_data
from ablate.device import DATA_MEMORY_FRACTION, DataDoesNotFit, check_fits, resolve_device
from ablate.errors import AblateError
from ablate.precision import bf16_native, mixed_precision
from ablate.recipe import Recipe, Runtime
from ablate.report.diagnostics import run_diagnostics
from ablate.resume import restore
from ablate.runner import run_study
from ablate.spec import load_study
from ablate.storage import open_storage
from ablate.switches import CUBLAS_WORKSPACE_CONFIG, nondeterministic_op, record_nondeterministic_ops
from ablate.train import TrainResult, model_factory, train

from .conftest import write_study

CPU = Runtime(device="cpu")
SE = model_factory("cnn", "se")
TIMING = {"epoch_time_s", "train_time_s", "samples_per_s", "total_time_s", "throughput", "time_to_target_s",
          "warmup_s"}
ALERT = ("adaptive_max_pool2d_backward_cuda does not have a deterministic implementation, but you set "
         "'torch.use_deterministic_algorithms(True, warn_only=True)'. You can file an issue at ...")
GIB = 2**30


def _metrics(result: TrainResult) -> dict:
    return {k: v for k, v in result.as_dict().items() if k not in TIMING}


@pytest.fixture(scope="module")
def tiny() -> Data:
    """96 train (2 full batches of 40 and one of 16) / 24 val / 40 test synthetic images."""
    return load_data(DataConfig(name="synthetic", train_size=120, test_size=40, val_fraction=0.2))


def _fake_gpu(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int]) -> None:
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


# ------------------------------------------------------------------------------ 1. precision


@pytest.mark.parametrize("capability,native,amp", [((7, 5), False, "fp16"), ((7, 0), False, "fp16"),
                                                   ((8, 0), True, "bf16"), ((9, 0), True, "bf16")])
def test_bf16_only_where_the_gpu_has_it(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], native: bool,
                                        amp: str) -> None:
    """bf16 tensor cores arrived with Ampere (sm_80); Turing (sm_75) and Volta (sm_70) only emulate it."""
    _fake_gpu(monkeypatch, capability)
    gpu = torch.device("cuda", 0)
    assert bf16_native(gpu) is native and mixed_precision(gpu) == amp
    assert Runtime(device="cpu").precision(gpu) == amp  # amp defaults to on for CUDA
    assert Runtime(device="cpu", amp=False).precision(gpu) == "fp32"


def test_cpu_precision_is_unchanged() -> None:
    cpu = torch.device("cpu")
    assert bf16_native(cpu) and Runtime().precision(cpu) == "fp32" and Runtime(amp=True).precision(cpu) == "bf16"


def test_the_precision_used_is_recorded_and_fp16_trains_with_a_loss_scaler(tiny: Data, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert train(SE, tiny, Recipe(epochs=1, batch_size=40), runtime=CPU).as_dict()["precision"] == "fp32"
    monkeypatch.setattr(Runtime, "precision", lambda self, device: "fp16")  # what a pre-Ampere GPU gets
    recipe = Recipe(epochs=2, batch_size=40, grad_clip=1.0, scheduler="none")
    straight = train(SE, tiny, recipe, runtime=CPU)
    path = tmp_path / "ck.pt"
    train(SE, tiny, recipe, runtime=CPU, checkpoint_path=path, on_epoch_end=lambda e, m: True)
    state = load_checkpoint(path)
    assert state["scaler"]["scale"] > 1 and state["result"]["precision"] == "fp16"  # GradScaler starts at 2**16
    resumed = train(SE, tiny, recipe, runtime=CPU, checkpoint_path=path)
    assert straight.precision == resumed.precision == "fp16" and _metrics(resumed) == _metrics(straight)


# ------------------------------------------------------------------------------ 2. torch.compile


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_compiled_arms_in_one_process_never_recompile(tiny: Data) -> None:
    """Each run compiles one training and one evaluation graph, and nothing else: the last partial
    batches run uncompiled and dynamo's cache is emptied per run, so six arms (the recompile limit
    is 8 per code object) all run compiled with no recompile warning."""
    from torch._dynamo.utils import counters

    runtime = Runtime(device="cpu", compile=True, compile_backend="eager", eval_batch_size=16)
    recipe = Recipe(epochs=2, batch_size=40, scheduler="none")
    handler = _Records()
    dynamo_log = logging.getLogger("torch._dynamo")
    dynamo_log.addHandler(handler)
    try:
        for attention in ("none", "se", "cbam", "eca", "sam", "simam"):
            graphs, frames = counters["stats"]["unique_graphs"], counters["frames"]["total"]
            result = train(model_factory("cnn", attention), tiny, recipe, runtime=runtime, eval_split="test")
            assert counters["stats"]["unique_graphs"] - graphs == 2, attention
            assert counters["frames"]["total"] - frames == 2, attention  # no guard failed, nothing recompiled
            assert result.warmup_s is not None and result.warmup_s > 0 and result.epochs_run == 2
    finally:
        dynamo_log.removeHandler(handler)
    assert not [m for m in handler.messages if "recompile" in m], handler.messages


def test_compile_warm_up_changes_nothing_the_run_computes(tiny: Data) -> None:
    """The eager backend runs the captured graphs with the same kernels, so a compiled run equals an
    uncompiled one exactly when the warm-up put weights, batch-norm statistics and generators back."""
    recipe = Recipe(epochs=2, batch_size=40, scheduler="none")
    plain = train(model_factory("cnn", "se"), tiny, recipe, runtime=Runtime(device="cpu", eval_batch_size=16), seed=5)
    compiled = train(model_factory("cnn", "se"), tiny, recipe, seed=5,
                     runtime=Runtime(device="cpu", compile=True, compile_backend="eager", eval_batch_size=16))
    assert plain.warmup_s is None and compiled.warmup_s > 0
    assert _metrics(compiled) == _metrics(plain)


def test_unknown_compile_backend_is_a_user_error() -> None:
    with pytest.raises(AblateError, match="compile_backend"):
        Runtime(compile=True, compile_backend="inductr")


# ------------------------------------------------------------------------------ 3. checkpoints across devices


def _first_epoch(tiny: Data, path: Path, runtime: Runtime = CPU) -> Recipe:
    recipe = Recipe(epochs=2, batch_size=40, scheduler="none")
    train(SE, tiny, recipe, runtime=runtime, checkpoint_path=path, on_epoch_end=lambda e, m: True)
    return recipe


def test_a_checkpoint_from_another_device_type_restarts_the_run(tiny: Data, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ck.pt"
    recipe = _first_epoch(tiny, path)
    state = load_checkpoint(path)
    fingerprint = json.loads(state["fingerprint"])
    assert (fingerprint["device"], fingerprint["precision"]) == ("cpu", "fp32")
    assert state["device_type"] == "cpu" and state["rng_gen"].numel() == 5056  # a CPU generator's state
    # as if the run had started on a GPU: a CUDA generator's state is 16 bytes
    cuda_rng = torch.zeros(16, dtype=torch.uint8)
    cuda_state = {**state, "fingerprint": json.dumps({**fingerprint, "device": "cuda", "precision": "bf16"},
                                                     sort_keys=True),
                  "device_type": "cuda", "rng_gen": cuda_rng, "rng_cuda": cuda_rng}
    torch.save(cuda_state, path)
    capsys.readouterr()
    result = train(SE, tiny, recipe, runtime=CPU, checkpoint_path=path)
    err = capsys.readouterr().err
    assert "made on cuda in bf16" in err and "starts from scratch" in err and "resumed" not in err
    assert result.epochs_run == 2 and _metrics(result) == _metrics(train(SE, tiny, recipe, runtime=CPU))
    assert json.loads(load_checkpoint(path)["fingerprint"])["device"] == "cpu"  # replaced by this run's


def test_a_checkpoint_without_placement_restarts_the_run(tiny: Data, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Checkpoints written before device type and precision were part of the fingerprint."""
    path = tmp_path / "ck.pt"
    recipe = _first_epoch(tiny, path)
    state = load_checkpoint(path)
    old = {k: v for k, v in json.loads(state["fingerprint"]).items() if k not in ("device", "precision")}
    torch.save({**state, "fingerprint": json.dumps(old, sort_keys=True)}, path)
    capsys.readouterr()
    assert train(SE, tiny, recipe, runtime=CPU, checkpoint_path=path).epochs_run == 2
    assert "records no device type or precision (an older ablate)" in capsys.readouterr().err


def test_another_precision_restarts_the_run(tiny: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ck.pt"
    recipe = _first_epoch(tiny, path)
    capsys.readouterr()
    result = train(SE, tiny, recipe, runtime=Runtime(device="cpu", amp=True), checkpoint_path=path)
    assert "made on cpu in fp32; this run is on cpu in bf16" in capsys.readouterr().err
    assert result.epochs_run == 2 and result.precision == "bf16"


def test_generators_are_restored_only_on_the_device_type_they_come_from(tiny: Data, tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    recipe = _first_epoch(tiny, path)
    state = load_checkpoint(path)
    net = SE(tiny.meta)
    optimizer = train_module.make_optimizer(net, recipe, torch.device("cpu"))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    gen, host_gen = torch.Generator().manual_seed(99), torch.Generator().manual_seed(99)
    untouched = gen.get_state()
    restore(state, net, optimizer, None, scaler, gen, host_gen, torch.device("cuda", 0))  # no CUDA call is made
    assert torch.equal(gen.get_state(), untouched)  # a CPU state never reaches a CUDA generator
    assert torch.equal(host_gen.get_state(), state["rng_host"])  # host generators are CPU on every device
    restore(state, net, optimizer, None, scaler, gen, host_gen, torch.device("cpu"))
    assert torch.equal(gen.get_state(), state["rng_gen"])


def test_another_run_is_still_refused(tiny: Data, tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    recipe = _first_epoch(tiny, path)
    with pytest.raises(AblateError, match="belongs to another run"):
        train(SE, tiny, recipe, seed=4, runtime=CPU, checkpoint_path=path)


# ------------------------------------------------------------------------------ 4. damaged checkpoints


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    for seed in range(20):  # random bytes fail in different places of the unpickler: every one is unreadable
        path.write_bytes(np.random.default_rng(seed).bytes(5000))
        with pytest.raises(UnreadableCheckpoint):
            load_checkpoint(path)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _missing_key(path: Path) -> None:
    state = load_checkpoint(path)
    del state["optimizer"]
    torch.save(state, path)


def _bad_rng(path: Path) -> None:  # loads, but cannot be restored
    torch.save({**load_checkpoint(path), "rng_cpu": torch.zeros(3, dtype=torch.uint8)}, path)


@pytest.mark.parametrize("damage", [_garbage, _empty])
def test_a_file_that_is_no_checkpoint_of_ablates_is_never_moved_or_overwritten(damage, tiny: Data,
                                                                              tmp_path: Path) -> None:
    """Garbage or an empty file at the path may be the user's: refused untouched, not moved aside."""
    path = tmp_path / "ck.pt"
    recipe = _first_epoch(tiny, path)
    damage(path)
    before = path.read_bytes()
    with pytest.raises(AblateError, match="ablate did not write it"):
        train(SE, tiny, recipe, runtime=CPU, checkpoint_path=path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


@pytest.mark.parametrize("damage", [_truncate, _missing_key, _bad_rng])
def test_a_damaged_checkpoint_is_moved_aside_and_the_run_starts_over(damage, tiny: Data, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ck.pt"
    recipe = _first_epoch(tiny, path)
    damage(path)
    damaged = path.read_bytes()
    capsys.readouterr()
    result = train(SE, tiny, recipe, runtime=CPU, checkpoint_path=path)
    (aside,) = tmp_path.glob("ck.pt.corrupt-*")
    assert aside.read_bytes() == damaged  # kept for inspection, as it was
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(aside) in lines[0] and "starts from scratch" in lines[0]
    assert result.epochs_run == 2 and _metrics(result) == _metrics(train(SE, tiny, recipe, runtime=CPU))
    assert load_checkpoint(path)["epoch"] == 2  # a fresh checkpoint in its place


def _bad_optimizer(path: Path) -> None:  # the weights load, then the optimizer's state does not fit
    torch.save({**load_checkpoint(path), "optimizer": {"state": {}, "param_groups": []}}, path)


def _fresh_module(meta: DataMeta) -> nn.Module:
    """A module as a caller builds it (SE's initial weights at seed 0), to train in place."""
    torch.manual_seed(0)
    return SE(meta)


def test_a_failed_restore_of_a_passed_module_starts_from_its_initial_weights(
        tiny: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A module passed in is trained in place: when its restore fails after the checkpoint's weights were
    loaded into it, the run must start over from the weights it was passed, not from the half-restored ones."""
    path = tmp_path / "ck.pt"
    recipe = _first_epoch(tiny, path)
    _bad_optimizer(path)
    restarted = train(_fresh_module(tiny.meta), tiny, recipe, runtime=CPU, checkpoint_path=path)
    assert "starts from scratch" in capsys.readouterr().err and len(list(tmp_path.glob("ck.pt.corrupt-*"))) == 1
    assert _metrics(restarted) == _metrics(train(_fresh_module(tiny.meta), tiny, recipe, runtime=CPU))


def test_a_valid_checkpoint_says_where_it_resumed(tiny: Data, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ck.pt"
    recipe = _first_epoch(tiny, path)
    capsys.readouterr()
    assert train(SE, tiny, recipe, runtime=CPU, checkpoint_path=path).epochs_run == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"checkpoint {path}: resumed from epoch 1"]
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_load_checkpoint_names_the_damage(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    _garbage(path)
    with pytest.raises(UnreadableCheckpoint, match="x.pt cannot be read"):
        load_checkpoint(path)
    torch.save([1, 2], path)
    with pytest.raises(UnreadableCheckpoint, match="holds no model weights"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")


def test_report_diagnostics_skip_an_unreadable_checkpoint_with_a_note(tmp_path: Path) -> None:
    study_file = write_study(tmp_path)
    study = load_study(study_file)
    arms = {a.attention: a for a in study.arms}
    data = load_data(study.dataset)
    good, bad = tmp_path / "none.pt", tmp_path / "se.pt"
    torch.save({"model": model_factory(**arms["none"].build_kwargs())(data.meta).state_dict()}, good)
    _garbage(bad)
    runs = pd.DataFrame([{"arm": arms["none"].id, "seed": 0, "checkpoint": str(good)},
                         {"arm": arms["se"].id, "seed": 0, "checkpoint": str(bad)}])
    table = pd.DataFrame([{"arm": a.id, "backbone": a.backbone.label, "attention": a.attention, "n": 1,
                           "is_baseline": a.is_baseline, "acc_mean": 50.0} for a in (arms["none"], arms["se"])])
    collected = SimpleNamespace(study=study, runs=runs)
    out = tmp_path / "figures"
    out.mkdir()
    diagnostics = run_diagnostics(collected, table, out, n_images=2)
    (note,) = diagnostics.notes
    assert note.startswith(f"{arms['se'].id}: checkpoint {bad} cannot be read") and "skipped" in note
    assert diagnostics.arms == [f"{arms['none'].id} (seed 0)"] and diagnostics.figures  # the readable arm goes on


# ------------------------------------------------------------------------------ 5. determinism


def test_cublas_workspace_is_set_only_by_a_deterministic_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert main(["list"]) == 0 and "CUBLAS_WORKSPACE_CONFIG" not in os.environ  # a command changes no environment
    monkeypatch.chdir(tmp_path)  # the study's runs/ folder lands here
    study = load_study(write_study(tmp_path, runtime={"deterministic": True}))
    seen = []

    def profile_phase(self: runner_module.Runner) -> None:  # the run's first CUDA work: cuBLAS must be set by then
        seen.append(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module.Runner, "profile", profile_phase)
    with pytest.raises(KeyboardInterrupt):
        run_study(study, progress=False)
    assert seen == [CUBLAS_WORKSPACE_CONFIG] == [":4096:8"]
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own value is kept
    with pytest.raises(KeyboardInterrupt):
        run_study(study, progress=False)
    assert seen[-1] == ":16:8"


def test_a_deterministic_run_sets_cublas_before_it_picks_a_device(tiny: Data, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seen = []

    def resolve(device: str) -> torch.device:  # the first call that may touch CUDA
        seen.append(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        return resolve_device(device)

    monkeypatch.setattr(train_module, "resolve_device", resolve)
    train(SE, tiny, Recipe(epochs=1, batch_size=40), runtime=Runtime(device="cpu", deterministic=True))
    assert seen == [":4096:8"]


def test_determinism_alerts_are_collected_and_other_warnings_pass() -> None:
    assert nondeterministic_op(ALERT) == "adaptive_max_pool2d_backward_cuda"
    assert nondeterministic_op("something else happened") is None
    with pytest.warns(UserWarning, match="an unrelated warning"):
        with record_nondeterministic_ops() as ops:
            for _ in range(3):  # every step warns again; listed once
                warnings.warn(ALERT, UserWarning)
            warnings.warn(ALERT.replace("adaptive_max_pool2d", "_adaptive_avg_pool2d"), UserWarning)
            warnings.warn("an unrelated warning", UserWarning)
    assert ops == ["adaptive_max_pool2d_backward_cuda", "_adaptive_avg_pool2d_backward_cuda"]


class _Alerting(nn.Module):
    """Wraps a model and warns like torch does for an op with no deterministic kernel."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        warnings.warn(ALERT, UserWarning)
        return self.inner(x)


def test_a_run_records_which_ops_could_not_be_deterministic(tiny: Data) -> None:
    alerting = lambda meta: _Alerting(SE(meta))  # noqa: E731
    recipe = Recipe(epochs=1, batch_size=40)
    det = train(alerting, tiny, recipe, runtime=Runtime(device="cpu", deterministic=True))
    assert det.nondeterministic_ops == ["adaptive_max_pool2d_backward_cuda"]
    assert train(SE, tiny, recipe, runtime=Runtime(device="cpu", deterministic=True)).nondeterministic_ops == []
    assert train(alerting, tiny, recipe, runtime=CPU).nondeterministic_ops is None  # not asked: not checked


# ------------------------------------------------------------------------------ 6. does the dataset fit


def test_check_fits_compares_with_free_device_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * GIB, 80 * GIB))
    gpu = torch.device("cuda", 0)
    check_fits(int(DATA_MEMORY_FRACTION * 10 * GIB), gpu)  # just fits
    with pytest.raises(AblateError, match=r"needs 9\.00 GiB on cuda:0, but only 10\.00 GiB of its 80\.00 GiB"):
        check_fits(9 * GIB, gpu)

    def no_cuda(device: object = None) -> None:
        raise AssertionError("no CUDA call for the CPU")

    monkeypatch.setattr(torch.cuda, "mem_get_info", no_cuda)
    check_fits(10**15, torch.device("cpu"))


def test_moving_a_dataset_that_does_not_fit_is_the_datasets_error(tiny: Data, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tiny.nbytes == (120 + 40) * 3 * 32 * 32 + (120 + 40) * 8  # uint8 pixels + int64 labels
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 80 * GIB))
    with pytest.raises(DataDoesNotFit, match="needs"):
        tiny.to(gpu)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 * GIB, 80 * GIB))

    def oom(self: Split, device: object) -> Split:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Split, "to", oom)
    with pytest.raises(DataDoesNotFit, match="does not fit on cuda:0: CUDA out of memory"):
        tiny.to(gpu)
    assert tiny.to(torch.device("cpu")) is tiny  # already there: nothing moves


def test_a_dataset_that_does_not_fit_is_no_arms_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)
    run_study(load_study(path), progress=False, phases=("profile",))
    monkeypatch.setattr(runner_module.Runner, "device", property(lambda self: torch.device("cuda", 0)))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 80 * GIB))
    run_study(load_study(path), progress=False, phases=("final",))
    final = optuna.load_study(study_name="tiny/final", storage=open_storage(load_study(path).storage))
    failed = final.get_trials(states=(TrialState.FAIL,))
    assert failed and len(failed) == len(final.get_trials())
    for trial in failed:  # retried by the next run, and never read as the arm running out of memory
        assert trial.user_attrs[RETRY_ATTR] and "out of memory" not in trial.user_attrs[FAIL_ATTR]
        assert "needs" in trial.user_attrs[FAIL_ATTR] and "GiB" in trial.user_attrs[FAIL_ATTR]


# ------------------------------------------------------------------------------ 7. make gpu-check


def test_gpu_check_without_cuda_says_so_and_succeeds(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main() == 0
    assert capsys.readouterr().out.strip() == "no CUDA device: gpu-check skipped"


def test_gpu_check_code_runs_end_to_end_on_cpu() -> None:
    """Every line of the check runs here too (on the CPU against itself), so a GPU machine meets no typo;
    only the checks that need a GPU fail."""
    check = gpu_check.run_gpu_check("cpu", train_size=100, batch=16, rounds=1)
    text = "\n".join(check.lines)
    assert "cnn/none" in text and "cnn/se" in text and "images/s" in text and check.precision == "bf16"
    assert check.nondeterministic_ops == []  # CPU kernels are deterministic
    assert "peak GPU memory was not reported" in check.failures
    assert set(check.failures) <= {"peak GPU memory was not reported", "the GPU did not train faster than the CPU"}
