"""The decoded-dataset cache: written once, read without decoding, invalidated by changed sources,
and bit-identical to decoding every time."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import ablate.datasets.cache as cache_mod
import ablate.datasets.load as load_mod
from ablate.cli import main
from ablate.datasets import (
    CACHE_ENV,
    Data,
    DataConfig,
    Raw,
    cache_entries,
    cache_entry,
    fetch,
    get_source,
    load_data,
    read_raw,
)

from .conftest import idx_bytes, pattern, write_imagefolder


@pytest.fixture(autouse=True)
def _default_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from the default location, <data root>/.cache."""
    monkeypatch.delenv(CACHE_ENV, raising=False)


def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every dataset reader raise, so a load that succeeds came from the cache."""
    def boom(root: Path) -> Raw:
        raise AssertionError("the dataset was decoded although the cache holds it")

    for module in (load_mod, cache_mod):  # load_data and read_raw each look the source up
        monkeypatch.setattr(module, "get_source", lambda *a, **k: replace(get_source(*a, **k), read=boom))


def uncached(config: DataConfig, root: Path, monkeypatch: pytest.MonkeyPatch) -> Data:
    with monkeypatch.context() as m:
        m.setenv(CACHE_ENV, "off")
        return load_data(config, root)


def assert_same(a: Data, b: Data) -> None:
    assert a.meta == b.meta
    for name in ("train", "val", "test"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None
            continue
        for t, u in ((x.images, y.images), (x.labels, y.labels)):
            assert t.dtype == u.dtype and t.shape == u.shape and t.stride() == u.stride() and torch.equal(t, u)


def temp_folders(cache: Path) -> list[str]:
    return [p.name for p in cache.iterdir() if p.is_dir() and p.name.startswith(".")]


# ------------------------------------------------------------------------------ write, read, identical


def test_first_load_writes_the_cache_and_the_second_reads_it_without_decoding(
        cifar10_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = DataConfig(name="cifar10", train_size=60, test_size=20, val_fraction=0.25)
    entry = cache_entry(config, cifar10_root)
    assert entry is not None and entry.parent == cifar10_root / ".cache" and not entry.exists()
    first = load_data(config, cifar10_root)
    assert (entry / "tensors.pt").is_file() and (entry / "meta.json").is_file()
    assert temp_folders(entry.parent) == []
    forbid_decoding(monkeypatch)
    second = load_data(config, cifar10_root)
    assert_same(second, first)


def test_cached_tensors_are_bit_identical_to_decoding(cifar10_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for config in (DataConfig(name="cifar10", val_fraction=0.0, augment=()),
                   DataConfig(name="cifar10", train_size=50, test_size=10, val_fraction=0.2, split_seed=3,
                              input_size=40)):
        plain = uncached(config, cifar10_root, monkeypatch)
        load_data(config, cifar10_root)  # writes (or reuses) the entry
        cached = load_data(config, cifar10_root)
        assert_same(cached, plain)
    # and what came back is the files' content: batch 1's first row, channel-major
    full = load_data(DataConfig(name="cifar10", val_fraction=0.0), cifar10_root)
    expected = torch.from_numpy(pattern(20, (3072,), offset=1000).reshape(20, 3, 32, 32))
    assert torch.equal(full.train.images[:20], expected)


def test_the_cache_holds_full_decoded_splits_so_subsets_and_seeds_share_one_entry(cifar10_root: Path) -> None:
    configs = [DataConfig(name="cifar10"), DataConfig(name="cifar10", train_size=30, split_seed=5),
               DataConfig(name="cifar10", input_size=40, resize="bilinear")]  # named datasets decode natively
    assert len({cache_entry(c, cifar10_root) for c in configs}) == 1
    raw = read_raw(configs[1], cifar10_root)
    assert raw.train_x.shape == (100, 3, 32, 32) and raw.test_x.shape == (30, 3, 32, 32)
    assert [e.name for e, _, _ in cache_entries(cifar10_root)] == [cache_entry(configs[0], cifar10_root).name]


# ------------------------------------------------------------------------------ invalidation


def test_a_changed_source_file_invalidates_the_cache(fashion_gz_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    fetch("fashion-mnist", root, local_copy=fashion_gz_dir)
    config = DataConfig(name="fashion-mnist", val_fraction=0.0)
    before = load_data(config, root)
    assert torch.equal(before.train.images[:, 0], torch.from_numpy(pattern(60, (28, 28), 1)))
    old_entry = cache_entry(config, root)
    assert old_entry is not None and old_entry.is_dir()

    images = root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    mtime = images.stat().st_mtime_ns
    images.write_bytes(idx_bytes(pattern(60, (28, 28), 9)))  # same size, other pixels
    os.utime(images, ns=(mtime + 10**9, mtime + 10**9))
    new_entry = cache_entry(config, root)
    assert new_entry != old_entry and not new_entry.exists()

    after = load_data(config, root)  # decodes the new file, not the stale entry
    assert torch.equal(after.train.images[:, 0], torch.from_numpy(pattern(60, (28, 28), 9)))
    assert new_entry.is_dir()
    forbid_decoding(monkeypatch)
    assert_same(load_data(config, root), after)


def test_imagefolder_key_holds_decode_size_and_files_not_the_split_seed(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_imagefolder(tmp_path / "pets", per_class=5)
    root = tmp_path / "data"
    name = f"imagefolder:{folder}"
    base = DataConfig(name=name, input_size=24, val_fraction=0.0)
    same = [base, DataConfig(name=name, input_size=24, train_size=9, split_seed=3)]
    other = [DataConfig(name=name, input_size=32), DataConfig(name=name, input_size=24, resize="bilinear"),
             DataConfig(name=name)]
    entries = [cache_entry(c, root) for c in same + other]
    assert entries[0] == entries[1] and len(set(entries)) == 4
    assert entries[0].parent == root / ".cache" and entries[0].name.startswith("imagefolder-pets-")

    plain = uncached(base, root, monkeypatch)
    load_data(base, root)
    with monkeypatch.context() as m:
        forbid_decoding(m)
        assert_same(load_data(base, root), plain)
    (folder / "cat" / "0.png").unlink()  # a file less: another key, decoded again
    assert cache_entry(base, root) != entries[0]
    assert len(load_data(base, root).train) == len(plain.train) - 1


# ------------------------------------------------------------------------------ atomic writes, fallbacks


def test_a_torn_temporary_folder_is_never_read_and_a_lost_rename_keeps_the_winner(
        cifar10_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = DataConfig(name="cifar10", val_fraction=0.0)
    entry = cache_entry(config, cifar10_root)
    torn = entry.parent / f".{entry.name}.crashed"  # what a writer killed mid-write leaves behind
    torn.mkdir(parents=True)
    (torn / "tensors.pt").write_bytes(b"half a file")
    plain = uncached(config, cifar10_root, monkeypatch)
    assert_same(load_data(config, cifar10_root), plain)
    written = (entry / "tensors.pt").read_bytes()

    # a second writer racing the first: its rename fails, its temporary folder goes, the entry stays
    raw = read_raw(config, cifar10_root)
    cache_mod._write_cache(entry, raw, {"racer": True})
    assert (entry / "tensors.pt").read_bytes() == written
    assert temp_folders(entry.parent) == [torn.name]


def test_workers_starting_together_on_a_cold_cache_decode_once(cifar10_root: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    config = DataConfig(name="cifar10", val_fraction=0.0)
    decodes: list[int] = []

    def slow_read(root: Path) -> Raw:
        decodes.append(1)
        time.sleep(0.3)  # long enough for every other loader to arrive while this one decodes
        return get_source(config.name).read(root)

    monkeypatch.setattr(load_mod, "get_source", lambda *a, **k: replace(get_source(*a, **k), read=slow_read))
    with ThreadPoolExecutor(4) as pool:  # flock conflicts between open files, so threads queue like processes
        loaded = list(pool.map(lambda _: load_data(config, cifar10_root), range(4)))
    assert len(decodes) == 1
    for data in loaded[1:]:
        assert_same(data, loaded[0])
    assert temp_folders(cifar10_root / ".cache") == []


def test_an_unreadable_entry_falls_back_to_decoding(cifar10_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = DataConfig(name="cifar10", val_fraction=0.0)
    load_data(config, cifar10_root)
    entry = cache_entry(config, cifar10_root)
    (entry / "tensors.pt").write_bytes(b"not a torch file")
    assert_same(load_data(config, cifar10_root), uncached(config, cifar10_root, monkeypatch))


def test_cache_location_comes_from_the_environment_or_is_off(cifar10_root: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    config = DataConfig(name="cifar10", val_fraction=0.0)
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_entry(config, cifar10_root) is None
    load_data(config, cifar10_root)
    assert not (cifar10_root / ".cache").exists()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "local-ssd"))
    load_data(config, cifar10_root)
    assert cache_entry(config, cifar10_root).parent == tmp_path / "local-ssd"
    assert cache_entry(config, cifar10_root).is_dir() and not (cifar10_root / ".cache").exists()


def test_generated_data_is_not_cached(tmp_path: Path) -> None:
    config = DataConfig(name="synthetic", train_size=100, test_size=50)
    assert cache_entry(config, tmp_path) is None
    load_data(config, tmp_path)
    assert not (tmp_path / ".cache").exists()


def test_data_cache_command_lists_and_clears(cifar10_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_data(DataConfig(name="cifar10"), cifar10_root)
    assert main(["data", "cache", "--data-dir", str(cifar10_root)]) == 0
    out = capsys.readouterr().out
    assert "cifar10" in out and str(cifar10_root / ".cache") in out
    assert main(["data", "cache", "--data-dir", str(cifar10_root), "--clear"]) == 0
    assert cache_entries(cifar10_root) == []
    assert "removed 1 entry" in capsys.readouterr().out
