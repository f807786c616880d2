"""Where each dataset comes from: the named sources (files, reader, fetcher, what they hold), the data root,
and `fetch`, which makes a dataset present (a local copy of idx files, else a torchvision download).
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..config import check_choice
from ..errors import AblateError
from ..files import atomic_write
from .readers import (
    IDX_FILES,
    Raw,
    read_cifar,
    read_idx,
    read_imagefolder,
    read_svhn,
    read_synthetic,
    scan_imagefolder,
)

DATA_ENV = "ABLATE_DATA"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGEFOLDER = "imagefolder:"
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


SOURCES: Mapping[str, Source] = MappingProxyType(
    {
        "cifar10": Source(
            "cifar10", "cifar-10-batches-py", (*_CIFAR10_TRAIN, "test_batch", "batches.meta"),
            read=partial(read_cifar, folder="cifar-10-batches-py", train=_CIFAR10_TRAIN, test=("test_batch",),
                         meta="batches.meta", names_key="label_names", label_key="labels"),
            download=partial(_download_torchvision, tv_class="CIFAR10", train={"train": True}),
            mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010),  # ref000's constants
            how_to_get=_fetch_hint("cifar10", ", or unpack cifar-10-python.tar.gz into the data root"),
            num_classes=10, shape=(3, 32, 32), counts=(50000, 10000),
        ),
        "cifar100": Source(
            "cifar100", "cifar-100-python", ("train", "test", "meta"),
            read=partial(read_cifar, folder="cifar-100-python", train=("train",), test=("test",), meta="meta",
                         names_key="fine_label_names", label_key="fine_labels"),
            download=partial(_download_torchvision, tv_class="CIFAR100", train={"train": True}),
            mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
            how_to_get=_fetch_hint("cifar100", ", or unpack cifar-100-python.tar.gz into the data root"),
            num_classes=100, shape=(3, 32, 32), counts=(50000, 10000),
        ),
        "svhn": Source(
            "svhn", "svhn", ("train_32x32.mat", "test_32x32.mat"),
            read=read_svhn,
            download=partial(_download_torchvision, tv_class="SVHN", subdir="svhn", train={"split": "train"},
                             test={"split": "test"}),
            mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),
            how_to_get=_fetch_hint("svhn"),
            num_classes=10, shape=(3, 32, 32), counts=(73257, 26032),
        ),
        "mnist": Source(
            "mnist", "MNIST/raw", IDX_FILES,
            read=partial(read_idx, tv_class="MNIST"),
            download=partial(_download_torchvision, tv_class="MNIST", train={"train": True}),
            mean=(0.1307,), std=(0.3081,),
            how_to_get=_fetch_hint("mnist", ", or `ablate data fetch mnist --from DIR` with its four idx(.gz) files"),
            num_classes=10, shape=(1, 28, 28), counts=(60000, 10000),
        ),
        "fashion-mnist": Source(
            "fashion-mnist", "FashionMNIST/raw", IDX_FILES,
            read=partial(read_idx, tv_class="FashionMNIST"),
            download=partial(_download_torchvision, tv_class="FashionMNIST", train={"train": True}),
            mean=(0.2860,), std=(0.3530,),
            how_to_get="Get it with `make data` or `ablate data fetch fashion-mnist`: offline it is prepared from "
            f"Debian's package (`apt-get install dataset-fashion-mnist`, files in {DEBIAN_FASHION_MNIST}), "
            "online it downloads through torchvision",
            num_classes=10, shape=(1, 28, 28), counts=(60000, 10000),
            local_copy=DEBIAN_FASHION_MNIST,
        ),
        "synthetic": Source(
            "synthetic", None, (), read=read_synthetic, download=None, mean=None, std=None,
            how_to_get="Generated on the fly (10 classes, 3x32x32, 10000 train / 2000 test); nothing to fetch.",
            num_classes=10, shape=(3, 32, 32), counts=(10000, 2000),
        ),
    }
)


def list_datasets() -> list[str]:
    return list(SOURCES)


def get_source(name: str, input_size: int | None = None, resize: str = "pad") -> Source:
    """The Source for a dataset name; `imagefolder:<path>` is scanned, and decoded at `input_size` when given."""
    if name.startswith(IMAGEFOLDER) and name != IMAGEFOLDER:
        path = Path(name[len(IMAGEFOLDER):]).expanduser().resolve()
        num_classes, shape, counts = scan_imagefolder(path)
        return Source(name, str(path), (), read=partial(read_imagefolder, path, input_size, resize), download=None,
                      mean=None, std=None, num_classes=num_classes, shape=shape, counts=counts,
                      how_to_get="Point imagefolder: at a folder of class subfolders (optionally train/ and test/).")
    check_choice("dataset", name, [*SOURCES, f"{IMAGEFOLDER}<path>"])
    return SOURCES[name]


def data_root(root: str | Path | None = None) -> Path:
    """--data-dir, else $ABLATE_DATA, else ./data; refused when it names a file."""
    base = Path(root if root is not None else os.environ.get(DATA_ENV) or "data").expanduser()
    if base.exists() and not base.is_dir():
        raise AblateError(f"data folder {base} is a file, not a folder; --data-dir (or ${DATA_ENV}) must name the "
                          "folder datasets live in.")
    return base


def missing(source: Source, root: Path) -> AblateError:
    return AblateError(
        f"dataset {source.name!r} is not in {source.path(root)} (data root {root}: --data-dir, else ${DATA_ENV}, "
        f"else ./data). {source.how_to_get}"
    )


def fetch(name: str, root: str | Path | None = None, *, local_copy: str | Path | None = None) -> Path:
    """Make dataset `name` present under the data root and return its folder.

    Order: already there; a local copy of idx files (`local_copy`, else the Source's, e.g. Debian's
    Fashion-MNIST); a torchvision download. Failure is an AblateError saying how to get it.
    """
    source, base = get_source(name), data_root(root)
    if source.present(base):
        return source.path(base)
    copy_from = Path(local_copy) if local_copy is not None else source.local_copy
    if local_copy is not None and source.files != IDX_FILES:
        raise AblateError(f"--from works for the idx-file datasets (mnist, fashion-mnist), not {name!r}.")
    if copy_from is not None and _has_idx(copy_from, source.files):
        _copy_idx(copy_from, source.path(base), source.files)
    elif local_copy is not None:
        raise AblateError(f"{local_copy} lacks some of {', '.join(f + '[.gz]' for f in source.files)}.")
    elif source.download is None:
        raise missing(source, base)
    else:
        try:
            source.download(base)
        except Exception as err:  # torchvision raises RuntimeError/URLError/OSError when offline
            raise AblateError(f"could not download {name!r} into {base}: {err}. {source.how_to_get}") from None
    if not source.present(base):
        raise missing(source, base)
    return source.path(base)


def dataset_status(root: str | Path | None = None) -> list[tuple[str, bool, str, str]]:
    """(name, present, folder, how to get it) for every named dataset, for `ablate data list`."""
    base = data_root(root)
    return [(s.name, s.present(base), str(s.path(base)) if s.folder else "-", s.how_to_get) for s in SOURCES.values()]
