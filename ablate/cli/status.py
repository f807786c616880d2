"""`ablate status STUDY`: trials per phase (complete / running / failed / pruned / waiting)."""

from __future__ import annotations

import argparse

from ..spec import load_study
from ..storage import mask_url
from ..study import status_frame


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="trial counts per phase of a study")
    p.add_argument("study", help="study file (studies/*.yaml)")
    p.add_argument("--storage", help="override the study's storage URL")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    study = load_study(args.study, storage=args.storage)
    print(f"study {study.name}: {len(study.arms)} arms x {len(study.seeds)} seeds; storage {mask_url(study.storage)}")
    print(status_frame(study).to_markdown(index=False))
    return 0
