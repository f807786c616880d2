"""The validated study: what every command reads from a study file once it passed every check."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .sections import Measure, SeedPlan, Tuning

if TYPE_CHECKING:  # torch-side classes; a Study is built by ablate.spec.build, after they are imported
    from ..arms import Arm
    from ..datasets import DataConfig, DatasetInfo
    from ..recipe import Recipe, Runtime


@dataclass(frozen=True)
class Study:
    """A validated study file."""

    path: Path
    name: str
    description: str
    dataset: DataConfig
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]  # every seed an arm may get (with a SeedPlan: the first `min` always, the rest on demand)
    recipe: Recipe
    tuning: Tuning
    measure: Measure
    runtime: Runtime
    storage: str
    output: Path
    run_dir: Path
    fingerprint: str
    document: Mapping[str, Any]
    seed_plan: SeedPlan | None = None  # None: every arm gets every seed
    min_effect_pp: float = 0.5  # the effect the report asks "how many seeds would detect it?" about
    notes: tuple[str, ...] = ()  # what the grid listed but collapsed (same model under two names), for `plan`
    artifacts: Path | None = None  # a shared artifact folder (several machines); None: beside the storage file
    plugins: tuple[dict[str, Any], ...] = ()  # source of each module/backbone from outside ablate (ablate.plugins)
    info: DatasetInfo | None = None  # the dataset's image counts and shape; None: an image folder not yet scanned

    @property
    def baselines(self) -> dict[str, Arm]:
        return {a.backbone.label: a for a in self.arms if a.is_baseline}
