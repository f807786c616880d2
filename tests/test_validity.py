"""Accuracy comparisons that can be believed: test data never decides, arms are paired, and the
numbers a paired or time-to-target analysis needs are recorded (issue 10)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ablate.cli import main
from ablate.datasets import Data, DataConfig, DataMeta, Split, load_data
from ablate.errors import AblateError
from ablate.models import attention_modules
from ablate.recipe import Recipe, Runtime
from ablate.records import decode_correct, encode_correct, time_to_target
from ablate.train import initial_model, model_factory, train

CPU = Runtime(device="cpu")
ARMS = ("none", "se", "cbam", "nonlocal")


def _permuted_test_labels(data: Data) -> Data:
    perm = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(0))
    return replace(data, test=Split(data.test.images, data.test.labels[perm]))


# ------------------------------------------------------------------------------ test never decides


def test_test_labels_cannot_change_training(synthetic_small: Data) -> None:
    """Two datasets that differ only in their test labels must train identically.

    Fails on the old engine, which stepped ReduceLROnPlateau on the test loss: with these settings
    the permuted labels' rising test loss halved the lr at epochs 3 and 4 (lr [1e-3, 1e-3, 5e-4,
    2.5e-4] against [1e-3] * 4), so the lr and training-loss curves split.
    """
    recipe = Recipe(epochs=4, plateau_patience=0, lr=1e-3)
    seen: list[dict[str, Any]] = []

    def run(data: Data) -> Any:
        return train(model_factory("cnn"), data, recipe, seed=0, runtime=CPU, eval_split="test",
                     on_epoch_end=lambda epoch, metrics: seen.append(metrics) and False)

    a, b = run(synthetic_small), run(_permuted_test_labels(synthetic_small))
    assert a.lr == b.lr and a.train_loss == b.train_loss and a.iter_loss == b.iter_loss
    assert a.val_loss == b.val_loss and a.val_acc == b.val_acc
    assert a.test_acc != b.test_acc and a.test_acc[-1] > b.test_acc[-1] + 30
    # the result is the last epoch's test accuracy, and eval_* are the test curves
    assert a.eval_split == "test" and a.final_acc == a.test_acc[-1] and a.eval_acc == a.test_acc
    assert len(a.val_acc) == len(a.test_acc) == a.epochs_run == 4
    # an epoch callback (pruning, early stopping) sees validation numbers only
    assert all(not any(k.startswith(("test", "eval")) for k in m) for m in seen)
    assert [m["val_acc"] for m in seen[:4]] == a.val_acc
    # per-image correctness of the last test evaluation, in test-subset order
    hits = decode_correct(a.test_correct, len(synthetic_small.test))
    assert hits.dtype == bool and 100.0 * hits.mean() == pytest.approx(a.final_acc)
    assert a.as_dict()["test_correct"] == a.test_correct


def test_nothing_may_decide_on_test(synthetic_small: Data, capsys: pytest.CaptureFixture[str]) -> None:
    no_val = replace(synthetic_small, val=None)
    with pytest.raises(AblateError, match="plateau.*validation split"):
        train(model_factory("cnn"), no_val, Recipe(epochs=1), runtime=CPU, eval_split="test")
    with pytest.raises(AblateError, match="callback.*validation"):
        train(model_factory("cnn"), no_val, Recipe(epochs=1, scheduler="none"), runtime=CPU, eval_split="test",
              on_epoch_end=lambda e, m: False)
    assert main(["train", "--dataset", "synthetic", "--val-fraction", "0", "--no-progress"]) == 2
    assert "plateau scheduler steps on the validation loss" in capsys.readouterr().err


def test_a_run_without_validation_reports_test_and_censors_time_to_target(synthetic_small: Data) -> None:
    tiny = replace(synthetic_small, val=None, train=Split(synthetic_small.train.images[:128],
                                                          synthetic_small.train.labels[:128]))
    result = train(model_factory("cnn"), tiny, Recipe(epochs=1, scheduler="cosine"), runtime=CPU,
                   eval_split="test", target_acc=100.0)
    assert result.val_acc == [] and len(result.test_acc) == 1 and result.target_split == "test"
    assert (result.time_to_target_epochs, result.time_to_target_s, result.target_censored) == (None, None, True)


def test_time_to_target_counts_training_seconds_and_censors() -> None:
    acc, seconds = [50.0, 70.0, 90.0], [1.0, 2.0, 4.0]
    assert time_to_target(acc, seconds, 70.0) == (2, 3.0, False)
    assert time_to_target(acc, seconds, 10.0) == (1, 1.0, False)
    assert time_to_target(acc, seconds, 95.0) == (None, None, True)
    assert time_to_target([], [], 10.0) == (None, None, True)


def test_correctness_round_trips() -> None:
    for n in (1, 7, 8, 9, 1000):
        bits = np.random.default_rng(n).random(n) < 0.5
        assert np.array_equal(decode_correct(encode_correct(bits), n), bits)
        assert np.array_equal(decode_correct(encode_correct(torch.from_numpy(bits)), n), bits)


# ------------------------------------------------------------------------------ pairing


def _meta(channels: int, size: int) -> DataMeta:
    return DataMeta("synthetic", 10, channels, size, (0.5,) * channels, (0.25,) * channels,
                    tuple(str(c) for c in range(10)), (0, 0, 0))


def _shared_with(base: nn.Module, other: nn.Module) -> dict[str, bool]:
    """{name: bit-identical} over the baseline's parameters and buffers, all of which `other` must have."""
    theirs = other.state_dict()
    return {k: k in theirs and v.shape == theirs[k].shape and torch.equal(v, theirs[k])
            for k, v in base.state_dict().items()}


