"""`load_study`: a study file from disk to a Study, refusing bad input before torch is imported."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .document import parse_yaml, read_study_text
from .schema import check_data, check_document

if TYPE_CHECKING:
    from .study import Study


def load_study(path: str | Path, storage: str | None = None, threads: int | None = None, *,
               scan_folder: bool = False, require_data: bool = False, data_dir: str | Path | None = None) -> Study:
    """Load and validate a study file. Raises AblateError; never writes anything.

    `storage` and `threads` (training threads) override the file's; threads are part of the fingerprint.
    The file and every plain setting are checked first, without torch (seconds and hundreds of MB that a
    refusal should not cost); the arms and plugins after ablate.spec.build imports it. Commands that
    read the data (`plan`, `run`) also ask, still before torch, for an image folder to be scanned
    (`scan_folder`: every file decodes, one size, two classes) and for the dataset's files to be present
    and complete under `data_dir` (`require_data`).
    """
    path = Path(path)
    checked = check_document(parse_yaml(read_study_text(path), path), path, storage, threads)
    if scan_folder or require_data:
        checked = check_data(checked, scan_folder, require_data, data_dir)
    from .build import build_study  # torch, the registries and the datasets' metadata

    return build_study(checked)
