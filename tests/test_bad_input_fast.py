"""Refusals of bad input answer before torch is imported (issue 23: seconds and hundreds of MB otherwise).

Each case runs the real command in a fresh interpreter and lists the heavy libraries loaded when it
returned: a bad file, a bad setting, a bad name or a bad output path needs none of them. Checks that
need torch (a model's memory, a dataset's contents) are not here. Timings are not asserted; the
structure that makes them small is.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from ablate.device import GPU_DEVICE_NODES

from .conftest import GOOD

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "pandas", "fvcore", "matplotlib", "scipy")
PROBE = ("import json, sys\nfrom ablate.cli import main\ncode = main(sys.argv[1:])\n"
         f"print(json.dumps([code, [m for m in {HEAVY!r} if m in sys.modules]]))")


def refuse_light(folder: Path, *argv: str) -> str:
    """Run `ablate ARGV` in a fresh interpreter in `folder`: exit 2, and no heavy library loaded; stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)
    code, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 2, done.stderr
    assert loaded == [], (argv, loaded, done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def study(folder: Path, **changes: object) -> str:
    """GOOD with top-level sections replaced (None removes one), written to folder/s.yaml."""
    import yaml

    doc = {**GOOD, **changes}
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in doc.items() if v is not None}, sort_keys=False))
    return path.name


STUDY_CASES = {
    "unknown key": ({"recipe": {"optimiser": "adam"}}, "did you mean 'optimizer'"),
    "NaN lr": ({"recipe": {"lr": float("nan")}}, "recipe.lr"),
    "bad optimizer": ({"recipe": {"optimizer": "adamm"}}, "allowed: adam, adamw, sgd"),
    "negative epochs": ({"recipe": {"epochs": 0}}, "recipe.epochs"),
    "unknown attention": ({"grid": {**GOOD["grid"], "attention": ["none", "sse"]}}, "did you mean 'se'"),
    "bad knob value": ({"grid": {**GOOD["grid"], "knobs": {"se": {"gate": ["bogus"]}}}}, "sigmoid | tanh | relu"),
    "unknown knob": ({"grid": {**GOOD["grid"], "knobs": {"se": {"gates": ["tanh"]}}}}, "did you mean 'gate'"),
    "unknown position": ({"grid": {**GOOD["grid"], "positions": ["after_reLU"]}}, "grid.positions[0]"),
    "unknown backbone": ({"grid": {**GOOD["grid"], "backbones": ["resnet21"]}}, "grid.backbones[0].name"),
    "bad storage URL": ({"storage": "bogus://x"}, "unsupported storage URL"),
    "bad seeds": ({"seeds": [0, 0]}, "distinct"),
    "bad measure": ({"measure": {"precision": "fp8"}}, "measure.precision"),
    "unknown dataset key": ({"dataset": {**GOOD["dataset"], "train_sise": 5}}, "did you mean 'train_size'"),
}


@pytest.mark.parametrize("case", list(STUDY_CASES))
def test_a_bad_study_file_is_refused_before_torch(tmp_path: Path, case: str) -> None:
    changes, words = STUDY_CASES[case]
    name = study(tmp_path, **changes)
    assert words in refuse_light(tmp_path, "plan", name)


def test_bad_study_files_on_disk_are_refused_before_torch(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "big.yaml").write_bytes(b"#" * (2 << 20))
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    for name, words in (("fifo.yaml", "not a regular file"), ("missing.yaml", "not found"),
                        ("folder.yaml", "is a folder"), ("big.yaml", "larger than"), ("bad.yaml", "invalid YAML")):
        for command in ("plan", "run", "status"):
            assert words in refuse_light(tmp_path, command, name)


def test_bad_outputs_and_options_are_refused_before_torch(tmp_path: Path) -> None:
    (tmp_path / "victim.yaml").write_text("name: mine\n")
    (tmp_path / "folder").mkdir()
    name = study(tmp_path)
    cases = [(["train", "--checkpoint", "victim.yaml"], "ablate did not write it"),
             (["train", "--json", "folder"], "is a folder"),
             (["train", "--json", "victim.yaml"], "ablate did not write it"),
             (["train", "--json", "/dev/full"], "/dev/full"),
             (["profile", "--out", "/dev/full"], "/dev/full"),
             (["train", "--attention", "sse"], "did you mean 'se'"),
             (["train", "--attention", "se", "--knob", "gate=x"], "sigmoid | tanh | relu"),
             (["train", "--lr", "-1"], "--lr"),
             (["train", "--scheduler", "plateau", "--val-fraction", "0"], "--val-fraction 0"),
             (["run", name, "--workers", str(10**6)], "at most"),
             (["bench", "--workers", "1,100000"], "--workers 100000"),  # every count before the first trains
             (["run", name, "--storage", "bogus://x"], "unsupported storage URL"),
             (["report", name, "--out", "../elsewhere"], "not a report folder")]
    for argv, words in cases:
        assert words in refuse_light(tmp_path, *argv), argv


