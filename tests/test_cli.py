"""The command line as a whole: shared options have one name, one meaning and one help text, and
building the parser (`ablate --help`, any usage error) loads none of the heavy libraries."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ablate.cli.run as run_cli
from ablate.cli import COMMANDS, build_parser, command_of, main
from ablate.datasets import DATA_ENV
from ablate.device import DEVICE_SETTINGS, available_cores
from ablate.models import list_backbones
from ablate.status import RunOutcome
from ablate.storage import STORAGE_ENV, STORAGE_SCHEMES


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """'profile', 'data fetch', ... -> its parser (nested actions included)."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(commands(sub, f"{prefix}{name} "))
    return found


def options(option: str) -> dict[str, argparse.Action]:
    """command -> its action for `option`, for every command that takes it."""
    return {name: action for name, sub in commands(build_parser()).items() for action in sub._actions
            if option in action.option_strings}


SHARED = {
    "--storage": {"run", "slurm", "status", "dashboard", "report"},
    "--data-dir": {"plan", "run", "report", "train", "bench", "data list", "data fetch", "data cache"},
    "--device": {"profile", "train", "bench"},
    "--threads": {"profile", "train", "run"},
    "--backbone": {"profile", "train", "bench"},
    "--json": {"profile", "train", "bench"},
}


@pytest.mark.parametrize("option", ["--storage", "--data-dir", "--device", "--json"])
def test_a_shared_option_has_one_help_text(option: str) -> None:
    found = options(option)
    assert set(found) == SHARED[option]
    assert len({a.help for a in found.values()}) == 1, {c: a.help for c, a in found.items()}
    assert len({a.default for a in found.values()}) == 1


def test_threads_say_the_same_thing_and_their_own_default() -> None:
    """One meaning (torch intra-op threads for this command, 0 = every core); each command states its default."""
    found = options("--threads")
    assert set(found) == SHARED["--threads"]
    shared, defaults = zip(*(a.help.split("; default here: ") for a in found.values()))
    assert len(set(shared)) == 1 and "0 for every core" in shared[0]
    assert found["profile"].default == 1 and "measure.threads" in found["profile"].help
    assert found["train"].default is None and "every core" in found["train"].help
    assert found["run"].default is None and "runtime.threads" in found["run"].help


def test_backbone_is_one_option_name() -> None:
    found = options("--backbone")
    assert set(found) == SHARED["--backbone"]
    assert not options("--backbones")
    assert all(", ".join(list_backbones()) in a.help for a in found.values())
    parser = build_parser()
    assert parser.parse_args(["bench", "--backbone", "cnn,vgg16"]).backbone == ["cnn", "vgg16"]
    assert parser.parse_args(["profile", "--backbone", "vgg16"]).backbone == ["vgg16"]
    assert parser.parse_args(["train", "--backbone", "vgg16"]).backbone == "vgg16"
    assert parser.parse_args(["bench"]).backbone == ["cnn", "vgg16"]


def test_bench_backbones_is_gone(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["bench", "--backbones", "cnn"])
    assert stop.value.code == 2 and "--backbones" in capsys.readouterr().err


def test_device_defaults_to_auto_everywhere() -> None:
    found = options("--device")
    assert {a.default for a in found.values()} == {"auto"}
    assert all(setting in found["profile"].help for setting in DEVICE_SETTINGS)


def test_help_texts_name_the_real_constants() -> None:
    """Help written where the constant's module is too heavy to import at parser build time."""
    assert f"${DATA_ENV}" in options("--data-dir")["train"].help
    for scheme in ("sqlite:///", "postgresql://", "journal:"):  # the examples the --storage help gives
        assert scheme in options("--storage")["run"].help and scheme in STORAGE_SCHEMES
    assert f"${STORAGE_ENV} " in commands(build_parser())["run"].epilog


def test_json_is_the_one_way_to_json() -> None:
    assert "json" not in options("--format")["profile"].choices
    assert {a.metavar for a in options("--json").values()} == {"FILE"}


def test_threads_zero_is_every_core_and_negative_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ndataset: {name: synthetic}\ngrid: {backbones: [cnn], attention: [none]}\n"
                    "runtime: {threads: 1}\n")
    seen = []

    def fake_run_study(study, **kwargs):
        seen.append((study.runtime.threads, kwargs["phases"]))
        return RunOutcome(study, ())

    monkeypatch.setattr(run_cli, "run_study", fake_run_study)
    assert main(["run", str(path), "--quiet", "--threads", "0"]) == 0
    assert main(["run", str(path), "--quiet", "--phases", "final"]) == 0
    assert seen == [(available_cores(), ("profile", "tune", "final")), (1, ("final",))]
    for command in ("run", "train", "profile"):
        with pytest.raises(SystemExit) as stop:
            build_parser().parse_args([command, *(["x.yaml"] if command == "run" else []), "--threads", "-1"])
        assert stop.value.code == 2 and "--threads" in capsys.readouterr().err


HEAVY = ["optuna", "optuna_dashboard", "pandas", "scipy", "sqlalchemy", "fvcore", "matplotlib", "seaborn",
         "ablate.spec", "ablate.storage", "ablate.contract", "ablate.timing", "ablate.train", "ablate.runner",
         "ablate.costs", "ablate.plan", "ablate.report", "ablate.cli.spec_doc"]


def _loaded_after(code: str, modules: list[str]) -> list[str]:
    """Which of `modules` a fresh interpreter has loaded after running `code`."""
    probe = f"import json, sys\n{code}\nprint(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ablate_help_imports_no_torch() -> None:
    """`ablate --help` builds the top-level parser only (every command listed by its summary): no torch, no
    study loader, storage, Optuna, pandas, scipy or fvcore; `import ablate` alone imports no torch either."""
    help_ = "from ablate.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _loaded_after(help_, ["torch", "torchvision", *HEAVY]) == []
    assert _loaded_after("from ablate.cli import build_parser\nbuild_parser(())", ["torch"]) == []
    assert _loaded_after("import ablate", ["torch"]) == []
    assert _loaded_after("import ablate\nablate.build_model", ["torch"]) == ["torch"]  # loaded on first use


def test_a_command_parser_loads_no_heavy_library() -> None:
    """A command's own parser (`ablate train --help`) imports its module and registries, never the study
    loader, storage, Optuna, pandas, scipy or fvcore (each command imports them in its run)."""
    code = "from ablate.cli import build_parser\nbuild_parser()"
    assert _loaded_after(code, HEAVY) == []


def test_the_command_summaries_are_the_modules_own() -> None:
    """`ablate --help` lists COMMANDS' summaries without importing the modules: they must say what the
    modules' own parsers say."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {choice.dest: choice.help for choice in sub._choices_actions} == COMMANDS
    assert command_of(["--help"]) == [] and command_of(["train", "--epochs", "1"]) == ["train"]
    assert command_of(["trian"]) == []  # a typo: argparse names the commands
