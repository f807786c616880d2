"""The study file: YAML in studies/, validated on load, the single source of truth for a study.

Loading is safe and strict: an unknown key, name, type or range raises AblateError naming the file,
the key path and what is allowed, before anything is written. The package follows the steps:

- `document`: reading the file (bounded, UTF-8, a strict YAML loader);
- `located`: errors that name the file and key (the value checks themselves are ablate.config's);
- `sections`, `schema`: the study's own sections, and every check that needs no torch;
- `build`: the arms, plugins and dataset sizes (torch's side); `study`: the result; `fingerprint`.

`load_study` refuses a bad file before torch is imported. `parse_study` and `build_study` load on first
use (they import torch), so `from ablate.spec import load_study` stays light.
"""

from __future__ import annotations

from ..lazy import lazy_exports
from .document import MAX_STUDY_BYTES, StrictLoader, parse_yaml, read_study_text
from .fingerprint import study_fingerprint
from .load import load_study
from .located import Located
from .schema import GRID_KEYS, NAME_RE, TOP_KEYS, Checked, check_document
from .sections import (
    MAX_PLAN_SEEDS,
    MAX_SAMPLER_SEED,
    MAX_SEED,
    MEASURE_PRECISIONS,
    PARAM_KEYS,
    PRUNERS,
    SCOPES,
    SEED_PLAN_KEYS,
    Measure,
    Param,
    SeedPlan,
    Tuning,
)
from .study import Study

_LAZY = {"parse_study": "ablate.spec.build", "build_study": "ablate.spec.build"}

__all__ = ["GRID_KEYS", "MAX_PLAN_SEEDS", "MAX_SAMPLER_SEED", "MAX_SEED", "MAX_STUDY_BYTES", "MEASURE_PRECISIONS",
           "NAME_RE", "PARAM_KEYS", "PRUNERS", "SCOPES", "SEED_PLAN_KEYS", "TOP_KEYS", "Checked", "Located",
           "Measure", "Param", "SeedPlan", "StrictLoader", "Study", "Tuning", "build_study",
           "check_document", "load_study", "parse_study", "parse_yaml", "read_study_text", "study_fingerprint"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
