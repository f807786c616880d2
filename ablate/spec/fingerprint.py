"""A study's fingerprint: what its results mean, hashed, so a changed study file is detected.

Stored with every trial. Left out: what does not change a result (description, storage, output,
artifacts). Put in: the training and timing thread counts as resolved (threads change float
results and timing conditions) and the identity of plugin code (not where it is installed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

NOT_RESULTS = ("description", "storage", "output", "artifacts")


def study_fingerprint(doc: Mapping[str, Any], train_threads: int, timing_threads: int,
                      plugins: Sequence[Mapping[str, Any]] = ()) -> str:
    """16 hex digits of the SHA-256 of the document's result-defining parts (key order does not matter)."""
    source = {k: v for k, v in doc.items() if k not in NOT_RESULTS}
    runtime_doc = {k: v for k, v in (doc.get("runtime") or {}).items() if k != "threads"}  # threads: resolved
    source.pop("runtime", None)
    if runtime_doc:
        source["runtime"] = runtime_doc
    source["threads"] = {"train": train_threads, "timing": timing_threads}
    if plugins:  # the plugin code's identity (not where it is installed): a changed module changes the study
        source["plugins"] = [{k: v for k, v in p.items() if k != "file"} for p in plugins]
    return hashlib.sha256(json.dumps(source, sort_keys=True, default=str).encode()).hexdigest()[:16]
