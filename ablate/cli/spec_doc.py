"""The study-file reference `ablate spec` prints, generated from the code that validates study files.

Keys, types and defaults come from the config dataclasses (their fields, type hints and the comment
on each field's line); allowed values from the constants and registries the loader checks against
(SCOPES, PRUNERS, the attention, backbone and position registries, ...). docs/study-file.md is this
command's output (`ablate spec > docs/study-file.md`) and a test keeps the two equal, so the
reference cannot drift from the code. A module of its own, apart from the command (ablate.cli.spec):
it imports the study loader, which building the parser does not need.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, get_type_hints

from ..arms import BackboneChoice
from ..attention import BUILTIN
from ..config import type_name
from ..datasets import IMAGEFOLDER, RESIZE_MODES, SOURCES, DataConfig
from ..device import DEVICE_SETTINGS
from ..models import BACKBONES, POSITIONS
from ..names import AUGMENTATIONS
from ..recipe import OPTIMIZERS, SCHEDULERS, Recipe, Runtime
from ..spec import (
    GRID_KEYS,
    MAX_PLAN_SEEDS,
    MAX_STUDY_BYTES,
    MEASURE_PRECISIONS,
    PARAM_KEYS,
    PRUNERS,
    SCOPES,
    SEED_PLAN_KEYS,
    TOP_KEYS,
    Measure,
    Tuning,
)
from ..storage import STORAGE_SCHEMES

# `name: type = default  # comment` in a dataclass body
_FIELD_LINE = re.compile(r"\s+(?P<name>[A-Za-z_]\w*): [^#]*#\s*(?P<comment>.*)")

# sections read by a config dataclass: section key -> (class, allowed values of its keys)
SECTIONS: Mapping[str, tuple[type, Mapping[str, Sequence[str]]]] = {
    "dataset": (DataConfig, {"name": [*SOURCES, f"{IMAGEFOLDER}<path>"], "augment": AUGMENTATIONS,
                             "resize": RESIZE_MODES}),
    "recipe": (Recipe, {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS}),
    "tuning": (Tuning, {"scope": SCOPES, "pruner": PRUNERS}),
    "measure": (Measure, {"device": DEVICE_SETTINGS, "precision": MEASURE_PRECISIONS}),
    "runtime": (Runtime, {"device": DEVICE_SETTINGS}),
}
# fields whose YAML form differs from the parsed one: (section, key) -> (type, default) as written in the file
YAML_FORMS: Mapping[tuple[str, str], tuple[str, str]] = {("tuning", "space"): ("mapping", "{}")}

# keys the loader reads itself: key -> (type, default, allowed, meaning)
TOP_HELP: Mapping[str, tuple[str, str, str, str]] = {
    "name": ("str", "required", "letters, digits, `_`, `-`, `.`; 1 to 80, starting with a letter or digit",
             "the study's name: storage, run folder and report folder are keyed by it"),
    "description": ("str", '""', "", "one line for the plan and the report"),
    "dataset": ("mapping", "required", "see [dataset](#dataset)", "which data, how much, how split and augmented"),
    "grid": ("mapping", "required", "see [grid](#grid)", "the factors; every distinct combination is an arm"),
    "seeds": ("list[int] or mapping", "[0]", "see [seeds](#seeds)", "seeds every arm is trained with"),
    "min_effect_pp": ("float", "0.5", "> 0 and <= 100",
                      "the effect (percentage points) the report asks 'how many seeds would detect it?' about"),
    "recipe": ("mapping", "{}", "see [recipe](#recipe)", "training settings held fixed across arms"),
    "tuning": ("mapping", "{}", "see [tuning](#tuning)", "Optuna tuning of recipe keys"),
    "measure": ("mapping", "{}", "see [measure](#measure)", "how the profile phase times arms"),
    "runtime": ("mapping", "{}", "see [runtime](#runtime)", "where and how fast to run (threads are fingerprinted)"),
    "storage": ("str", "sqlite:///runs/<name>/optuna.db", ", ".join(f"`{s}...`" for s in STORAGE_SCHEMES),
                "Optuna storage URL (`--storage` overrides it)"),
    "output": ("str", "reports/<name>", "a relative folder under `reports/`, without `..`",
               "report folder; one study per folder (a `.ablate-study` marker names its owner)"),
    "artifacts": ("str", "`artifacts/` beside a SQLite/journal file, else runs/<name>/artifacts", "a folder path",
                  "optuna-dashboard's artifact store (curves, report files); a shared folder when workers run on "
                  "several machines"),
}

GRID_HELP: Mapping[str, tuple[str, str, str, str]] = {
    "backbones": ("list", "required", "names below, import paths `pkg.mod:NAME`, or mappings with "
                  + ", ".join(f"`{f.name}`" for f in dataclasses.fields(BackboneChoice)),
                  "backbone networks; `head` picks the classifier, `bn: false` builds without BatchNorm"),
    "attention": ("list[str]", "required", "names below, installed plugins, or import paths `pkg.mod:Class`",
                  "attention types; `none` is the baseline"),
    "positions": ("list[str]", "each backbone's default", "names below", "where modules go; each backbone takes the "
                  "ones it has; positions building the same model on a backbone collapse to the first listed"),
    "reductions": ("list[int]", "[16]", "integers >= 1", "reduction ratios (hidden = max(1, C // r)); ratios giving "
                   "the same hidden widths collapse to the smallest"),
    "stages": ("list", "[all]", "`all`, a stage index, or a list of stage indexes", "stages (blocks of the conv "
               "backbones, residual stages of the ResNets) that get a module"),
    "knobs": ("mapping", "{}", "attention name -> knob -> list of values", "module-specific factors (below)"),
}

SEEDS_HELP: Mapping[str, tuple[str, str, str, str]] = {
    "min": ("int", "required", f">= 2, <= {MAX_PLAN_SEEDS}", "seeds every arm gets"),
    "max": ("int", "required", f">= min, <= {MAX_PLAN_SEEDS}", "most seeds an arm gets"),
    "target_ci_pp": ("float", "required", "> 0", "stop adding seeds once the paired-difference CI half-width "
                     "(percentage points) is below this"),
}

PARAM_HELP: Mapping[str, tuple[str, str, str, str]] = {
    "low": ("float", "required with high", "<= high; > 0 when log", "range start"),
    "high": ("float", "required with low", ">= low", "range end"),
    "log": ("bool", "false", "true, false", "sample on a log scale"),
    "choices": ("list", "", "valid values of the recipe key", "categorical instead of a range"),
}


def _cell(text: object) -> str:
    """Table cell text: '|' escaped, one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _yaml(value: Any) -> str:
    """A default as it is written in YAML (null, true, [a, b])."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _help_table(keys: Sequence[str], help_: Mapping[str, tuple[str, str, str, str]]) -> list[str]:
    """Rows for keys the loader reads itself; a key without help is a KeyError, so the reference cannot miss one."""
    return _table(["key", "type", "default", "allowed", "meaning"],
                  ([f"`{k}`", *help_[k]] for k in keys))


def field_comments(cls: type) -> dict[str, str]:
    """field name -> the comment on its line in the class body (the dataclass's own documentation)."""
    found = (_FIELD_LINE.fullmatch(line) for line in inspect.getsource(cls).splitlines())
    return {m["name"]: m["comment"] for m in found if m is not None}


def _dataclass_table(section: str) -> list[str]:
    cls, allowed = SECTIONS[section]
    hints, comments = get_type_hints(cls), field_comments(cls)
    rows = []
    for f in dataclasses.fields(cls):
        default = _yaml(f.default) if f.default is not dataclasses.MISSING else "required"
        kind, default = YAML_FORMS.get((section, f.name), (type_name(hints[f.name]), default))
        rows.append([f"`{f.name}`", kind, default, ", ".join(allowed.get(f.name, ())), comments.get(f.name, "")])
    return _table(["key", "type", "default", "allowed", "meaning"], rows)


def reference() -> str:
    """The study-file reference as markdown."""
    out = [
        "# Study file reference",
        "",
        "<!-- generated by `ablate spec` from ablate/spec/ and the config classes; do not edit by hand -->",
        "",
        f"A study file is one YAML mapping, UTF-8, at most {MAX_STUDY_BYTES / 2**20:g} MiB. It is validated on "
        "load; any mistake stops the command (exit code 2) with one paragraph naming the file, the key and the "
        "allowed values, before anything is written.",
        "",
        "- A key given twice and YAML anchors and aliases (`&a`, `*a`, `<<: *a`) are refused; loading is safe "
        "(no Python tags).",
        "- Numbers must be finite (`.nan`, `.inf` are refused) and integers must fit 64 bits; ranges are checked "
        "on load and the message spells the range out.",
        "- `train_size` and `test_size` may not exceed the images the dataset holds, and `val_fraction` must "
        "leave images to train and validate on.",
        "- Lists of one item may be written as the item (`seeds: 0`).",
        "",
        "## Top level",
        "",
        *_help_table(TOP_KEYS, TOP_HELP),
    ]
    for key in TOP_KEYS:
        if key in SECTIONS:
            out += [f"## {key}", "", _cell(inspect.getdoc(SECTIONS[key][0]) or ""), "", *_dataclass_table(key)]
        if key == "grid":
            out += _grid_section()
        if key == "seeds":
            out += ["## seeds", "", f"A list of at most {MAX_PLAN_SEEDS} distinct integers (0 to 2**63-1), or a "
                    "precision-targeted seed plan (seeds 0 .. max-1, added on demand):", "",
                    *_help_table(SEED_PLAN_KEYS, SEEDS_HELP)]
        if key == "tuning":
            out += ["### tuning.space", "",
                    "Keys: recipe keys (" + ", ".join(f"`{f.name}`" for f in dataclasses.fields(Recipe)) + "). "
                    "Each value is a range or a list of choices:", "", *_help_table(PARAM_KEYS, PARAM_HELP)]
    return "\n".join(out).rstrip() + "\n"


def _grid_section() -> list[str]:
    knob_rows = [[f"`{name}`", f"`{k.name}`", _yaml(k.default), k.describe_allowed(), k.help]
                 for name, cls in BUILTIN.items() for k in cls.knobs]
    return [
        "## grid", "", *_help_table(GRID_KEYS, GRID_HELP),
        "### Backbones", "",
        *_table(["name", "stages", "positions (default first)", "heads (first: default)", "description"],
                ([f"`{b.name}`", b.layout(), ", ".join(dict.fromkeys([b.default_position, *b.positions])),
                  ", ".join(b.heads), b.description] for name in BACKBONES if BACKBONES.is_builtin(name)
                 for b in [BACKBONES[name]])),
        "### Attention types", "",
        *_table(["name", "kind", "uses reductions"],
                ([f"`{name}`", cls.kind, "yes" if cls.uses_reduction else "no"] for name, cls in BUILTIN.items())),
        "### Positions", "",
        *_table(["name", "where"], ([f"`{name}`", where] for name, where in POSITIONS.items())),
        "### Knobs", "",
        *_table(["attention", "knob", "default", "allowed", "meaning"], knob_rows),
    ]
