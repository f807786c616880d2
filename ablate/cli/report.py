"""`ablate report STUDY`: regenerate reports/<study>/ (report.md, figures, tables) from storage, no retraining."""

from __future__ import annotations

import argparse

from ..spec import load_study


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the study's report from its storage (no retraining)")
    p.add_argument("study", help="study file (studies/*.yaml)")
    p.add_argument("--storage", help="override the study's storage URL")
    p.add_argument("--out", help="output folder (default: the study's output, reports/<name>)")
    p.add_argument("--no-diagnostics", action="store_true",
                   help="skip feature maps, Grad-CAM and attention maps (they load checkpoints and the test split)")
    p.add_argument("--data-dir", help="dataset root for the diagnostics (default: $ABLATE_DATA or ./data)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import write_report  # matplotlib/seaborn load only for this command

    study = load_study(args.study, storage=args.storage)
    path = write_report(study, out_dir=args.out, diagnostics=not args.no_diagnostics, data_dir=args.data_dir)
    print(f"report: {path}")
    return 0
