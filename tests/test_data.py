"""Data layer: every dataset path on tiny files in the real formats, splits, sizes, augmentation."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from ablate.augment import (
    Augment,
    Normalize,
    adjust_hue,
    color_jitter,
    crop_flip,
    random_crop_flip,
    rotate,
    to_unit_float,
)
from ablate.datasets import (
    DataConfig,
    dataset_info,
    dataset_status,
    fetch,
    fit_size,
    get_source,
    load_data,
    stratified_split,
)
from ablate.errors import AblateError

from .conftest import CIFAR10_NAMES, pattern, write_cifar100, write_imagefolder, write_svhn


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some tests load image folders with the default data root (./data): keep their decoded-dataset
    cache entries out of the project's data folder (the cache itself is tested in test_cache.py)."""
    monkeypatch.setenv("ABLATE_DATA_CACHE", str(tmp_path / "dataset-cache"))

# ------------------------------------------------------------------------------ DataConfig


def test_dataconfig_from_dict_converts_yaml_values() -> None:
    cfg = DataConfig.from_dict({"name": "synthetic", "augment": ["crop", "flip"], "val_fraction": "2e-1",
                                "jitter": [0.1, 0.1, 0.1, 0.05]})
    assert cfg.augment == ("crop", "flip") and cfg.val_fraction == pytest.approx(0.2)
    assert cfg.augmentation().ops == ("crop", "flip")


@pytest.mark.parametrize(
    ("d", "needle"),
    [
        ({"nmae": "cifar10"}, "dataset.nmae: unknown key (did you mean 'name'?)"),
        ({"name": "cifar1"}, "did you mean 'cifar10'"),
        ({"augment": ["crop", "flipp"]}, "dataset.augment: unknown value 'flipp' (did you mean 'flip'?)"),
        ({"val_fraction": 1.0}, "dataset.val_fraction: must be >= 0.0 and < 1.0"),
        ({"train_size": 0}, "dataset.train_size: must be >= 1"),
        ({"train_size": 2.5}, "dataset.train_size: must be int | None"),
        ({"resize": "nearest"}, "allowed: pad, bilinear"),
        ({"input_size": 4}, "dataset.input_size: must be >= 8"),
    ],
)
def test_dataconfig_errors_name_where_and_key(d: dict, needle: str) -> None:
    with pytest.raises(AblateError) as err:
        DataConfig.from_dict(d, "dataset")
    assert str(err.value).startswith("dataset")
    assert needle in str(err.value)


# ------------------------------------------------------------------------------ readers


def test_cifar10_reader_reads_cifar_pickle_batches_exactly(cifar10_root: Path) -> None:
    data = load_data(DataConfig(name="cifar10", val_fraction=0.0, augment=()), cifar10_root)
    assert data.meta.classes == tuple(CIFAR10_NAMES)
    assert (data.meta.num_classes, data.meta.in_channels, data.meta.input_size) == (10, 3, 32)
    assert data.meta.mean == (0.4914, 0.4822, 0.4465)  # ref000's constants
    assert len(data.train) == 100 and len(data.test) == 30
    # row i of a batch is channel-major: its first 1024 values are the red plane
    expected = torch.from_numpy(pattern(20, (3072,), offset=1000).reshape(20, 3, 32, 32))
    assert torch.equal(data.train.images[:20], expected)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert data.train.labels[:10].tolist() == list(range(10))


def test_torchvision_rejects_the_tiny_cifar_files_which_is_why_ablate_reads_them(cifar10_root: Path) -> None:
    from torchvision.datasets import CIFAR10

    with pytest.raises(RuntimeError, match="not found or corrupted"):
        CIFAR10(str(cifar10_root), download=False)


