"""Shared fixtures: tiny datasets written in each on-disk format the data layer reads, and tiny studies.

The writers follow the public formats (CIFAR's python pickle batches, idx files, SVHN's .mat,
class-subfolder image trees), so the real readers run on them; pixel values are functions of the
index, so tests can assert exactly what came back. GOOD and TINY are small valid study files, with
helpers that write one and read back what its final phase holds; `record_popen` fakes starting workers.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import time
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState

import ablate.workers as workers_module
from ablate.datasets import Data, DataConfig, load_data
from ablate.spec import load_study
from ablate.storage import open_storage

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def pattern(n: int, shape: tuple[int, ...], offset: int = 0) -> np.ndarray:
    """uint8 images whose pixels encode (index, position): image i is (i * 7 + offset + pos) % 256."""
    size = int(np.prod(shape))
    idx = np.arange(n)[:, None] * 7 + offset + np.arange(size)[None, :]
    return (idx % 256).astype(np.uint8).reshape(n, *shape)


def balanced_labels(n: int, classes: int = 10) -> np.ndarray:
    return np.arange(n) % classes


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 30) -> Path:
    """cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} with N x 3072 channel-major rows."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(1, 6):
        data = pattern(per_batch, (3 * 32 * 32,), offset=b * 1000)
        batch = {"batch_label": f"training batch {b} of 5", "labels": balanced_labels(per_batch).tolist(),
                 "data": data, "filenames": [f"img_{b}_{i}.png" for i in range(per_batch)]}
        (folder / f"data_batch_{b}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {"batch_label": "testing batch 1 of 1", "labels": balanced_labels(n_test).tolist(),
            "data": pattern(n_test, (3 * 32 * 32,), offset=7), "filenames": [f"t_{i}.png" for i in range(n_test)]}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {"label_names": CIFAR10_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n, off in (("train", n_train, 3), ("test", n_test, 5)):
        labels = balanced_labels(n, 100).tolist()
        entry = {"data": pattern(n, (3072,), off), "fine_labels": labels, "coarse_labels": [x // 5 for x in labels]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}, protocol=2))
    return root


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian dims, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_gz(folder: Path, n_train: int = 60, n_test: int = 20) -> Path:
    """The four gzip'd idx files, as Debian's dataset-fashion-mnist installs them."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte": pattern(n_train, (28, 28), 1),
        "train-labels-idx1-ubyte": balanced_labels(n_train),
        "t10k-images-idx3-ubyte": pattern(n_test, (28, 28), 2),
        "t10k-labels-idx1-ubyte": balanced_labels(n_test),
    }
    for name, array in files.items():
        with gzip.open(folder / f"{name}.gz", "wb") as f:
            f.write(idx_bytes(array))
    return folder


def write_svhn(root: Path, n_train: int = 40, n_test: int = 20) -> Path:
    from scipy.io import savemat

    folder = root / "svhn"
    folder.mkdir(parents=True)
    for name, n, off in (("train", n_train, 11), ("test", n_test, 13)):
        x = pattern(n, (3, 32, 32), off).transpose(2, 3, 1, 0)  # SVHN stores (32, 32, 3, N)
        y = (balanced_labels(n) % 10).reshape(-1, 1)
        y[y == 0] = 10  # SVHN's label for the digit 0
        savemat(folder / f"{name}_32x32.mat", {"X": x, "y": y.astype(np.uint8)})
    return root


def write_imagefolder(root: Path, per_class: int = 6, classes: tuple[str, ...] = ("cat", "dog", "fox"),
                      size: tuple[int, int] = (20, 20)) -> Path:
    from PIL import Image

    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            arr = np.full((*size, 3), fill_value=40 * c + i, dtype=np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def cifar10_root(tmp_path: Path) -> Path:
    return write_cifar10(tmp_path / "data")


@pytest.fixture
def fashion_gz_dir(tmp_path: Path) -> Path:
    return write_idx_gz(tmp_path / "debian" / "fashion-mnist")


@pytest.fixture(scope="session")
def synthetic_small() -> Data:
    """800 train / 200 val / 200 test synthetic images (CIFAR-shaped), loaded once per session."""
    return load_data(DataConfig(name="synthetic", train_size=1000, test_size=200, val_fraction=0.2))


GOOD = {
    "name": "tiny",
    "dataset": {"name": "synthetic", "train_size": 200, "test_size": 100},
    "grid": {"backbones": ["cnn"], "attention": ["none", "se"], "positions": ["after_relu"], "reductions": [16]},
    "seeds": [0, 1],
    "recipe": {"epochs": 1, "batch_size": 32},
}

TINY = {
    "name": "tiny",
    "dataset": {"name": "synthetic", "train_size": 300, "test_size": 100, "augment": []},
    "grid": {"backbones": ["cnn"], "attention": ["none", "se"], "positions": ["after_relu"], "reductions": [16]},
    "seeds": [0, 1],
    "recipe": {"epochs": 1, "batch_size": 50},
    "measure": {"batch_sizes": [1, 8], "block_time": 0.005, "rounds": 3},
}


def write_study(folder: Path, **overrides: object) -> Path:
    doc = {**TINY, **overrides}
    path = folder / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def final_counts(path: Path, storage: str | None = None) -> Counter:
    """(arm, seed) -> number of COMPLETE final trials."""
    study = load_study(path, storage=storage)
    final = optuna.load_study(study_name=f"{study.name}/final", storage=open_storage(study.storage))
    return Counter((t.params["arm"], t.params["seed"]) for t in final.get_trials(states=(TrialState.COMPLETE,)))


def expected_items(path: Path) -> set:
    study = load_study(path)
    return {(a.id, s) for a in study.arms for s in study.seeds}


def wait_for_running_final(db: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                storage = open_storage(f"sqlite:///{db}")
                final = optuna.load_study(study_name="tiny/final", storage=storage)
                if final.get_trials(states=(TrialState.RUNNING,)):
                    return
            except KeyError:
                pass
        time.sleep(0.2)
    raise AssertionError("no final trial started in time")


class FakePopen:
    """Records what a worker would be started with; the worker 'exits 0' at once."""

    calls: list[tuple[list[str], dict[str, str]]]

    def __init__(self, calls: list, args: list[str], env: dict[str, str] | None = None, **kwargs: object) -> None:
        calls.append((list(args), dict(env or {})))
        self.returncode = 0

    def poll(self) -> int:
        return 0


def record_popen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    calls: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(workers_module.subprocess, "Popen", lambda args, **kw: FakePopen(calls, args, **kw))
    return calls
