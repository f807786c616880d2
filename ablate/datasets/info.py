"""What a dataset config gives, known before any image is decoded: counts and shape (`dataset_info`), and
whether its files are there and readable (`require_present`, `check_imagefolder`), so a study fails before
it writes anything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import AblateError
from .config import DataConfig
from .readers import IDX_FILES, IMAGE_SUFFIXES, check_idx_length
from .sources import IMAGEFOLDER, data_root, get_source, missing
from .splits import split_counts


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


def dataset_info(config: DataConfig) -> DatasetInfo:
    source = get_source(config.name)
    c, h, w = source.shape
    drawn = config.train_size if config.train_size is not None else source.counts[0]
    train_count, val_count = split_counts(drawn, config.val_fraction)
    return DatasetInfo(config.name, source.num_classes, c, config.input_size or max(h, w), train_count, val_count,
                       config.test_size if config.test_size is not None else source.counts[1])


def require_present(config: DataConfig, root: str | Path | None = None) -> None:
    """Fail fast, before a study writes anything, when the dataset's files are not there or an idx file is
    truncated (its header promises more bytes than it holds)."""
    source, base = get_source(config.name, config.input_size, config.resize), data_root(root)
    if not source.present(base):
        raise missing(source, base)
    if source.files == IDX_FILES:
        for name in IDX_FILES:
            check_idx_length(source.path(base) / name, config.name)


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
