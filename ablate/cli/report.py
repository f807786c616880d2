"""`ablate report STUDY`: regenerate reports/<study>/ (report.md, figures, tables) from storage, no retraining.

`ablate report A.yaml B.yaml [...]` puts two or more studies side by side on their shared arms
(reports/compare-A-B by default), each with its own statistics.

The folder must lie under reports/ and be new, empty or this study's (its marker): it is checked
before storage is read, and marked as this study's before the report's first file is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import AblateError
from . import add_data_dir, add_storage, add_study, storage_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the study's report from its storage (no retraining)")
    add_study(p, several=True)
    add_storage(p)
    p.add_argument("--out", help="output folder under reports/, created when missing (default: the study's output, "
                                 "reports/<name>)")
    p.add_argument("--no-diagnostics", action="store_true",
                   help="skip feature maps, Grad-CAM and attention maps (they load checkpoints and the test split)")
    add_data_dir(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..files import check_report_dir, check_report_folder
    from ..spec import load_study

    if len(args.study) > 1 and args.storage:
        raise AblateError("--storage overrides one study's storage; a comparison reads each study's own.")
    given = check_report_dir(args.out, "--out") if args.out is not None else None  # before the studies load
    storage = storage_option(args) if len(args.study) == 1 else None  # $ABLATE_STORAGE: one study's storage
    studies = [load_study(path, storage=storage) for path in args.study]
    owner = studies[0].name if len(studies) == 1 else "compare-" + "-".join(s.name for s in studies)
    out = given if given is not None else studies[0].output if len(studies) == 1 else Path("reports") / owner
    check_report_folder(out, owner)
    from ..report import write_report  # matplotlib, seaborn and pandas: once the input is known to be good
    from ..report.compare import write_comparison
    from ..storage import environment_faults

    # a full disk names the report's folder (a write's OSError names no file); re-running writes it all again
    with environment_faults(studies[0].storage if len(studies) == 1 else None, folder=out):
        if len(studies) == 1:
            path = write_report(studies[0], out_dir=out, diagnostics=not args.no_diagnostics, data_dir=args.data_dir)
        else:
            path = write_comparison(studies, out)
    print(f"report: {path}")
    return 0
