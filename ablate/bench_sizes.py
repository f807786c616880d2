"""What `ablate bench` trains on, known before torch is imported: its default image counts and batch, and the
check that the data, the batch and one float batch fit (the dataset's metadata and arithmetic alone), so a
count that cannot work is refused before the reference loop, Optuna and torch are loaded."""

from __future__ import annotations

from typing import Any

from .datasets import DataConfig, check_batch_size, check_dataset_sizes, check_host_fits

# images per backbone when --train-size is not given: a few minutes in all on a 2-core CPU
DEFAULT_TRAIN_SIZE = {"cpu": {"cnn": 4096, "vgg16": 1280}, "cuda": {"cnn": 10000, "vgg16": 10000}}
OTHER_TRAIN_SIZE = 1024  # any other backbone, on either device
BENCH_TEST_SIZE = 100  # the engine evaluates after each epoch, and that time is not what is measured

SCALING_DATASET = "fashion-mnist"
SCALING_TRAIN_SIZE = 2000  # one epoch of the small cnn: a few seconds per item on a 2-core CPU
SCALING_TEST_SIZE = 500
SCALING_BATCH_SIZE = 64  # the scaling study's recipe.batch_size (fixed: the same phase at every worker count)

STARTUP_TRAIN_SIZE = 8000  # `--startup`: images a fresh worker loads (validation held out as DataConfig's default)


def bench_train_size(backbone: str, device_type: str, train_size: int | None = None) -> int:
    """The images one backbone's loops train on: --train-size, else the per-backbone, per-device default."""
    return train_size or DEFAULT_TRAIN_SIZE.get(device_type, DEFAULT_TRAIN_SIZE["cpu"]).get(backbone,
                                                                                         OTHER_TRAIN_SIZE)


def bench_data_options(dataset: str, train_size: int, input_size: int | None) -> dict[str, Any]:
    """The DataConfig keys of one backbone's loops: no validation split, a small test split."""
    options: dict[str, Any] = {"name": dataset, "train_size": train_size, "test_size": BENCH_TEST_SIZE,
                               "val_fraction": 0.0}
    return options if input_size is None else {**options, "input_size": input_size}


def check_bench_data(options: dict[str, Any], batch_size: int, remedy: str) -> DataConfig:
    """The counts against the dataset's metadata, the batch against the images trained on per epoch, and the
    dataset at its input size plus one float batch against host memory. Errors name the config keys under
    'options.' (`ablate.cli.option_names` turns them into --options)."""
    config = DataConfig.from_dict(options, "options")
    info = check_dataset_sizes(config, "options.")
    check_batch_size(batch_size, info, "--batch-size")
    check_host_fits(info, batch_size, "the benchmark's data", remedy)
    return config
