"""`load_study`: a study file from disk to a Study, refusing bad input before torch is imported."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .document import parse_yaml, read_study_text
from .schema import check_document

if TYPE_CHECKING:
    from .study import Study


def load_study(path: str | Path, storage: str | None = None, threads: int | None = None) -> Study:
    """Load and validate a study file. Raises AblateError; never writes anything.

    `storage` and `threads` (training threads) override the file's; threads are part of the fingerprint.
    The file and every plain setting are checked first, without torch (seconds and hundreds of MB that a
    refusal should not cost); the arms, plugins and dataset sizes after ablate.spec.build imports it.
    """
    path = Path(path)
    checked = check_document(parse_yaml(read_study_text(path), path), path, storage, threads)
    from .build import build_study  # torch, the registries and the datasets' metadata

    return build_study(checked)