@pytest.mark.parametrize("backbone", ["cnn", "vgg16"])
def test_arms_share_initial_weights_at_one_seed(backbone: str) -> None:
    meta = _meta(3, 32)

    def build(attention: str, seed: int, **kw: Any) -> tuple[nn.Module, torch.Tensor]:
        model = initial_model(model_factory(backbone, attention, reduction=8, **kw), meta, seed)
        return model, torch.get_rng_state()  # the generator state dropout starts from

    base, base_rng = build("none", 0)
    arms = [build(a, 0) for a in ARMS[1:]] + [build("se", 0, position="after_conv", stages=[2])]
    for model, rng in arms:
        assert attention_modules(model)
        assert all(_shared_with(base, model).values())  # every backbone layer, every buffer
        assert torch.equal(rng, base_rng)
    nonlocal_ = arms[2][0]
    for _, module in attention_modules(nonlocal_):
        assert torch.count_nonzero(module.bn.weight) == 0  # non-local's own zero-initialised output BN survives
    other, _ = build("none", 1)
    same = _shared_with(base, other)
    assert not same["features.block1.conv1.weight"] and not same["features.block2.conv1.weight"]
    assert not any(v for k, v in same.items() if k.endswith(".weight") and k.startswith("head"))
    assert all(_shared_with(other, build("cbam", 1)[0]).values())


def test_arms_see_the_same_batches_at_one_seed(synthetic_small: Data) -> None:
    tiny = replace(synthetic_small, train=Split(synthetic_small.train.images[:160],
                                                synthetic_small.train.labels[:160]))

    def batches(attention: str) -> list[torch.Tensor]:
        seen: list[torch.Tensor] = []

        def factory(meta: DataMeta) -> nn.Module:
            model = model_factory("cnn", attention)(meta)
            model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()) if m.training else None)
            return model

        train(factory, tiny, Recipe(epochs=1, scheduler="none"), seed=5, runtime=CPU)
        return seen

    none, se, cbam = batches("none"), batches("se"), batches("cbam")
    assert len(none) == 3
    assert all(torch.equal(x, y) and torch.equal(x, z) for x, y, z in zip(none, se, cbam))


# ------------------------------------------------------------------------------ data


def test_test_subset_depends_on_test_size_and_split_seed_only() -> None:
    def load(**kw: Any) -> Data:
        return load_data(DataConfig(name="synthetic", **{"test_size": 100, "split_seed": 1, **kw}))

    a, b = load(train_size=500, val_fraction=0.2), load(train_size=1000, val_fraction=0.1)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.test.labels, b.test.labels)
    assert a.meta.sizes == (400, 100, 100) and b.meta.sizes == (900, 100, 100)  # train_size counts val too
    c = load(train_size=500, val_fraction=0.2, split_seed=2)
    assert not torch.equal(a.test.images, c.test.images)


def test_test_split_after_the_last_epoch_only_changes_nothing_else(synthetic_small: Data) -> None:
    """Runtime.test_every_epoch=False skips the test split until the last epoch: the same training,
    the same final test accuracy and per-image hits, with None in the skipped epochs' places."""
    recipe = Recipe(epochs=3, scheduler="onecycle", lr=1e-3)
    every = train(model_factory("cnn"), synthetic_small, recipe, seed=1, runtime=CPU, eval_split="test")
    last = train(model_factory("cnn"), synthetic_small, recipe, seed=1,
                 runtime=replace(CPU, test_every_epoch=False), eval_split="test")
    assert last.train_loss == every.train_loss and last.val_acc == every.val_acc
    assert last.test_acc == [None, None, every.test_acc[-1]] and last.test_loss[:2] == [None, None]
    assert last.final_acc == every.final_acc and last.test_correct == every.test_correct
    assert last.best_acc == every.final_acc and last.best_epoch == 3


def test_a_run_stopped_early_still_ends_with_a_test_accuracy(synthetic_small: Data) -> None:
    """Stopped by its callback after epoch 2 of 4 with the test split skipped so far: the test split
    is evaluated then, so the result's last entry is a measurement, the same as an every-epoch run's."""
    recipe = Recipe(epochs=4, scheduler="cosine", lr=1e-3)

    def run(every_epoch: bool) -> Any:
        return train(model_factory("cnn"), synthetic_small, recipe, seed=2, eval_split="test",
                     runtime=replace(CPU, test_every_epoch=every_epoch), on_epoch_end=lambda e, m: e == 2)

    every, last = run(True), run(False)
    assert last.stopped_early and last.epochs_run == 2
    assert last.test_acc == [None, every.test_acc[1]] and last.final_acc == every.final_acc