SIZE_CASES = {  # sizes the data or the host cannot hold: known from the dataset's metadata and arithmetic alone
    "batch beyond the data": ({"recipe": {"epochs": 1, "batch_size": 181}}, "larger than the 180 images"),
    "input_size beyond memory": ({"dataset": {**GOOD["dataset"], "input_size": 100_000}},
                                 "300 images of 3x100000x100000"),
    "activations beyond memory": ({"dataset": {**GOOD["dataset"], "input_size": 2048},
                                   "runtime": {"device": "cpu"}}, "training cnn/none at batch 32"),
}


COUNT_CASES = {  # counts past their upper bounds (ablate.bounds): refused before storage is created
    "epochs": ({"recipe": {"epochs": 1_000_000_000}}, "recipe.epochs: must be >= 1 and <= 10000"),
    "tuning epochs": ({"tuning": {"epochs": 10_001, "space": {"lr": {"low": 0.001, "high": 0.1}}}},
                      "tuning.epochs: must be >= 1 and <= 10000"),
    "measure rounds": ({"measure": {"rounds": 100_000_000}}, "300,000,000 blocks per arm and timing; at most "
                                                             "100,000, so rounds <= 33,333"),
    "runtime threads": ({"runtime": {"threads": 100_000}}, "runtime.threads: must be >= 1 and <="),
    "measure threads": ({"measure": {"threads": 100_000}}, "measure.threads: must be >= 1 and <="),
    "tuning trials": ({"tuning": {"n_trials": 10**9, "space": {"lr": {"low": 0.001, "high": 0.1}}}},
                      "tuning.n_trials: must be >= 1 and <= 10000, got 1000000000"),
    "seeds listed": ({"seeds": list(range(1001))}, "seeds: 1,001 seeds listed; at most 1,000 per arm"),
}


@pytest.mark.parametrize("case", [*SIZE_CASES, *COUNT_CASES])
def test_sizes_and_counts_that_cannot_work_are_refused_before_torch(tmp_path: Path, case: str) -> None:
    changes, words = {**SIZE_CASES, **COUNT_CASES}[case]
    name = study(tmp_path, **changes)
    for command in ("plan", "run"):
        assert words in refuse_light(tmp_path, command, name), command
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing written: no storage, no runs/


def test_command_line_sizes_that_cannot_work_are_refused_before_torch(tmp_path: Path) -> None:
    # synthetic: 10,000 training images, 10% validation; one 3x100000x100000 float image is 111.8 GiB
    train = ["train", "--dataset", "synthetic", "--train-size", "200", "--test-size", "100"]
    cases = [([*train, "--batch-size", "181"], "larger than the 180 images"),
             ([*train, "--input-size", "100000"], "3x100000x100000"),
             (["profile", "--input", "3x100000x100000", "--batch-sizes", "1", "--train-batch", "0"], "111.8 GiB"),
             (["profile", "--input", "3x100000x100000"], "3x100000x100000"),
             (["profile", "--input", "3x2048x2048", "--device", "cpu"], "training cnn/none at batch 64"),
             ([*train, "--input-size", "2048", "--device", "cpu"], "activations and their gradients"),
             ([*train, "--reduction", "0"], "--reduction: must be >= 1"),
             ([*train, "--target-acc", "200"], "--target-acc: must be > 0.0 and <= 100.0"),
             ([*train, "--val-fraction", "0.9999"], "0.9999 of 200 training images leaves 0"),
             ([*train, "--train-size", "100000"], "--train-size: 100000 images requested"),
             ([*train, "--data-dir", "/etc/hostname"], "is a file, not a folder")]
    for argv, words in cases:
        assert words in refuse_light(tmp_path, *argv), argv
    assert list(tmp_path.iterdir()) == []


