"""What a dataset config gives, known before any image is decoded: counts and shape (`dataset_info`), and
whether its files are there and readable (`require_present`, `check_imagefolder`), so a study fails before
it writes anything."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import AblateError
from ..memory import check_baselines_fit, check_host_batch, dataset_bytes
from .config import DataConfig
from .readers import IDX_FILES, check_idx_length, folder_trees
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

    @property
    def shape(self) -> tuple[int, int, int]:
        """One image as the models see it: channels x input_size x input_size."""
        return self.in_channels, self.input_size, self.input_size

    @property
    def images(self) -> int:
        """Every image the config loads: training, validation and test."""
        return self.train_count + self.val_count + self.test_count


def dataset_info(config: DataConfig) -> DatasetInfo:
    source = get_source(config.name)
    c, h, w = source.shape
    drawn = config.train_size if config.train_size is not None else source.counts[0]
    train_count, val_count = split_counts(drawn, config.val_fraction)
    return DatasetInfo(config.name, source.num_classes, c, config.input_size or max(h, w), train_count, val_count,
                       config.test_size if config.test_size is not None else source.counts[1])


def check_dataset_sizes(config: DataConfig, where: str) -> DatasetInfo:
    """Requested image counts against what the dataset holds, from its metadata alone (no image is read).

    Raises AblateError naming `where` + the key, the requested and the available count, so a study
    asking for 100,000 of Fashion-MNIST's 60,000 training images fails before anything is written.
    """
    source = get_source(config.name)
    for key, split, size, available in (("train_size", "training", config.train_size, source.counts[0]),
                                        ("test_size", "test", config.test_size, source.counts[1])):
        if size is not None and not source.num_classes <= size <= available:
            raise AblateError(f"{where}{key}: {size} images requested, but {config.name} has {available} {split} "
                              f"images; allowed: {source.num_classes} (one per class) to {available}.")
    try:
        return dataset_info(config)  # raises when val_fraction leaves no image to train or validate on
    except AblateError as err:
        raise AblateError(f"{where}val_fraction: {err}") from None


def check_batch_size(batch_size: int, info: DatasetInfo, where: str) -> None:
    """A batch larger than the images trained on per epoch is refused, not clamped: a silently smaller batch
    would change the recipe that the report prints. `where` names the setting ('--batch-size', or
    'FILE: recipe.batch_size:')."""
    if batch_size > info.train_count:
        raise AblateError(f"{where} {batch_size} is larger than the {info.train_count} images trained on per "
                          f"epoch ({info.name}: train_size minus validation); use at most {info.train_count}, or "
                          "more training images.")


def check_host_fits(info: DatasetInfo, batch_size: int, where: str, remedy: str, *, backbones: Iterable[str] = (),
                    device: str = "cpu", infer_batches: tuple[int, ...] = ()) -> None:
    """Before torch: the dataset at its input size (decoded and sized on the host, then moved) and one float
    batch must fit in host memory, so an input_size of 100000 is refused with the figures, not by the kernel;
    and, where the device's memory is the host's, so must each built-in backbone's training step and
    inference passes (`memory.check_baselines_fit`: a lower bound of every arm on it)."""
    held = dataset_bytes(info.images, info.shape)
    check_host_batch(info.shape, batch_size, where, remedy, held=held)
    check_baselines_fit(backbones, info.shape, device, train_batch=batch_size, infer_batches=infer_batches, held=held,
                        where=where, remedy=remedy)


def require_present(config: DataConfig, root: str | Path | None = None, *, missing_ok: bool = False) -> None:
    """Fail fast, before a study writes anything, when the dataset's files are not there (unless `missing_ok`:
    a command that fetches them) or an idx file is truncated (its header promises more bytes than it holds)."""
    source, base = get_source(config.name, config.input_size, config.resize), data_root(root)
    if not source.present(base):
        if missing_ok:
            return
        raise missing(source, base)
    if source.files == IDX_FILES:
        for name in IDX_FILES:
            check_idx_length(source.path(base) / name, config.name)


def check_imagefolder(config: DataConfig) -> None:
    """Every image of an imagefolder dataset decodes, and they share one size unless input_size sets one:
    checked by `plan` and before a run writes anything (a corrupt or odd-sized image found later fails
    every item, with the reason only in storage). Each image is decoded in full, one at a time: PIL's
    verify() reads only the chunks' checksums and passes a PNG whose compressed data is scrambled."""
    from PIL import Image

    if not config.name.startswith(IMAGEFOLDER):
        return
    path = Path(config.name[len(IMAGEFOLDER):]).expanduser().resolve()
    sizes: dict[tuple[int, int], Path] = {}
    for file in (f for tree in folder_trees(path) for files in tree.values() for f in files):
        try:
            with Image.open(file) as im:
                im.load()
                sizes.setdefault((im.height, im.width), file)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise AblateError(f"imagefolder {path}: {file} cannot be decoded ({type(err).__name__}: "
                              f"{str(err)[:80]}); remove or replace it.") from None
    if len(sizes) > 1 and config.input_size is None:
        shown = "; ".join(f"{h}x{w} (e.g. {f})" for (h, w), f in list(sizes.items())[:3])
        raise AblateError(f"imagefolder {path}: images have {len(sizes)} different sizes, height x width "
                          f"({shown}); set dataset.input_size (and resize) so they can be batched.")
