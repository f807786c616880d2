"""`ablate list`: what can be built (attention types with their knobs, positions, backbones)."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from ..attention import ATTENTION
from ..models import BACKBONES, POSITIONS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list attention types, positions and backbones")
    p.add_argument("what", nargs="?", choices=("attention", "positions", "backbones"), help="only this table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tables = {
        "attention": (
            ["attention", "kind", "reduction", "knobs (default; allowed)"],
            [
                [
                    name,
                    cls.kind,
                    "yes" if cls.uses_reduction else "-",
                    "; ".join(f"{k.name}={k.default} ({k.describe_allowed()})" for k in cls.knobs) or "-",
                ]
                for name, cls in ATTENTION.items()
            ],
        ),
        "positions": (["position", "where"], list(POSITIONS.items())),
        "backbones": (
            ["backbone", "blocks (conv widths)", "heads", "description"],
            [[b.name, " | ".join("-".join(map(str, w)) for w in b.blocks), ", ".join(b.heads), b.description]
             for b in BACKBONES.values()],
        ),
    }
    for name, (headers, rows) in tables.items():
        if args.what in (None, name):
            print(tabulate(rows, headers=headers, tablefmt="github"))
            print()
    return 0
