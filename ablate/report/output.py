"""Writing report files: safe names, atomic writes, and the Figure record markdown links to.

Every file is written to a temporary name in its final folder and renamed into place, so a crash
never leaves a torn PNG, CSV or report.md; the temporary file is created with the permissions the
user's umask gives (as open() would), not mkstemp's private 0600. File names come from `slug()`,
never straight from arm ids or group names (which hold '/', '=' and ','), so nothing escapes the
report folder. A marker file names the study a folder belongs to, so one study's report never
overwrites another's (`check_output_folder`, `mark_output`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are written headless (use() also switches if pyplot was imported first)

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ..errors import AblateError  # noqa: E402
from ..files import atomic_write  # noqa: E402

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Figure:
    """A written PNG: its path relative to the report folder, a short title and a caption."""

    path: str
    title: str
    caption: str


def slug(text: str, max_len: int = 80) -> str:
    """A file-name-safe form of `text` ('cnn/se/after_relu/r16' -> 'cnn_se_after_relu_r16').

    Long names are cut and get a hash of the full text, so two long ids stay distinct.
    """
    s = _UNSAFE.sub("_", str(text)).strip("._") or "x"
    if len(s) > max_len:
        s = s[: max_len - 9] + "-" + hashlib.sha1(str(text).encode()).hexdigest()[:8]
    return s


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_figure(fig: plt.Figure, out_dir: Path, name: str, title: str, caption: str) -> Figure:
    """Save `fig` as out_dir/figures/<name>.png (atomically), close it, and describe it."""
    rel = f"figures/{slug(name)}.png"
    try:
        atomic_write(out_dir / rel, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return Figure(rel, title, caption)


MANIFEST = ".report-files.json"


def replace_manifest(out_dir: Path, written: list[str]) -> list[str]:
    """Record the files this report wrote; delete those the previous report wrote and this one did not.

    Only files listed by an earlier report are ever removed, so a folder given with --out keeps
    everything else. Returns the removed paths (relative).
    """
    path = out_dir / MANIFEST
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = []
    stale = [p for p in previous if isinstance(p, str) and p not in written
             and p.startswith(("figures/", "tables/")) and ".." not in Path(p).parts]
    for rel in stale:
        (out_dir / rel).unlink(missing_ok=True)
    write_text(path, json.dumps(sorted(written), indent=0))
    return stale


STUDY_MARKER = ".ablate-study"


def _owner(folder: Path) -> str | None:
    """The study named by `folder`'s marker file, None when it has none."""
    marker = folder / STUDY_MARKER
    try:
        return marker.read_text(encoding="utf-8", errors="replace").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise AblateError(f"{folder}: cannot read its {STUDY_MARKER} marker: {err.strerror or err}.") from None


def check_output_folder(out: Path, study: str) -> None:
    """Refuse a report folder another study owns (its marker, or an enclosing folder's, names another
    study), a path that is not a folder, and a place nothing can be written to. Writes nothing."""
    for folder in (out, *out.parents):
        owner = _owner(folder)
        if owner is not None and owner != study:
            raise AblateError(f"{out}: {folder} holds the report of study {owner!r} (its {STUDY_MARKER} says so); "
                              f"study {study!r} will not overwrite it: choose another folder under reports/.")
    existing = out
    try:
        while not existing.exists():  # the nearest existing folder decides whether the report can be created
            existing = existing.parent
    except OSError as err:  # e.g. a name longer than the file system allows
        raise AblateError(f"{out}: cannot be a report folder: {err.strerror or err}.") from None
    if not existing.is_dir():
        raise AblateError(f"{out}: {existing} is a file, not a folder; choose another report folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AblateError(f"{out}: cannot write the report: {existing} is read-only for this user.")


def mark_output(out: Path, study: str) -> None:
    """Record that `out` holds the report of `study` (after the report is written)."""
    write_text(out / STUDY_MARKER, study + "\n")
