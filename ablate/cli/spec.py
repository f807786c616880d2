"""`ablate spec`: the study-file reference, generated from the code that validates study files.

Keys, types and defaults come from the config dataclasses (their fields, type hints and the comment
on each field's line); allowed values from the constants and registries the loader checks against
(SCOPES, PRUNERS, the attention, backbone and position registries, ...). docs/study-file.md is this
command's output (`ablate spec > docs/study-file.md`) and a test keeps the two equal, so the
reference cannot drift from the code.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spec", help="print the study-file reference (markdown, generated from the code)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run)


def reference() -> str:
    """The study-file reference as markdown (built by ablate.cli.spec_doc, which loads the study loader)."""
    from .spec_doc import reference as build

    return build()


def run(args: argparse.Namespace) -> int:
    print(reference(), end="")
    return 0
