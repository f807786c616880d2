"""Datasets -> device-resident uint8 tensors, with deterministic subsets and a validation split.

Why tensors and not a DataLoader: the datasets this harness uses fit in memory (CIFAR-10's
training set is 150 MB as uint8), so keeping them on the training device and doing shuffling,
batching and augmentation as batched tensor ops (see augment.py) removes per-image Python and PIL
work from the hot loop; airbench shows this is the main speed lever on a GPU.

Where data lives: `--data-dir`, else $ABLATE_DATA, else ./data. Named datasets are read from the
files torchvision downloads (`ablate data fetch NAME`); Fashion-MNIST can also be prepared offline
from Debian's `dataset-fashion-mnist` package. CIFAR and SVHN are read by this module's own readers
of their public formats, because torchvision re-checks the md5 of every file on load, which only
the official files pass; MNIST-style idx files are read through torchvision itself.

Splits: `train_size` draws that many images from the training split (class proportions kept),
and `val_fraction` of those become the validation split (stratified): `train_size` counts training
plus validation images, so train_size 10000 with val_fraction 0.1 trains on 9000 and validates on
1000. `test_size` subsets the test split. All are functions of `split_seed` only, and the test
subset is drawn from its own generator, so it depends on `test_size` and `split_seed` alone: runs
with another train_size or val_fraction are scored on the very same test images, in the same
order (what a per-image paired comparison needs). Validation decides (tuning, learning-rate
schedule); the test split is for final numbers only.

Cache: decoding is the slow part of loading (Fashion-MNIST: about 1.7 s on a 2-core CPU, most of
it torchvision's imports; an image folder: PIL per image), and N workers on one machine would each
pay it. So the decoded full splits (uint8 images and labels, before any subset, split or resize of
load_data's own) are saved once under `<data root>/.cache/<key>/` ($ABLATE_DATA_CACHE moves it, or
'off' disables it) and memory-mapped by every later load. The key holds the dataset name, what
changes the decoded content (input_size and resize for image folders, which are decoded at that
size) and the size and mtime of every source file, so a changed file is a new key. Entries are
written into a temporary folder and renamed into place, so a concurrent reader sees a whole entry
or none; workers that start together on a cold cache queue on a lock file, so one decodes and the
others read its entry. Old entries are not deleted by themselves: `ablate data cache --clear`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .augment import AUGMENTATIONS, REF000_AUGMENT, Augment
from .config import check_choice, check_range, check_types, config_from_dict
from .device import DataDoesNotFit, check_fits
from .errors import AblateError
from .files import atomic_write
from .rng import derive_seed

DATA_ENV = "ABLATE_DATA"
CACHE_ENV = "ABLATE_DATA_CACHE"  # a folder for the decoded-dataset cache, or 'off'; default <data root>/.cache
CACHE_FOLDER = ".cache"
CACHE_OFF = ("off", "0", "false", "no")
CACHE_VERSION = 1  # bump when a reader's output changes for the same source files
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
RESIZE_MODES = ("pad", "bilinear")
IMAGEFOLDER = "imagefolder:"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
IMAGEFOLDER_TEST_FRACTION = 0.2  # carved (with seed 0, so it never moves) when a folder has no train/test
MIN_INPUT_SIZE = 8
TEST_STREAM = "test-subset"  # keys the test subset's generator (with split_seed), apart from the train draw

# ---------------------------------------------------------------------------------------------
# the dataset side of a recipe
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Which data, how much of it, how it is split and augmented. Simple types only (YAML-able)."""

    name: str = "cifar10"  # a name from SOURCES, or 'imagefolder:<path>'
    train_size: int | None = None  # images drawn from the training split (validation included); None: all
    test_size: int | None = None  # images drawn from the test split; None: all
    val_fraction: float = 0.1  # share of the drawn training images held out for validation
    split_seed: int = 0  # fixes the subsets and the validation split, independent of the run seed
    augment: tuple[str, ...] = REF000_AUGMENT  # any of AUGMENTATIONS; () for none
    crop_padding: int = 4
    rotate_degrees: float = 15.0
    jitter: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.1)  # brightness, contrast, saturation, hue
    input_size: int | None = None  # pad (or resize) every image to this square size; None: native
    resize: str = "pad"  # how to reach input_size: 'pad' (zeros, centred) or 'bilinear'

    def __post_init__(self) -> None:
        check_types(self)
        if not self.name.startswith(IMAGEFOLDER) or self.name == IMAGEFOLDER:
            check_choice("name", self.name, [*SOURCES, f"{IMAGEFOLDER}<path>"])
        check_range("train_size", self.train_size, 1)
        check_range("test_size", self.test_size, 1)
        check_range("val_fraction", self.val_fraction, 0.0, 1.0, high_open=True)
        check_range("split_seed", self.split_seed, 0)
        for op in self.augment:
            check_choice("augment", op, AUGMENTATIONS)
        if len(set(self.augment)) != len(self.augment):
            raise AblateError(f"augment lists an operation twice: {list(self.augment)}.")
        check_range("crop_padding", self.crop_padding, 0)
        check_range("rotate_degrees", self.rotate_degrees, 0.0, 180.0)
        for key, value in zip(("brightness", "contrast", "saturation"), self.jitter[:3]):
            check_range(f"jitter {key}", value, 0.0, 1.0)
        check_range("jitter hue", self.jitter[3], 0.0, 0.5)
        check_range("input_size", self.input_size, MIN_INPUT_SIZE)
        check_choice("resize", self.resize, RESIZE_MODES)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> DataConfig:
        return config_from_dict(cls, d, where)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def augmentation(self) -> Augment:
        return Augment(self.augment, self.crop_padding, self.rotate_degrees, self.jitter)


