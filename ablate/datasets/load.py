"""`load_data`: a config's dataset as uint8 splits on one device (what training and the report read).

Why tensors and not a DataLoader: the datasets this harness uses fit in memory (CIFAR-10's training set
is 150 MB as uint8), so keeping them on the training device and doing shuffling, batching and
augmentation as batched tensor ops (see ablate.augment) removes per-image Python and PIL work from the
hot loop; airbench shows this is the main speed lever on a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..config import check_choice
from ..device import DataDoesNotFit, check_fits
from ..errors import AblateError
from ..rng import derive_seed
from .cache import read_raw
from .config import DataConfig
from .readers import fit_size
from .sources import data_root, fetch, get_source, missing
from .splits import TEST_STREAM, split_counts, stratified_split, subset_indexes


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class DataMeta:
    """What a model and a report need to know about the data."""

    name: str
    num_classes: int
    in_channels: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    sizes: tuple[int, int, int]  # train, val, test images

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Data:
    """A loaded dataset: uint8 splits on one device, plus the config and meta that describe them."""

    config: DataConfig
    meta: DataMeta
    train: Split
    val: Split | None
    test: Split

    @property
    def device(self) -> torch.device:
        return self.train.images.device

    def split(self, name: str) -> Split:
        """'val' or 'test'; asking for 'val' without a validation split is a user error."""
        check_choice("eval split", name, ("val", "test"))
        if name == "val":
            if self.val is None:
                raise AblateError("evaluation on 'val' needs a validation split: set val_fraction > 0.")
            return self.val
        return self.test

    @property
    def nbytes(self) -> int:
        """Bytes the images and labels of every split take."""
        splits = [s for s in (self.train, self.val, self.test) if s is not None]
        return sum(t.numel() * t.element_size() for s in splits for t in (s.images, s.labels))

    def to(self, device: torch.device | str) -> Data:
        """This dataset on `device`, checked to fit first (ablate.device.check_fits). An out-of-memory
        error while moving it is the dataset's (DataDoesNotFit), so no arm records it as its own failure."""
        device = torch.device(device)
        if device == self.device:
            return self
        check_fits(self.nbytes, device)
        try:
            val = self.val.to(device) if self.val is not None else None
            return replace(self, train=self.train.to(device), val=val, test=self.test.to(device))
        except torch.OutOfMemoryError as err:
            raise DataDoesNotFit(f"the dataset ({self.nbytes / 2**30:.2f} GiB) does not fit on {device}: "
                                 f"{str(err).splitlines()[0]}") from None


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, scaled to [0, 1] (float64 sums, in chunks)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in images.split(4096):
        x = chunk.to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def load_data(config: DataConfig, root: str | Path | None = None, device: torch.device | str = "cpu", *,
              fetch_missing: bool = False) -> Data:
    """Read (through the cache), subset, split, size and move a dataset to `device`, as uint8 tensors.

    `fetch_missing=True` runs `fetch` when the files are absent (the CLI does; a study may prefer
    to fail fast). Everything random here depends on `config.split_seed` only. All the work is done
    on the CPU; the splits move to `device` in one step at the end.
    """
    source, base = get_source(config.name, config.input_size, config.resize), data_root(root)
    if not source.present(base):
        if not fetch_missing or (source.download is None and source.local_copy is None):
            raise missing(source, base)
        fetch(config.name, base)
    raw = read_raw(config, base, source)
    gen = torch.Generator().manual_seed(config.split_seed)
    drawn = subset_indexes(raw.train_y, config.train_size, "train_size", gen)
    n_val = split_counts(len(drawn), config.val_fraction)[1]
    val_pos, fit_pos = stratified_split(raw.train_y[drawn], n_val, gen) if n_val else (None, torch.arange(len(drawn)))
    test_idx = subset_indexes(raw.test_y, config.test_size, "test_size",
                       torch.Generator().manual_seed(derive_seed(config.split_seed, TEST_STREAM)))
    size = config.input_size or int(max(raw.train_x.shape[-2:]))

    def split(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> Split:
        return Split(fit_size(x[idx], size, config.resize).contiguous(), y[idx].clone())

    train = split(raw.train_x, raw.train_y, drawn[fit_pos])
    val = split(raw.train_x, raw.train_y, drawn[val_pos]) if val_pos is not None else None
    test = split(raw.test_x, raw.test_y, test_idx)
    if source.mean is not None and source.std is not None:
        mean, std = source.mean, source.std
    else:
        mean, std = channel_stats(train.images)
    meta = DataMeta(
        name=config.name,
        num_classes=len(raw.classes),
        in_channels=int(raw.train_x.shape[1]),
        input_size=size,
        mean=tuple(mean),
        std=tuple(std),
        classes=raw.classes,
        sizes=(len(train), len(val) if val is not None else 0, len(test)),
    )
    data = Data(config, meta, train, val, test)
    return data.to(device)  # the one move, checked to fit first
