"""`ablate status STUDY`: trials per phase (complete / running / dead / failed / pruned / waiting), and who runs what.

Read-only: it never creates a storage file or table, and shows a trial whose worker died as dead
without failing it (the next `ablate run` does that and re-runs the item).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from . import add_storage, add_study, storage_option

if TYPE_CHECKING:
    from ..spec import Study


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="trial counts per phase of a study (read-only)")
    add_study(p)
    add_storage(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..spec import load_study

    study = load_study(args.study, storage=storage_option(args))  # refused before Optuna's frames and pandas load
    from ..storage import environment_faults

    with environment_faults(study.storage):  # a full disk, a silent server: one line naming the storage
        return show(study)


def show(study: Study) -> int:
    """Print the status tables of `study` (its storage only read)."""
    from ..status import phase_studies, running_frame, status_frame, storage_overridden
    from ..storage import mask_url, open_storage, storage_missing

    print(f"study {study.name}: {len(study.arms)} arms x {len(study.seeds)} seeds; storage {mask_url(study.storage)}")
    same = " with the same --storage or $ABLATE_STORAGE" if storage_overridden(study) else ""
    not_run = f"not run yet; start it with: ablate run {study.path}{same}"
    if storage_missing(study.storage):
        print(not_run)
        return 0
    storage = open_storage(study.storage, read_only=True)
    if all(s is None for s in phase_studies(study, storage).values()):
        print(not_run)
        return 0
    print(status_frame(study, storage).to_markdown(index=False))
    running = running_frame(study, storage)
    if not running.empty:
        print()
        print(running.to_markdown(index=False))
    return 0