# ---------------------------------------------------------------------------------------------
# what load_data returns
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# readers: one per on-disk format, each returning the full train and test splits as uint8 NCHW
# ---------------------------------------------------------------------------------------------


class Raw(NamedTuple):
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; allow only what they hold (dicts, lists, str, numpy arrays)."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct  # numpy >= 2
            except ImportError:  # pragma: no cover - numpy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "_codecs" and name == "encode":  # how Python 3 pickles bytes at protocol 2
            import _codecs

            return _codecs.encode
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} from a CIFAR batch file")


def _unpickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return _ArrayUnpickler(f, encoding="latin1").load()


def _read_cifar_batches(folder: Path, names: Sequence[str], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for name in names:
        entry = _unpickle(folder / name)
        xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.extend(entry[label_key])
    return torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.int64)


def _read_cifar(root: Path, folder: str, train: Sequence[str], test: Sequence[str], meta: str,
                names_key: str, label_key: str) -> Raw:
    """CIFAR-10/100 python batches: dicts with 'data' (N x 3072 uint8, channel-major) and labels."""
    base = root / folder
    train_x, train_y = _read_cifar_batches(base, train, label_key)
    test_x, test_y = _read_cifar_batches(base, test, label_key)
    return Raw(train_x, train_y, test_x, test_y, tuple(_unpickle(base / meta)[names_key]))


def _read_idx(root: Path, tv_class: str) -> Raw:
    """MNIST-style idx files under <root>/<tv_class>/raw, through torchvision (no md5 on load)."""
    import torchvision.datasets as tvd

    for name in _IDX_FILES:  # a truncated file would fail inside torchvision with a reshape error
        _check_idx_length(root / tv_class / "raw" / name, "mnist" if tv_class == "MNIST" else "fashion-mnist")
    cls = getattr(tvd, tv_class)
    train, test = cls(str(root), train=True, download=False), cls(str(root), train=False, download=False)
    return Raw(train.data.unsqueeze(1), train.targets.long(), test.data.unsqueeze(1), test.targets.long(),
               tuple(train.classes))


