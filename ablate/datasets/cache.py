"""The decoded-dataset cache: the full decoded splits saved once and memory-mapped by every later load.

Decoding is the slow part of loading (Fashion-MNIST: about 1.7 s on a 2-core CPU, most of it torchvision's
imports; an image folder: PIL per image), and N workers on one machine would each pay it. So the decoded
full splits (uint8 images and labels, before any subset, split or resize of load_data's own) are saved
once under `<data root>/.cache/<key>/` ($ABLATE_DATA_CACHE moves it, or 'off' disables it). The key holds
the dataset name, what changes the decoded content (input_size and resize for image folders, which are
decoded at that size) and the size and mtime of every source file, so a changed file is a new key. Entries
are written into a temporary folder and renamed into place, so a concurrent reader sees a whole entry or
none; workers that start together on a cold cache queue on a lock file, so one decodes and the others read
its entry. Old entries are not deleted by themselves: `ablate data cache --clear`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .config import DataConfig
from .readers import Raw
from .sources import IMAGEFOLDER, Source, data_root, get_source

CACHE_ENV = "ABLATE_DATA_CACHE"  # a folder for the decoded-dataset cache, or 'off'; default <data root>/.cache
CACHE_FOLDER = ".cache"
CACHE_OFF = ("off", "0", "false", "no")
CACHE_VERSION = 1  # bump when a reader's output changes for the same source files

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