def test_cifar_reader_refuses_pickles_that_would_run_code(cifar10_root: Path) -> None:
    evil = {"data": np.zeros((1, 3072), np.uint8), "labels": [0], "hook": pickle.loads}
    (cifar10_root / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_data(DataConfig(name="cifar10"), cifar10_root)


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    data = load_data(DataConfig(name="cifar100", val_fraction=0.0), write_cifar100(tmp_path))
    assert data.meta.num_classes == 100 and len(data.train) == 200
    assert data.train.labels.tolist() == list(range(100)) * 2


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_idx_datasets_prepared_from_gzip_files_then_read_by_torchvision(name: str, fashion_gz_dir: Path,
                                                                        tmp_path: Path) -> None:
    root = tmp_path / "root"
    with pytest.raises(AblateError, match=f"ablate data fetch {name}"):
        load_data(DataConfig(name=name), root)
    folder = fetch(name, root, local_copy=fashion_gz_dir)
    assert folder.is_dir() and sorted(p.name for p in folder.iterdir())[0] == "t10k-images-idx3-ubyte"
    data = load_data(DataConfig(name=name, val_fraction=0.0), root)
    assert data.train.images.shape == (60, 1, 28, 28)
    assert torch.equal(data.train.images[:, 0], torch.from_numpy(pattern(60, (28, 28), 1)))
    assert data.meta.in_channels == 1 and data.meta.num_classes == 10


def test_fashion_mnist_fetch_finds_the_debian_package_folder_by_itself(fashion_gz_dir: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import ablate.datasets.sources as sources

    source = sources.SOURCES["fashion-mnist"]
    assert source.local_copy == Path("/usr/share/datasets/fashion-mnist")
    patched = dict(sources.SOURCES, **{"fashion-mnist": dataclasses.replace(source, local_copy=fashion_gz_dir)})
    monkeypatch.setattr(sources, "SOURCES", patched)
    data = load_data(DataConfig(name="fashion-mnist", input_size=32), tmp_path / "root", fetch_missing=True)
    assert data.meta.input_size == 32 and data.train.images.shape[-2:] == (32, 32)


def test_svhn_reader_maps_label_10_to_digit_0(tmp_path: Path) -> None:
    data = load_data(DataConfig(name="svhn", val_fraction=0.0), write_svhn(tmp_path))
    assert data.train.images.shape == (40, 3, 32, 32)
    assert torch.equal(data.train.images, torch.from_numpy(pattern(40, (3, 32, 32), 11)))
    assert data.train.labels.tolist() == [i % 10 for i in range(40)]


def test_imagefolder_single_tree_carves_a_fixed_test_split(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "pets", per_class=5)
    data = load_data(DataConfig(name=f"imagefolder:{root}", val_fraction=0.0))
    assert data.meta.classes == ("cat", "dog", "fox") and data.meta.input_size == 20
    assert (len(data.train), len(data.test)) == (12, 3)  # 20% of 15, one per class
    assert data.test.labels.tolist() == [0, 1, 2]
    assert data.meta.mean[0] == pytest.approx(data.train.images[:, 0].double().mean().item() / 255)


def test_imagefolder_train_test_layout_and_mixed_sizes(tmp_path: Path) -> None:
    write_imagefolder(tmp_path / "pets" / "train", per_class=4, size=(24, 16))
    write_imagefolder(tmp_path / "pets" / "test", per_class=2, size=(12, 12))
    (tmp_path / "pets" / "train" / "cat" / "0.png").unlink()
    write_imagefolder(tmp_path / "odd", per_class=1, classes=("cat",), size=(8, 8))
    (tmp_path / "odd" / "cat" / "0.png").rename(tmp_path / "pets" / "train" / "cat" / "0.png")
    with pytest.raises(AblateError, match="different sizes"):
        load_data(DataConfig(name=f"imagefolder:{tmp_path / 'pets'}"))
    data = load_data(DataConfig(name=f"imagefolder:{tmp_path / 'pets'}", input_size=24, val_fraction=0.25))
    assert data.train.images.shape == (9, 3, 24, 24) and len(data.val) == 3 and len(data.test) == 6


def test_synthetic_is_deterministic_and_cifar_shaped() -> None:
    a = load_data(DataConfig(name="synthetic", train_size=100, test_size=50))
    b = load_data(DataConfig(name="synthetic", train_size=100, test_size=50))
    assert a.train.images.shape == (90, 3, 32, 32) and a.meta.num_classes == 10
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.val.labels, b.val.labels)


def test_missing_dataset_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(AblateError) as err:
        load_data(DataConfig(name="cifar10"), tmp_path)
    assert "ablate data fetch cifar10" in str(err.value) and str(tmp_path) in str(err.value)
    assert [row[:2] for row in dataset_status(tmp_path)][-1] == ("synthetic", True)


def test_failed_download_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets as tvd

    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error downloading train_32x32.mat: Name or service not known")

    monkeypatch.setattr(tvd, "SVHN", offline)
    with pytest.raises(AblateError, match="could not download 'svhn'.*Name or service not known"):
        fetch("svhn", tmp_path)


def test_data_root_comes_from_the_environment(tmp_path: Path, cifar10_root: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLATE_DATA", str(cifar10_root))
    assert len(load_data(DataConfig(name="cifar10", val_fraction=0.0)).train) == 100


# ------------------------------------------------------------------------------ splits and sizes


def test_subsets_keep_class_balance_and_val_is_disjoint_and_seeded() -> None:
    cfg = DataConfig(name="synthetic", train_size=500, test_size=100, val_fraction=0.2, split_seed=3)
    a, b = load_data(cfg), load_data(cfg)
    assert a.train.labels.bincount().tolist() == [40] * 10
    assert a.val.labels.bincount().tolist() == [10] * 10
    assert a.test.labels.bincount().tolist() == [10] * 10
    assert torch.equal(a.val.images, b.val.images)
    train_rows = {bytes(x.numpy()) for x in a.train.images}
    assert not any(bytes(x.numpy()) in train_rows for x in a.val.images)
    other = load_data(DataConfig(name="synthetic", train_size=500, test_size=100, val_fraction=0.2, split_seed=4))
    assert not torch.equal(a.val.images, other.val.images)


def test_stratified_split_keeps_proportions_of_unbalanced_classes() -> None:
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    picked, rest = stratified_split(labels, 10, torch.Generator().manual_seed(0))
    assert labels[picked].bincount().tolist() == [6, 3, 1]
    assert sorted(picked.tolist() + rest.tolist()) == list(range(100))


def test_subset_size_bounds_are_user_errors() -> None:
    with pytest.raises(AblateError, match="train_size must be between 10 .* and 10000"):
        load_data(DataConfig(name="synthetic", train_size=20000))


def test_fit_size_pads_centred_with_zeros_or_resizes() -> None:
    x = torch.full((2, 1, 28, 28), 200, dtype=torch.uint8)
    padded = fit_size(x, 32, "pad")
    assert padded.shape == (2, 1, 32, 32) and padded[:, :, 2:30, 2:30].eq(200).all()
    assert padded.sum() == 2 * 28 * 28 * 200
    assert fit_size(x, 14, "bilinear").eq(200).all()
    with pytest.raises(AblateError, match="bilinear"):
        fit_size(x, 14, "pad")


# ------------------------------------------------------------------------------ augmentation


def _batch(n: int = 16, c: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_augment_keeps_shape_and_range_and_is_reproducible_per_seed(channels: int) -> None:
    x = _batch(c=channels)
    aug = Augment()
    def run(seed: int) -> torch.Tensor:
        return aug(x, torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed))

    out = run(0)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert torch.equal(out, run(0))
    assert not torch.equal(out, run(1))


def test_crop_flip_matches_slicing_the_padded_image() -> None:
    x = _batch(n=3)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dy, dx = torch.tensor([0, 4, 8]), torch.tensor([8, 4, 0])
    out = crop_flip(x, 4, dy, dx, torch.tensor([False, False, True]))
    assert torch.equal(out[1], x[1])  # centre offset, no flip: identity
    assert torch.equal(out[0], padded[0, :, 0:32, 8:40])
    assert torch.equal(out[2], padded[2, :, 8:40, 0:32].flip(-1))
    assert random_crop_flip(x, 4, True, torch.Generator().manual_seed(0)).dtype == torch.uint8


def test_hue_matches_torchvision() -> None:
    x = to_unit_float(_batch(n=4))
    for shift in (-0.1, 0.05, 0.3):
        expected = torch.stack([TF.adjust_hue(img, shift) for img in x])
        assert torch.allclose(adjust_hue(x, torch.full((4,), shift)), expected, atol=1e-5)


def test_rotation_matches_torchvision_nearest_zero_fill() -> None:
    x = to_unit_float(_batch(n=4))
    assert torch.equal(rotate(x, torch.full((4,), 10.0)), torch.stack([TF.rotate(img, 10.0) for img in x]))
    assert torch.equal(rotate(x, torch.full((4,), 90.0)), torch.rot90(x, 1, (2, 3)))


def test_jitter_with_zero_strength_is_identity_and_brightness_scales() -> None:
    x = to_unit_float(_batch(n=4))
    gens = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(color_jitter(x, 0, 0, 0, 0, *gens), x)
    out = color_jitter(x, 0.5, 0, 0, 0, *gens)
    ratio = out[x > 0.05] / x[x > 0.05]
    assert ((0.5 - 1e-5 <= ratio) & (ratio <= 1.5 + 1e-5)).all()


def test_normalize_uses_the_dataset_statistics() -> None:
    norm = Normalize((0.5,), (0.25,), "cpu")
    assert torch.allclose(norm(torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3)), torch.tensor([-2.0, 0.0, 2.0]))


def test_get_source_lists_the_allowed_names() -> None:
    with pytest.raises(AblateError, match="allowed: cifar10, cifar100, svhn, mnist, fashion-mnist, synthetic"):
        get_source("imagenet")


@pytest.mark.parametrize("opts", [{}, {"train_size": 500, "val_fraction": 0.2, "input_size": 40, "test_size": 100}])
def test_dataset_info_predicts_what_load_data_gives(opts: dict) -> None:
    cfg = DataConfig(name="synthetic", **opts)
    info, meta = dataset_info(cfg), load_data(cfg).meta
    assert (info.num_classes, info.in_channels, info.input_size) == (meta.num_classes, meta.in_channels,
                                                                     meta.input_size)
    assert (info.train_count, info.val_count, info.test_count) == meta.sizes


def test_dataset_info_knows_the_named_datasets_without_files(tmp_path: Path) -> None:
    info = dataset_info(DataConfig(name="fashion-mnist", input_size=32, val_fraction=0.1))
    assert (info.num_classes, info.in_channels, info.input_size) == (10, 1, 32)
    assert (info.train_count, info.val_count, info.test_count) == (54000, 6000, 10000)
    root = write_imagefolder(tmp_path / "pets", per_class=5)
    info = dataset_info(DataConfig(name=f"imagefolder:{root}", val_fraction=0.0))
    assert (info.num_classes, info.input_size, info.train_count, info.test_count) == (3, 20, 12, 3)
    with pytest.raises(AblateError, match="not a folder"):
        dataset_info(DataConfig(name=f"imagefolder:{tmp_path / 'nope'}"))