def _check_idx_length(path: Path, dataset: str) -> None:
    """An idx file holds exactly its header's dimensions' bytes (ubyte data): anything shorter is truncated."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(4)
            if len(header) < 4:
                raise AblateError(f"{path}: not an idx file (only {len(header)} bytes); fetch it again "
                                  f"(`ablate data fetch {dataset}`).")
            ndim = header[3]
            dims = struct.unpack(f">{ndim}I", fh.read(4 * ndim))
    except FileNotFoundError:
        return  # torchvision names the missing file
    except struct.error:
        raise AblateError(f"{path}: truncated in its header; fetch it again.") from None
    expected = 4 + 4 * ndim + math.prod(dims)
    actual = path.stat().st_size
    if actual != expected:
        raise AblateError(f"{path}: {actual:,} bytes, but its header promises {expected:,} "
                          f"({'x'.join(map(str, dims))}); the file is "
                          f"{'truncated' if actual < expected else 'damaged'}: "
                          f"delete it and fetch it again (`ablate data fetch {dataset}`).")


def _read_svhn(root: Path) -> Raw:
    """SVHN cropped digits: .mat files with X (32, 32, 3, N) and y in 1..10, where 10 means 0."""
    from scipy.io import loadmat

    def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        mat = loadmat(root / "svhn" / f"{name}_32x32.mat")
        x = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)
        return torch.from_numpy(x), torch.from_numpy(mat["y"].astype(np.int64).ravel() % 10)

    (train_x, train_y), (test_x, test_y) = split("train"), split("test")
    return Raw(train_x, train_y, test_x, test_y, tuple(str(d) for d in range(10)))


def _read_synthetic(root: Path, n_train: int = 10000, n_test: int = 2000, classes: int = 10, size: int = 32) -> Raw:
    """Procedural CIFAR-shaped data for tests and benchmarks: each class is a smooth colour pattern
    (a shared background plus its own component), each image a shifted, noisy copy. Learnable but
    not trivial; identical on every machine (fixed generator); no files."""
    from .augment import crop_flip

    gen = torch.Generator().manual_seed(20240601)
    fields = F.interpolate(torch.rand(classes + 1, 3, 4, 4, generator=gen), size=(size, size), mode="bicubic",
                           align_corners=False)
    protos = ((0.5 * fields[:1] + 0.5 * fields[1:]).clamp(0, 1) * 255).round().to(torch.uint8)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = (torch.arange(n) % classes)[torch.randperm(n, generator=gen)]
        dy, dx = torch.randint(0, 7, (2, n), generator=gen)
        x = crop_flip(protos[y], 3, dy, dx, None).float()
        x += 64.0 * torch.randn(x.shape, generator=gen)
        return x.clamp_(0, 255).round_().to(torch.uint8), y

    (train_x, train_y), (test_x, test_y) = make(n_train), make(n_test)
    return Raw(train_x, train_y, test_x, test_y, tuple(f"class{c}" for c in range(classes)))


def _decode_folder(folder: Path, size: int | None, resize: str) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Decode every image of a class-subfolder tree once (PIL, at load time, not per step)."""
    import torchvision.datasets as tvd
    from PIL import Image

    tree = tvd.ImageFolder(str(folder))
    if not tree.samples:
        raise AblateError(f"imagefolder {folder} has no images in class subfolders.")
    images, shapes = [], set()
    for path, _ in tree.samples:
        try:
            with Image.open(path) as im:
                x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
        except (OSError, ValueError, SyntaxError) as err:  # PIL: UnidentifiedImageError, truncated data
            raise AblateError(f"imagefolder {folder}: {path} cannot be decoded ({type(err).__name__}); "
                              "remove or replace it.") from None
        shapes.add(tuple(x.shape[1:]))
        images.append(fit_size(x[None], size, resize)[0] if size else x)
    if size is None and len(shapes) > 1:
        raise AblateError(f"imagefolder {folder}: images have different sizes {sorted(shapes)[:3]}...; "
                          f"set input_size (and resize) so they can be batched.")
    return torch.stack(images), torch.tensor(tree.targets, dtype=torch.int64), tuple(tree.classes)


def _read_imagefolder(path: Path, size: int | None, resize: str, root: Path) -> Raw:
    """`path/train` + `path/test` when both exist, else one tree with a fixed test split carved off."""
    if (path / "train").is_dir() and (path / "test").is_dir():
        train_x, train_y, classes = _decode_folder(path / "train", size, resize)
        test_x, test_y, test_classes = _decode_folder(path / "test", size, resize)
        if test_classes != classes:
            raise AblateError(f"imagefolder {path}: train and test have different class folders.")
        return Raw(train_x, train_y, test_x, test_y, classes)
    x, y, classes = _decode_folder(path, size, resize)
    n_test = max(1, round(len(y) * IMAGEFOLDER_TEST_FRACTION))
    test, train = stratified_split(y, n_test, torch.Generator().manual_seed(0))
    return Raw(x[train], y[train], x[test], y[test], classes)


# ---------------------------------------------------------------------------------------------
# fetchers
# ---------------------------------------------------------------------------------------------


