"""Datasets -> device-resident uint8 tensors, with deterministic subsets and a validation split.

Where data lives: `--data-dir`, else $ABLATE_DATA, else ./data. Named datasets are read from the files
torchvision downloads (`ablate data fetch NAME`); Fashion-MNIST can also be prepared offline from Debian's
`dataset-fashion-mnist` package.

Splits: `train_size` draws that many images from the training split (class proportions kept), and
`val_fraction` of those become the validation split (stratified): `train_size` counts training plus
validation images, so train_size 10000 with val_fraction 0.1 trains on 9000 and validates on 1000.
`test_size` subsets the test split. All are functions of `split_seed` only, and the test subset is drawn
from its own generator, so it depends on `test_size` and `split_seed` alone: runs with another train_size
or val_fraction are scored on the very same test images, in the same order (what a per-image paired
comparison needs). Validation decides (tuning, learning-rate schedule); the test split is for final
numbers only.

One module per step: `config` (the dataset section), `sources` (where each dataset comes from, `fetch`),
`readers` (one per on-disk format), `cache` (decoded splits, memory-mapped), `splits` (the draws), `info`
(what a config gives before loading), `load` (`load_data` and what it returns). Other modules import the
names below from `ablate.datasets`.
"""

from ..lazy import lazy_exports

_LAZY = {  # name -> its submodule: imported on first use, so a refusal that needs only sizes loads no torch
    **dict.fromkeys(("CACHE_ENV", "cache_entries", "cache_entry", "cache_root", "read_raw"), ".cache"),
    **dict.fromkeys(("MIN_INPUT_SIZE", "RESIZE_MODES", "DataConfig"), ".config"),
    **dict.fromkeys(("DatasetInfo", "check_batch_size", "check_dataset_sizes", "check_host_fits", "check_imagefolder",
                     "dataset_info", "require_present"), ".info"),
    **dict.fromkeys(("Data", "DataMeta", "Split", "channel_stats", "load_data"), ".load"),
    **dict.fromkeys(("Raw", "fit_size"), ".readers"),
    **dict.fromkeys(("DATA_ENV", "IMAGEFOLDER", "SOURCES", "Source", "data_root", "dataset_status", "fetch",
                     "get_source", "list_datasets"), ".sources"),
    "stratified_split": ".splits",
}
__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
