"""Writing report files: safe names, atomic writes, and the Figure record markdown links to.

Every file is written to a temporary name in its final folder and renamed into place, so a crash
never leaves a torn PNG, CSV or report.md; the temporary file is created with the permissions the
user's umask gives (as open() would), not mkstemp's private 0600. File names come from `slug()`,
never straight from arm ids or group names (which hold '/', '=' and ','), so nothing escapes the
report folder. Which folder a report may be written to is checked in ablate.files (one home for
output paths: `check_report_dir`, `check_report_folder`, `mark_report_folder`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are written headless (use() also switches if pyplot was imported first)

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

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