def _download_torchvision(root: Path, tv_class: str, subdir: str = "", **splits: Any) -> None:
    """Let torchvision download (and md5-check) a dataset; `splits` are its constructor arguments."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, tv_class)
    target = root / subdir if subdir else root
    for kwargs in splits.values():
        cls(str(target), download=True, **kwargs)


def _copy_idx(source_dir: Path, raw_dir: Path, names: Sequence[str]) -> None:
    """Decompress `<name>.gz` (or copy `<name>`) from `source_dir` into torchvision's raw folder."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        gz, plain = source_dir / f"{name}.gz", source_dir / name
        atomic_write(raw_dir / name, lambda tmp: _decompress(gz, tmp) if gz.is_file() else shutil.copyfile(plain, tmp))


def _decompress(gz: Path, out_path: Path) -> None:
    with gzip.open(gz, "rb") as src, open(out_path, "wb") as out:
        shutil.copyfileobj(src, out)


def _has_idx(source_dir: Path, names: Sequence[str]) -> bool:
    return all((source_dir / f"{n}.gz").is_file() or (source_dir / n).is_file() for n in names)


# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


@dataclass(frozen=True)
class Source:
    """How one dataset is found, read and fetched, and what it holds (known without reading it)."""

    name: str
    folder: str | None  # under the data root (absolute for imagefolder); None: generated, nothing on disk
    files: tuple[str, ...]  # under folder; all present means ready to read
    read: Callable[[Path], Raw]  # gets the data root
    download: Callable[[Path], None] | None  # gets the data root
    mean: tuple[float, ...] | None  # None: computed from the training images
    std: tuple[float, ...] | None
    how_to_get: str
    num_classes: int
    shape: tuple[int, int, int]  # native (C, H, W)
    counts: tuple[int, int]  # full train and test split sizes
    local_copy: Path | None = None  # a folder of idx(.gz) files a system package installs

    def path(self, root: Path) -> Path:
        return root / self.folder if self.folder is not None else root

    def present(self, root: Path) -> bool:
        if self.folder is None:
            return True
        base = self.path(root)
        return base.is_dir() and all((base / f).is_file() for f in self.files)


def _fetch_hint(name: str, extra: str = "") -> str:
    return f"Get it with `ablate data fetch {name}` (downloads through torchvision; needs internet){extra}."


SOURCES: Mapping[str, Source] = MappingProxyType(
    {
        "cifar10": Source(
            "cifar10", "cifar-10-batches-py", (*_CIFAR10_TRAIN, "test_batch", "batches.meta"),
            read=partial(_read_cifar, folder="cifar-10-batches-py", train=_CIFAR10_TRAIN, test=("test_batch",),
                         meta="batches.meta", names_key="label_names", label_key="labels"),
            download=partial(_download_torchvision, tv_class="CIFAR10", train={"train": True}),
            mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010),  # ref000's constants
            how_to_get=_fetch_hint("cifar10", ", or unpack cifar-10-python.tar.gz into the data root"),
            num_classes=10, shape=(3, 32, 32), counts=(50000, 10000),
        ),
        "cifar100": Source(
            "cifar100", "cifar-100-python", ("train", "test", "meta"),
            read=partial(_read_cifar, folder="cifar-100-python", train=("train",), test=("test",), meta="meta",
                         names_key="fine_label_names", label_key="fine_labels"),
            download=partial(_download_torchvision, tv_class="CIFAR100", train={"train": True}),
            mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
            how_to_get=_fetch_hint("cifar100", ", or unpack cifar-100-python.tar.gz into the data root"),
            num_classes=100, shape=(3, 32, 32), counts=(50000, 10000),
        ),
        "svhn": Source(
            "svhn", "svhn", ("train_32x32.mat", "test_32x32.mat"),
            read=_read_svhn,
            download=partial(_download_torchvision, tv_class="SVHN", subdir="svhn", train={"split": "train"},
                             test={"split": "test"}),
            mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),
            how_to_get=_fetch_hint("svhn"),
            num_classes=10, shape=(3, 32, 32), counts=(73257, 26032),
        ),
        "mnist": Source(
            "mnist", "MNIST/raw", _IDX_FILES,
            read=partial(_read_idx, tv_class="MNIST"),
            download=partial(_download_torchvision, tv_class="MNIST", train={"train": True}),
            mean=(0.1307,), std=(0.3081,),
            how_to_get=_fetch_hint("mnist", ", or `ablate data fetch mnist --from DIR` with its four idx(.gz) files"),
            num_classes=10, shape=(1, 28, 28), counts=(60000, 10000),
        ),
        "fashion-mnist": Source(
            "fashion-mnist", "FashionMNIST/raw", _IDX_FILES,
            read=partial(_read_idx, tv_class="FashionMNIST"),
            download=partial(_download_torchvision, tv_class="FashionMNIST", train={"train": True}),
            mean=(0.2860,), std=(0.3530,),
            how_to_get="Get it with `make data` or `ablate data fetch fashion-mnist`: offline it is prepared from "
            f"Debian's package (`apt-get install dataset-fashion-mnist`, files in {DEBIAN_FASHION_MNIST}), "
            "online it downloads through torchvision",
            num_classes=10, shape=(1, 28, 28), counts=(60000, 10000),
            local_copy=DEBIAN_FASHION_MNIST,
        ),
        "synthetic": Source(
            "synthetic", None, (), read=_read_synthetic, download=None, mean=None, std=None,
            how_to_get="Generated on the fly (10 classes, 3x32x32, 10000 train / 2000 test); nothing to fetch.",
            num_classes=10, shape=(3, 32, 32), counts=(10000, 2000),
        ),
    }
)


