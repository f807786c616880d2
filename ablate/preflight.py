"""What a study must pass before anything is allocated or written: sizes the data and the device can hold.

`plan` and `run` both call these first, so a batch larger than the training set, a dataset or a step that
cannot fit in memory, or an image folder that cannot be read is refused with the figures, and nothing
is half-written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .arms import Arm
from .datasets import DatasetInfo, check_imagefolder
from .device import resolve_device
from .memory import check_models_fit, dataset_bytes
from .models import build_model
from .spec import Study
from .spec.schema import dataset_sizes


def check_study_sizes(study: Study, info: DatasetInfo) -> None:
    """Refuse what cannot run before anything is allocated or written: a dataset, training step, evaluation
    or timed batch that the device's memory cannot hold (`info` comes from `dataset_counts`, which has
    refused a batch larger than the training set)."""
    shape = info.shape
    first = {}  # one model per backbone x attention type: positions and ratios change activations little
    for arm in study.arms:
        first.setdefault((arm.backbone.label, arm.attention), arm)
    builds = {arm.id: _builder(arm, shape, info.num_classes) for arm in first.values()}
    remedy = "use a smaller recipe.batch_size, measure.batch_sizes, runtime.eval_batch_size or dataset.input_size"
    check_models_fit(builds, shape, resolve_device(study.runtime.device), train_batch=study.recipe.batch_size,
                     infer_batches=(study.runtime.eval_batch_size,), held=dataset_bytes(info.images, shape),
                     where=str(study.path), remedy=remedy)
    check_models_fit(builds, shape, resolve_device(study.measure.device),
                     train_batch=study.recipe.batch_size if study.measure.train_step else None,
                     infer_batches=tuple(study.measure.batch_sizes), where=f"{study.path}: measure", remedy=remedy)


def _builder(arm: Arm, shape: tuple[int, int, int], num_classes: int) -> Callable[[int], Any]:
    return lambda size: build_model(**arm.build_kwargs(), num_classes=num_classes, in_channels=shape[0],
                                    input_size=size, init_seed=0)


def dataset_counts(study: Study) -> DatasetInfo:
    """What the study's dataset config gives: known from loading for a named dataset or a folder that
    `load_study(scan_folder=True)` scanned; else the folder is scanned (and checked) here, as loading would."""
    if study.info is not None:
        return study.info
    check_imagefolder(study.dataset)
    return dataset_sizes(study.path, study.dataset, study.recipe)
