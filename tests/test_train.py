"""Training engine: recipe validation, learning, determinism, failure modes, hooks, checkpoints, CLI."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from ablate.bench import run_bench
from ablate.checkpoint import load_checkpoint, load_weights
from ablate.cli import main
from ablate.datasets import Data
from ablate.errors import AblateError
from ablate.recipe import Recipe, Runtime
from ablate.train import NonFiniteLossError, TrainResult, model_factory, train

from .conftest import write_idx_gz

CNN = model_factory("cnn", "se")
TIMING = {"epoch_time_s", "train_time_s", "samples_per_s", "total_time_s", "throughput", "time_to_target_s"}
CPU = Runtime(device="cpu")
# what an epoch callback sees: training and validation figures, nothing of the test split
VAL_METRICS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s", "train_time_s",
               "samples_per_s")


def _metrics(result: TrainResult) -> dict:
    return {k: v for k, v in result.as_dict().items() if k not in TIMING}


# ------------------------------------------------------------------------------ configs


def test_recipe_defaults_are_seed_000() -> None:
    r = Recipe()
    assert (r.optimizer, r.lr, r.batch_size, r.scheduler, r.plateau_patience, r.plateau_factor) == (
        "adam", 1e-3, 64, "plateau", 3, 0.5)


def test_recipe_from_dict_coerces_and_validates() -> None:
    assert Recipe.from_dict({"lr": "3e-4", "epochs": 2}).lr == pytest.approx(3e-4)
    cases = [  # every message names the key on its path under `where`
        ({"learning_rate": 0.1}, "recipe.learning_rate: unknown key"),
        ({"optimiser": "sgd"}, "did you mean 'optimizer'?"),
        ({"optimizer": "adamm"},
         "recipe.optimizer: unknown value 'adamm' (did you mean 'adam'?); allowed: adam, adamw, sgd"),
        ({"lr": 0}, "recipe.lr: must be > 0.0"),
        ({"scheduler": "step"}, "allowed: plateau, cosine, onecycle, none"),
        ({"nesterov": True}, "recipe: nesterov needs optimizer 'sgd'"),
        ({"batch_size": "64"}, "recipe.batch_size: must be int"),
    ]
    for d, needle in cases:
        with pytest.raises(AblateError) as err:
            Recipe.from_dict(d, "recipe")
        assert str(err.value).startswith("recipe") and needle in str(err.value), (d, str(err.value))


def test_runtime_rejects_unknown_devices() -> None:
    with pytest.raises(AblateError, match="allowed: auto, cpu, cuda, cuda:<index>"):
        Runtime.from_dict({"device": "gpu"})


# ------------------------------------------------------------------------------ training


def test_one_epoch_learns_above_chance_and_records_everything(synthetic_small: Data) -> None:
    result = train(CNN, synthetic_small, Recipe(epochs=1), seed=0, runtime=CPU, target_acc=15.0)
    assert result.final_acc > 30.0  # 10 classes: chance is 10%
    d = result.as_dict()
    json.dumps(d)
    assert d["epochs_run"] == 1 and d["eval_split"] == "val" and d["n_params"] > 0
    assert d["peak_mem_mib"] is None and d["device"].startswith("cpu")
    assert d["time_to_target_s"] == d["train_time_s"][0]  # training time only, on the validation curve
    assert (d["time_to_target_epochs"], d["target_censored"], d["target_split"]) == (1, False, "val")
    assert d["iter_step"] == [10] and d["lr"] == [1e-3]  # 13 steps, every 10th loss kept
    assert 0 < d["train_time_s"][0] <= d["epoch_time_s"][0]


def test_same_seed_same_metrics_other_seed_other_metrics(synthetic_small: Data) -> None:
    a = train(CNN, synthetic_small, Recipe(epochs=1), seed=7, runtime=CPU)
    b = train(CNN, synthetic_small, Recipe(epochs=1), seed=7, runtime=CPU)
    c = train(CNN, synthetic_small, Recipe(epochs=1), seed=8, runtime=CPU)
    assert _metrics(a) == _metrics(b)
    assert _metrics(a) != _metrics(c)


def test_a_nan_producing_lr_raises_the_specific_error(synthetic_small: Data) -> None:
    with pytest.raises(NonFiniteLossError) as err:
        train(CNN, synthetic_small, Recipe(epochs=1, optimizer="sgd", lr=1e12, scheduler="none"), runtime=CPU)
    assert isinstance(err.value, RuntimeError) and err.value.epoch == 1 and 1 <= err.value.step <= 13
    assert f"epoch 1, step {err.value.step}" in str(err.value)
    assert pickle.loads(pickle.dumps(err.value)).step == err.value.step


def test_epoch_callback_sees_metrics_can_stop_and_its_exceptions_propagate(synthetic_small: Data) -> None:
    seen = []

    def stop_after_first(epoch: int, metrics: dict) -> bool:
        seen.append((epoch, metrics["val_acc"], sorted(metrics)))
        return True

    result = train(CNN, synthetic_small, Recipe(epochs=3), runtime=CPU, on_epoch_end=stop_after_first)
    assert result.epochs_run == 1 and result.stopped_early and seen == [(1, result.final_acc, sorted(VAL_METRICS))]

    class Pruned(Exception):
        pass

    def prune(epoch: int, metrics: dict) -> None:
        raise Pruned

    with pytest.raises(Pruned):
        train(CNN, synthetic_small, Recipe(epochs=2), runtime=CPU, on_epoch_end=prune)


@pytest.mark.parametrize("scheduler", ["plateau", "cosine", "onecycle", "none"])
def test_checkpoint_resume_equals_an_uninterrupted_run(scheduler: str, synthetic_small: Data, tmp_path: Path) -> None:
    recipe = Recipe(epochs=2, scheduler=scheduler, optimizer="sgd", lr=0.05, nesterov=True)
    small = synthetic_small
    straight = train(CNN, small, recipe, seed=3, runtime=CPU)
    path = tmp_path / "ck.pt"
    first = train(CNN, small, recipe, seed=3, runtime=CPU, checkpoint_path=path, on_epoch_end=lambda e, m: True)
    assert first.epochs_run == 1
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1 and set(state["model"]) == set(CNN(small.meta).state_dict())
    resumed = train(CNN, small, recipe, seed=3, runtime=CPU, checkpoint_path=path)
    assert resumed.epochs_run == 2 and _metrics(resumed) == _metrics(straight)
    expected_lr = {"plateau": [0.05, 0.05], "none": [0.05, 0.05]}
    if scheduler in expected_lr:
        assert straight.lr == expected_lr[scheduler]
    elif scheduler == "cosine":
        assert straight.lr[0] == 0.05 > straight.lr[1]
    else:  # onecycle starts at max_lr / 25 and is still warming up or near the top after one epoch
        assert straight.lr[0] == pytest.approx(0.05 / 25) and straight.lr[1] > straight.lr[0]
    model = load_weights(CNN(small.meta), path)
    assert torch.equal(model.state_dict()["head.4.weight"], load_checkpoint(path)["model"]["head.4.weight"])
    with pytest.raises(AblateError, match="belongs to another run"):
        train(CNN, small, recipe, seed=4, runtime=CPU, checkpoint_path=path)


def test_eval_on_val_needs_a_validation_split(synthetic_small: Data) -> None:
    from dataclasses import replace

    no_val = replace(synthetic_small, val=None)
    with pytest.raises(AblateError, match="val_fraction > 0"):
        train(CNN, no_val, Recipe(epochs=1), runtime=CPU)


# ------------------------------------------------------------------------------ command line


def test_cli_train_data_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    debian = write_idx_gz(tmp_path / "debian", n_train=200, n_test=50)
    root = tmp_path / "root"
    assert main(["data", "fetch", "fashion-mnist", "--data-dir", str(root), "--from", str(debian)]) == 0
    assert main(["data", "list", "--data-dir", str(root)]) == 0
    assert "| fashion-mnist | yes" in capsys.readouterr().out
    out = tmp_path / "run.json"
    code = main(["train", "--backbone", "vgg16", "--attention", "eca", "--dataset", "fashion-mnist", "--data-dir",
                 str(root), "--input-size", "32", "--epochs", "1", "--batch-size", "50", "--train-size", "100",
                 "--json", str(out), "--no-progress", "--device", "cpu"])
    assert code == 0
    payload = json.loads(out.read_text())
    assert payload["data"]["meta"]["input_size"] == 32 and payload["result"]["epochs_run"] == 1
    # the default plateau schedule steps on a held-out validation split, never on test
    assert payload["result"]["eval_split"] == "test" and payload["data"]["val_fraction"] == 0.1
    assert len(payload["result"]["val_acc"]) == len(payload["result"]["test_acc"]) == 1
    assert "final test acc" in capsys.readouterr().out


def test_cli_reports_bad_settings_and_nan_as_user_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--dataset", "synthetic", "--lr", "-1", "--no-progress"]) == 2
    assert "ablate train: error: --lr: must be > 0.0" in capsys.readouterr().err
    assert main(["train", "--dataset", "synthetic", "--train-size", "200", "--epochs", "1", "--optimizer", "sgd",
                 "--lr", "1e12", "--scheduler", "none", "--no-progress", "--device", "cpu"]) == 2
    assert "non-finite training loss" in capsys.readouterr().err


def test_bench_runs_all_three_loops_on_identical_data() -> None:
    (row,) = run_bench(["cnn"], train_size=128, runtime=CPU)
    assert row.images == 128 and row.backbone == "cnn" and row.device.startswith("cpu")
    assert min(row.ref_loop_sps, row.engine_sps, row.bare_sps, row.engine_plain_sps) > 0
    assert row.ratio == pytest.approx(row.engine_sps / row.ref_loop_sps)
