"""`ablate list`: what can be built (attention types with their knobs, positions, backbones).

Installed plugins (entry points in groups `ablate.attention` and `ablate.backbones`) are listed with
the package they come from; one that fails to load is listed with the reason instead of stopping the list.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from tabulate import tabulate

from ..errors import AblateError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list attention types, positions and backbones (installed plugins included)")
    p.add_argument("what", nargs="?", choices=("attention", "positions", "backbones"), help="only this table")
    p.set_defaults(func=run)


def _source(registry: Any, name: str) -> str:
    if registry.is_builtin(name):
        return "built-in"
    s = registry.sources()[name]
    return f"{s.package or s.target} {s.version or ''}".strip()


def _rows(registry: Any, row: Callable[[str, Any], list[str]], width: int) -> list[list[str]]:
    rows = []
    for name in registry:
        try:
            rows.append([*row(name, registry[name]), _source(registry, name)])
        except AblateError as err:
            rows.append([name, *["-"] * (width - 2), f"cannot load: {err}"])
    return rows


def _attention_row(name: str, cls: Any) -> list[str]:
    knobs = getattr(cls, "knobs", ())
    return [name, getattr(cls, "kind", "") or "-", "yes" if getattr(cls, "uses_reduction", False) else "-",
            "; ".join(f"{k.name}={k.default} ({k.describe_allowed()})" for k in knobs) or "-"]


def _backbone_row(name: str, b: Any) -> list[str]:
    return [name, b.layout(), ", ".join(b.positions), ", ".join(b.heads), b.description]


def run(args: argparse.Namespace) -> int:
    from ..attention import ATTENTION
    from ..models import BACKBONES, POSITIONS

    tables = {
        "attention": (["attention", "kind", "reduction", "knobs (default; allowed)", "source"],
                      lambda: _rows(ATTENTION, _attention_row, 5)),
        "positions": (["position", "where"], lambda: list(POSITIONS.items())),
        "backbones": (["backbone", "stages", "positions", "heads", "description", "source"],
                      lambda: _rows(BACKBONES, _backbone_row, 6)),
    }
    for name, (headers, rows) in tables.items():
        if args.what in (None, name):
            print(tabulate(rows(), headers=headers, tablefmt="github"))
            print()
    return 0
