"""`ablate plan STUDY`: the arms, the trial count and a cost estimate, before anything trains."""

from __future__ import annotations

import argparse

from . import add_data_dir, add_study


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="list a study's arms, trial count and estimated cost (no training)")
    add_study(p)
    p.add_argument("--no-timing", action="store_true", help="skip the measured training-step time")
    add_data_dir(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..spec import load_study

    # a bad file, an unreadable image folder or (with --data-dir) missing or truncated dataset files are
    # refused before torch, pandas and the timing code load
    study = load_study(args.study, scan_folder=True, require_data=args.data_dir is not None, data_dir=args.data_dir)
    from ..plan import plan_frame, plan_notes, plan_summary

    frame = plan_frame(study, timing=not args.no_timing)
    print(f"# {study.name}: {study.description}".rstrip(": "))
    print(frame.astype(object).where(frame.notna(), "-").to_markdown(index=False, floatfmt=".4g"))
    print()
    for line in plan_summary(study, frame):
        print(line)
    for note in plan_notes(study):
        print(f"note: {note}")
    return 0