def list_datasets() -> list[str]:
    return list(SOURCES)


def _scan_imagefolder(path: Path) -> tuple[int, tuple[int, int, int], tuple[int, int]]:
    """Classes, (3, H, W) of the first image, and split sizes, from file names and one image header."""
    import torchvision.datasets as tvd
    from PIL import Image

    if not path.is_dir():
        raise AblateError(f"imagefolder {path} is not a folder of class subfolders.")
    layout = (path / "train").is_dir() and (path / "test").is_dir()
    try:
        trees = [tvd.ImageFolder(str(path / s)) for s in ("train", "test")] if layout else [tvd.ImageFolder(str(path))]
    except FileNotFoundError as err:  # no class folders, or a class folder without images
        raise AblateError(f"imagefolder {path}: {err}") from None
    if len(trees[0].classes) < 2:
        raise AblateError(f"imagefolder {path}: one class folder ({trees[0].classes[0]!r}); a classifier needs at "
                          "least two (every image would be right by construction).")
    first = trees[0].samples[0][0]
    try:
        with Image.open(first) as im:
            w, h = im.size
    except (OSError, ValueError, SyntaxError) as err:
        raise AblateError(f"imagefolder {path}: {first} cannot be decoded ({type(err).__name__}); "
                          "remove or replace it.") from None
    if layout:
        counts = (len(trees[0].samples), len(trees[1].samples))
    else:
        n_test = max(1, round(len(trees[0].samples) * IMAGEFOLDER_TEST_FRACTION))
        counts = (len(trees[0].samples) - n_test, n_test)
    return len(trees[0].classes), (3, h, w), counts


def check_imagefolder(config: DataConfig) -> None:
    """Every image of an imagefolder dataset decodes, and they share one size unless input_size sets one:
    checked by `plan` and before a run writes anything (a corrupt or odd-sized image found later fails
    every item, with the reason only in storage). Reads each file once, decodes nothing into memory."""
    from PIL import Image

    if not config.name.startswith(IMAGEFOLDER):
        return
    path = Path(config.name[len(IMAGEFOLDER):]).expanduser().resolve()
    sizes: dict[tuple[int, int], str] = {}
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    for file in files:
        try:
            with Image.open(file) as im:
                im.verify()
                sizes.setdefault(im.size, str(file))
        except (OSError, ValueError, SyntaxError) as err:
            raise AblateError(f"imagefolder {path}: {file} cannot be decoded ({type(err).__name__}); remove or "
                              "replace it.") from None
    if len(sizes) > 1 and config.input_size is None:
        shown = "; ".join(f"{w}x{h} (e.g. {f})" for (w, h), f in list(sizes.items())[:3])
        raise AblateError(f"imagefolder {path}: images have {len(sizes)} different sizes ({shown}); set "
                          "dataset.input_size (and resize) so they can be batched.")