def test_bench_counts_and_sizes_are_refused_before_torch(tmp_path: Path) -> None:
    """`ablate bench`: every count in range, the batch within the images it trains on, one float batch in memory."""
    # synthetic: 10 classes, 3x32x32, 10,000 training images; bench trains on train_size (no validation) and
    # tests on 100; --startup holds out 10% (200 -> 180); --workers trains at batch 64; vgg16 on cpu: 1,280 images
    bench = ["bench", "--dataset", "synthetic", "--device", "cpu"]
    cases = [([*bench, "--epochs", "0"], "--epochs: must be >= 1 and <= 10000, got 0"),
             ([*bench, "--epochs", "1000000000"], "--epochs: must be >= 1 and <= 10000"),
             ([*bench, "--batch-size", "-1"], "--batch-size: must be >= 1, got -1"),
             ([*bench, "--repeats", "0"], "--repeats: must be >= 1 and <= 100, got 0"),
             ([*bench, "--repeats", "101"], "--repeats: must be >= 1 and <= 100, got 101"),
             ([*bench, "--train-size", "-5"], "--train-size: must be >= 1, got -5"),
             ([*bench, "--train-size", "1000000000"],
              "--train-size: 1000000000 images requested, but synthetic has 10000 training images; allowed: 10 (one "
              "per class) to 10000"),
             ([*bench, "--input-size", "0"], "--input-size: must be >= 8, got 0"),
             ([*bench, "--train-size", "200", "--batch-size", "201"], "--batch-size 201 is larger than the 200 images"),
             ([*bench, "--backbone", "vgg16", "--batch-size", "1281"], "--batch-size 1281 is larger than the 1280"),
             ([*bench, "--startup", "--train-size", "200", "--batch-size", "181"], "larger than the 180 images"),
             ([*bench, "--workers", "1,2", "--train-size", "63"], "at batch size 64"),
             # one 3x100000x100000 float32 image is 3e10 x 4 bytes = 111.8 GiB: 64 of them 7,152.6 GiB
             ([*bench, "--train-size", "200", "--input-size", "100000"],
              "300 images of 3x100000x100000 (uint8): 8,381.9 GiB; input batch of 64 x 3x100000x100000 (float32): "
              "7,152.6 GiB")]
    for argv, words in cases:
        assert words in refuse_light(tmp_path, *argv), argv
    assert list(tmp_path.iterdir()) == []


def test_slurm_counts_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    """SLURM's default MaxArraySize is 1001 (indexes 0..1000): 1002 array tasks need index 1001."""
    name = study(tmp_path)
    cases = [(["slurm", name, "--workers", "1002"], "indexes would be 0..1001, but SLURM's default MaxArraySize "
                                                    "(1001) allows indexes up to 1000"),
             (["slurm", name, "--workers", "0"], "--workers must be >= 1"),
             (["slurm", name, "--gpus-per-worker", "-1"], "Allowed: 0 or 1"),
             (["slurm", name, "--gpus-per-worker", str(10**9)], "Allowed: 0 or 1")]
    for argv, words in cases:
        assert words in refuse_light(tmp_path, *argv), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def scramble_png(path: Path) -> None:
    """Flip the bits of a PNG's compressed pixels and fix the chunk's CRC: PIL's verify() passes it, decoding fails."""
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4:at])[0]
    body = bytes(b ^ 0x5A for b in data[at + 4:at + 4 + length])
    data[at + 4:at + 8 + length] = body + struct.pack(">I", zlib.crc32(b"IDAT" + body))
    path.write_bytes(bytes(data))


def test_data_that_cannot_be_read_is_refused_before_torch(tmp_path: Path) -> None:
    """An image folder (corrupt image, mixed sizes, one class) and truncated idx files, at plan and run."""
    from PIL import Image

    from .conftest import write_idx_gz, write_imagefolder

    corrupt, scrambled, mixed, single = (write_imagefolder(tmp_path / name, classes=classes) for name, classes in (
        ("corrupt", ("cat", "dog")), ("scrambled", ("cat", "dog")), ("mixed", ("cat", "dog")), ("single", ("cat",))))
    (corrupt / "dog" / "2.png").write_bytes(b"not a png")
    scramble_png(scrambled / "dog" / "4.png")
    Image.new("RGB", (17, 31)).save(mixed / "dog" / "3.png")
    root = tmp_path / "root" / "FashionMNIST" / "raw"
    root.mkdir(parents=True)
    for gz in write_idx_gz(tmp_path / "debian", n_train=200, n_test=50).iterdir():
        (root / gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
    images = root / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    work = tmp_path / "work"
    work.mkdir()
    for folder, words in ((corrupt, "2.png cannot be decoded"), (scrambled, "4.png cannot be decoded"),
                          (mixed, "different sizes"), (single, "one class")):
        name = study(work, dataset={"name": f"imagefolder:{folder}", "augment": []},
                     recipe={"epochs": 1, "batch_size": 4})
        for command in ("plan", "run"):
            assert words in refuse_light(work, command, name), (folder, command)
    name = study(work, dataset={"name": "fashion-mnist", "train_size": 100, "test_size": 50})
    for command in ("plan", "run"):
        assert "truncated" in refuse_light(work, command, name, "--data-dir", str(tmp_path / "root")), command
    assert sorted(p.name for p in work.iterdir()) == [name]


@pytest.mark.skipif(any(os.path.exists(node) for node in GPU_DEVICE_NODES), reason="this machine has a GPU driver")
def test_cuda_without_a_gpu_driver_is_refused_before_torch(tmp_path: Path) -> None:
    name = study(tmp_path, runtime={"device": "cuda"})
    for command in ("plan", "run"):
        assert "runtime.device: device 'cuda' asked for" in refuse_light(tmp_path, command, name)
    assert "--device: device 'cuda:1' asked for" in refuse_light(tmp_path, "train", "--device", "cuda:1")
    assert "--device: device 'cuda' asked for" in refuse_light(tmp_path, "profile", "--device", "cuda")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
