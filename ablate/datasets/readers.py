"""On-disk formats -> the full train and test splits as uint8 NCHW tensors: one reader per format.

CIFAR and SVHN are read by ablate's own readers of their public formats, because torchvision re-checks
the md5 of every file on load, which only the official files pass; MNIST-style idx files are read through
torchvision itself; image folders are decoded once with PIL (at input_size when one is set, hence
`fit_size` here).
"""

from __future__ import annotations

import math
import os
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..errors import AblateError
from .splits import stratified_split

if TYPE_CHECKING:  # each reader imports torch itself: the metadata here (IDX_FILES, the folder scan) needs none
    import torch

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
IMAGEFOLDER_TEST_FRACTION = 0.2  # carved (with seed 0, so it never moves) when a folder has no train/test


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
    import torch

    xs, ys = [], []
    for name in names:
        entry = _unpickle(folder / name)
        xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.extend(entry[label_key])
    return torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.int64)


def read_cifar(root: Path, folder: str, train: Sequence[str], test: Sequence[str], meta: str,
                names_key: str, label_key: str) -> Raw:
    """CIFAR-10/100 python batches: dicts with 'data' (N x 3072 uint8, channel-major) and labels."""
    base = root / folder
    train_x, train_y = _read_cifar_batches(base, train, label_key)
    test_x, test_y = _read_cifar_batches(base, test, label_key)
    return Raw(train_x, train_y, test_x, test_y, tuple(_unpickle(base / meta)[names_key]))


def read_idx(root: Path, tv_class: str) -> Raw:
    """MNIST-style idx files under <root>/<tv_class>/raw, through torchvision (no md5 on load)."""
    import torchvision.datasets as tvd

    for name in IDX_FILES:  # a truncated file would fail inside torchvision with a reshape error
        check_idx_length(root / tv_class / "raw" / name, "mnist" if tv_class == "MNIST" else "fashion-mnist")
    cls = getattr(tvd, tv_class)
    train, test = cls(str(root), train=True, download=False), cls(str(root), train=False, download=False)
    return Raw(train.data.unsqueeze(1), train.targets.long(), test.data.unsqueeze(1), test.targets.long(),
               tuple(train.classes))


def check_idx_length(path: Path, dataset: str) -> None:
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


def read_svhn(root: Path) -> Raw:
    """SVHN cropped digits: .mat files with X (32, 32, 3, N) and y in 1..10, where 10 means 0."""
    import torch
    from scipy.io import loadmat

    def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        mat = loadmat(root / "svhn" / f"{name}_32x32.mat")
        x = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)
        return torch.from_numpy(x), torch.from_numpy(mat["y"].astype(np.int64).ravel() % 10)

    (train_x, train_y), (test_x, test_y) = split("train"), split("test")
    return Raw(train_x, train_y, test_x, test_y, tuple(str(d) for d in range(10)))


def read_synthetic(root: Path, n_train: int = 10000, n_test: int = 2000, classes: int = 10, size: int = 32) -> Raw:
    """Procedural CIFAR-shaped data for tests and benchmarks: each class is a smooth colour pattern
    (a shared background plus its own component), each image a shifted, noisy copy. Learnable but
    not trivial; identical on every machine (fixed generator); no files."""
    import torch
    import torch.nn.functional as F

    from ..augment import crop_flip

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
    import torch
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


def read_imagefolder(path: Path, size: int | None, resize: str, root: Path) -> Raw:
    """`path/train` + `path/test` when both exist, else one tree with a fixed test split carved off."""
    import torch

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


def class_images(folder: Path) -> dict[str, list[Path]]:
    """Class folder name -> its image files, in torchvision ImageFolder's order (classes sorted, each folder
    walked sorted, symlinks followed), read from names alone: what `plan` needs, without torch."""
    try:
        classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    except OSError as err:
        raise AblateError(f"imagefolder {folder} cannot be read ({err.strerror}).") from None
    if not classes:
        raise AblateError(f"imagefolder {folder}: no class subfolders (one folder per class, images inside).")
    images = {c: [Path(root) / f for root, _, files in sorted(os.walk(folder / c, followlinks=True))
                  for f in sorted(files) if f.lower().endswith(IMAGE_SUFFIXES)] for c in classes}
    empty = [c for c, files in images.items() if not files]
    if empty:
        raise AblateError(f"imagefolder {folder}: class folder(s) {', '.join(empty)} hold no images "
                          f"({', '.join(IMAGE_SUFFIXES)}); add images or remove the folder(s).")
    return images


def folder_trees(path: Path) -> list[dict[str, list[Path]]]:
    """The class trees of an image folder: [train, test] when it has both subfolders, else [the one tree]."""
    if not path.is_dir():
        raise AblateError(f"imagefolder {path} is not a folder of class subfolders.")
    if (path / "train").is_dir() and (path / "test").is_dir():
        return [class_images(path / "train"), class_images(path / "test")]
    return [class_images(path)]


def scan_imagefolder(path: Path) -> tuple[int, tuple[int, int, int], tuple[int, int]]:
    """Classes, (3, H, W) of the first image, and split sizes, from file names and one image header."""
    from PIL import Image

    trees = folder_trees(path)
    if len(trees[0]) < 2:
        raise AblateError(f"imagefolder {path}: one class folder ({next(iter(trees[0]))!r}); a classifier needs at "
                          "least two (every image would be right by construction).")
    first = next(iter(trees[0].values()))[0]
    try:
        with Image.open(first) as im:
            w, h = im.size
    except (OSError, ValueError, SyntaxError) as err:
        raise AblateError(f"imagefolder {path}: {first} cannot be decoded ({type(err).__name__}); "
                          "remove or replace it.") from None
    sizes = [sum(map(len, tree.values())) for tree in trees]
    if len(trees) == 2:
        counts = (sizes[0], sizes[1])
    else:
        n_test = max(1, round(sizes[0] * IMAGEFOLDER_TEST_FRACTION))
        counts = (sizes[0] - n_test, n_test)
    return len(trees[0]), (3, h, w), counts


def fit_size(images: torch.Tensor, size: int | None, mode: str = "pad") -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, C, size, size): zero padding (centred) or bilinear resampling."""
    import torch
    import torch.nn.functional as F

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