def get_source(name: str, input_size: int | None = None, resize: str = "pad") -> Source:
    """The Source for a dataset name; `imagefolder:<path>` is scanned, and decoded at `input_size` when given."""
    if name.startswith(IMAGEFOLDER) and name != IMAGEFOLDER:
        path = Path(name[len(IMAGEFOLDER):]).expanduser().resolve()
        num_classes, shape, counts = _scan_imagefolder(path)
        return Source(name, str(path), (), read=partial(_read_imagefolder, path, input_size, resize), download=None,
                      mean=None, std=None, num_classes=num_classes, shape=shape, counts=counts,
                      how_to_get="Point imagefolder: at a folder of class subfolders (optionally train/ and test/).")
    check_choice("dataset", name, [*SOURCES, f"{IMAGEFOLDER}<path>"])
    return SOURCES[name]


@dataclass(frozen=True)
class DatasetInfo:
    """What a config will give, known without loading the data (for plans and cost estimates)."""

    name: str
    num_classes: int
    in_channels: int
    input_size: int
    train_count: int  # images trained on per epoch
    val_count: int
    test_count: int


def _split_counts(drawn: int, val_fraction: float) -> tuple[int, int]:
    """(train, val) image counts when val_fraction of `drawn` training images is held out."""
    n_val = round(drawn * val_fraction)
    if val_fraction > 0 and n_val >= drawn:
        raise AblateError(f"val_fraction {val_fraction} of {drawn} training images leaves {drawn - n_val} to train "
                          "on; use a smaller fraction or more images.")
    if val_fraction > 0 and n_val < 1:
        raise AblateError(f"val_fraction {val_fraction} of {drawn} training images leaves {n_val} for validation; "
                          "use more images or a larger fraction.")
    return drawn - n_val, n_val


def dataset_info(config: DataConfig) -> DatasetInfo:
    source = get_source(config.name)
    c, h, w = source.shape
    drawn = config.train_size if config.train_size is not None else source.counts[0]
    train_count, val_count = _split_counts(drawn, config.val_fraction)
    return DatasetInfo(config.name, source.num_classes, c, config.input_size or max(h, w), train_count, val_count,
                       config.test_size if config.test_size is not None else source.counts[1])


def data_root(root: str | Path | None = None) -> Path:
    """--data-dir, else $ABLATE_DATA, else ./data; refused when it names a file."""
    base = Path(root if root is not None else os.environ.get(DATA_ENV) or "data").expanduser()
    if base.exists() and not base.is_dir():
        raise AblateError(f"data folder {base} is a file, not a folder; --data-dir (or ${DATA_ENV}) must name the "
                          "folder datasets live in.")
    return base


def _missing(source: Source, root: Path) -> AblateError:
    return AblateError(
        f"dataset {source.name!r} is not in {source.path(root)} (data root {root}: --data-dir, else ${DATA_ENV}, "
        f"else ./data). {source.how_to_get}"
    )


def require_present(config: DataConfig, root: str | Path | None = None) -> None:
    """Fail fast, before a study writes anything, when the dataset's files are not there or an idx file is
    truncated (its header promises more bytes than it holds)."""
    source, base = get_source(config.name, config.input_size, config.resize), data_root(root)
    if not source.present(base):
        raise _missing(source, base)
    if source.files == _IDX_FILES:
        for name in _IDX_FILES:
            _check_idx_length(source.path(base) / name, config.name)


def fetch(name: str, root: str | Path | None = None, *, local_copy: str | Path | None = None) -> Path:
    """Make dataset `name` present under the data root and return its folder.

    Order: already there; a local copy of idx files (`local_copy`, else the Source's, e.g. Debian's
    Fashion-MNIST); a torchvision download. Failure is an AblateError saying how to get it.
    """
    source, base = get_source(name), data_root(root)
    if source.present(base):
        return source.path(base)
    copy_from = Path(local_copy) if local_copy is not None else source.local_copy
    if local_copy is not None and source.files != _IDX_FILES:
        raise AblateError(f"--from works for the idx-file datasets (mnist, fashion-mnist), not {name!r}.")
    if copy_from is not None and _has_idx(copy_from, source.files):
        _copy_idx(copy_from, source.path(base), source.files)
    elif local_copy is not None:
        raise AblateError(f"{local_copy} lacks some of {', '.join(f + '[.gz]' for f in source.files)}.")
    elif source.download is None:
        raise _missing(source, base)
    else:
        try:
            source.download(base)
        except Exception as err:  # torchvision raises RuntimeError/URLError/OSError when offline
            raise AblateError(f"could not download {name!r} into {base}: {err}. {source.how_to_get}") from None
    if not source.present(base):
        raise _missing(source, base)
    return source.path(base)


