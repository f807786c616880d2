"""The dataset section of a study or a `train` command: which data, how much, how split and augmented."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..config import check_choice, check_range, check_types, config_from_dict
from ..errors import AblateError
from ..names import AUGMENTATIONS, REF000_AUGMENT
from .sources import IMAGEFOLDER, SOURCES

if TYPE_CHECKING:
    from ..augment import Augment

RESIZE_MODES = ("pad", "bilinear")
MIN_INPUT_SIZE = 8


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
        from ..augment import Augment  # torch: only a run augments

        return Augment(self.augment, self.crop_padding, self.rotate_degrees, self.jitter)