# ---------------------------------------------------------------------------------------------
# the decoded-dataset cache (see the module docstring)
# ---------------------------------------------------------------------------------------------

_CACHED_TENSORS = ("train_x", "train_y", "test_x", "test_y")


def cache_root(root: str | Path | None = None) -> Path | None:
    """Where decoded datasets are cached: $ABLATE_DATA_CACHE (a folder, or 'off'), else <data root>/.cache."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in CACHE_OFF:
        return None
    return Path(value).expanduser() if value else data_root(root) / CACHE_FOLDER


def _source_files(source: Source, root: Path) -> list[Path]:
    """The files a reader decodes: the Source's list, or every file under an image folder."""
    base = source.path(root)
    if source.files:
        return [base / f for f in source.files]
    return sorted(p for p in base.rglob("*") if p.is_file())


def _cache_key(config: DataConfig, source: Source, root: Path) -> dict[str, Any]:
    """Everything the decoded content depends on. Not split_seed: the cache holds the full splits
    (an image folder's carved test split uses a fixed seed of its own)."""
    base = source.path(root)
    sized = source.name.startswith(IMAGEFOLDER)  # decoded at input_size; named datasets are decoded natively
    files = []
    for path in _source_files(source, root):
        st = path.stat()
        files.append([str(path.relative_to(base)), st.st_size, st.st_mtime_ns])
    return {"version": CACHE_VERSION, "name": config.name, "input_size": config.input_size if sized else None,
            "resize": config.resize if sized and config.input_size else None, "files": files}


def _cache_slot(config: DataConfig, source: Source, root: Path) -> tuple[Path, dict[str, Any]] | None:
    """(cache folder, key) for this config's decoded data; None when there is nothing to cache
    (generated data, cache off) or the source files are not there."""
    folder = cache_root(root)
    if folder is None or source.folder is None or not source.present(root):
        return None
    key = _cache_key(config, source, root)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    label = "imagefolder-" + Path(source.folder).name if source.name.startswith(IMAGEFOLDER) else source.name
    return folder / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', label)}-{digest}", key


def cache_entry(config: DataConfig, root: str | Path | None = None) -> Path | None:
    """The cache folder `load_data(config, root)` reads or writes (it may not exist yet); None: no caching."""
    slot = _cache_slot(config, get_source(config.name, config.input_size, config.resize), data_root(root))
    return slot[0] if slot is not None else None


def _read_cache(entry: Path) -> Raw | None:
    """The cached Raw, memory-mapped (pages shared by every worker on the machine); None if unreadable."""
    try:
        tensors = torch.load(entry / "tensors.pt", mmap=True, weights_only=True)
        classes = json.loads((entry / "meta.json").read_text())["classes"]
        return Raw(*(tensors[k] for k in _CACHED_TENSORS), tuple(classes))
    except (OSError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError):
        return None


def _write_cache(entry: Path, raw: Raw, key: dict[str, Any]) -> None:
    """Write into a temporary sibling folder, then rename: a reader sees a whole entry or none. A
    concurrent writer that renamed first wins; a cache that cannot be written is skipped."""
    tmp: Path | None = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        with open(tmp / "tensors.pt", "wb") as f:
            torch.save({k: getattr(raw, k).contiguous() for k in _CACHED_TENSORS}, f)
            f.flush()
            os.fsync(f.fileno())
        (tmp / "meta.json").write_text(json.dumps({"classes": list(raw.classes), "key": key}, indent=1))
        os.rename(tmp, entry)
    except OSError:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _decode_lock(entry: Path) -> Iterator[None]:
    """One decoder per cache entry at a time (an flock on a lock file beside it: released when its
    process dies; where the filesystem refuses locks, processes simply decode side by side)."""
    try:
        import fcntl

        lock = open(entry.parent / f".{entry.name}.lock", "a")
    except (ImportError, OSError):
        yield
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError:
            pass
        yield


def read_raw(config: DataConfig, root: str | Path | None = None, source: Source | None = None) -> Raw:
    """The full decoded splits: from the cache when it holds exactly these source files, else decoded
    (and cached for the next load)."""
    base = data_root(root)
    source = source or get_source(config.name, config.input_size, config.resize)
    slot = _cache_slot(config, source, base)
    if slot is None:
        return source.read(base)
    entry, key = slot  # the key is taken before decoding: a file changed meanwhile misses next time
    raw = _read_cache(entry) if entry.is_dir() else None
    if raw is not None:
        return raw
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return source.read(base)  # a cache folder that cannot be made: decode, cache nothing
    with _decode_lock(entry):
        raw = _read_cache(entry) if entry.is_dir() else None  # written while we waited for the lock
        if raw is None:
            raw = source.read(base)
            _write_cache(entry, raw, key)
    return raw


def cache_entries(root: str | Path | None = None) -> list[tuple[Path, int, str]]:
    """(folder, bytes, dataset name) of every cache entry, for `ablate data cache`."""
    folder = cache_root(root)
    if folder is None or not folder.is_dir():
        return []
    rows = []
    for entry in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            name = str(json.loads((entry / "meta.json").read_text())["key"]["name"])
        except (OSError, KeyError, ValueError):
            name = "?"
        rows.append((entry, sum(p.stat().st_size for p in entry.iterdir() if p.is_file()), name))
    return rows


# ---------------------------------------------------------------------------------------------
# subsets, splits, sizes, statistics
# ---------------------------------------------------------------------------------------------


def stratified_split(labels: torch.Tensor, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick `n` indexes keeping class proportions (largest-remainder rounding); return (picked, rest),
    each sorted. Deterministic for a given generator state."""
    classes, counts = labels.unique(return_counts=True)
    exact = counts.double() * n / len(labels)
    quota = exact.floor().long()
    short = n - int(quota.sum())
    if short:
        quota[torch.argsort(quota.double() - exact, stable=True)[:short]] += 1
    picked, rest = [], []
    for c, q in zip(classes.tolist(), quota.tolist()):
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        picked.append(idx[:q])
        rest.append(idx[q:])
    return torch.cat(picked).sort().values, torch.cat(rest).sort().values


def _subset(labels: torch.Tensor, size: int | None, key: str, gen: torch.Generator) -> torch.Tensor:
    n, k = len(labels), int(labels.unique().numel())
    if size is None or size == n:
        return torch.arange(n)
    if not k <= size <= n:
        raise AblateError(f"{key} must be between {k} (one image per class) and {n} (all), got {size}.")
    return stratified_split(labels, size, gen)[0]


def fit_size(images: torch.Tensor, size: int | None, mode: str = "pad") -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, C, size, size): zero padding (centred) or bilinear resampling."""
    h, w = images.shape[-2:]
    if size is None or (h, w) == (size, size):
        return images
    if mode == "pad":
        if h > size or w > size:
            raise AblateError(f"cannot pad {h}x{w} images down to input_size {size}; use resize 'bilinear'.")
        top, left = (size - h) // 2, (size - w) // 2
        return F.pad(images, (left, size - w - left, top, size - h - top))
    out = [
        F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        .round_().clamp_(0, 255).to(torch.uint8)
        for chunk in images.split(4096)
    ]
    return torch.cat(out)


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


# ---------------------------------------------------------------------------------------------
# the one entry point
# ---------------------------------------------------------------------------------------------


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
            raise _missing(source, base)
        fetch(config.name, base)
    raw = read_raw(config, base, source)
    gen = torch.Generator().manual_seed(config.split_seed)
    drawn = _subset(raw.train_y, config.train_size, "train_size", gen)
    n_val = _split_counts(len(drawn), config.val_fraction)[1]
    val_pos, fit_pos = stratified_split(raw.train_y[drawn], n_val, gen) if n_val else (None, torch.arange(len(drawn)))
    test_idx = _subset(raw.test_y, config.test_size, "test_size",
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


def dataset_status(root: str | Path | None = None) -> list[tuple[str, bool, str, str]]:
    """(name, present, folder, how to get it) for every named dataset, for `ablate data list`."""
    base = data_root(root)
    return [(s.name, s.present(base), str(s.path(base)) if s.folder else "-", s.how_to_get) for s in SOURCES.values()]
