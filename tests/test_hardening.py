"""Values that parse but cannot work (issue 11): every one is exit code 2, a message naming the key, and
nothing written.

Each case runs the real command through `ablate.cli.main` in an empty working folder and checks
that the folder holds afterwards exactly what it held before (no runs/, no reports/, no data/).
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablate.arms import BackboneChoice, collapse_notes, enumerate_arms
from ablate.cli import main
from ablate.cli.spec import reference
from ablate.errors import AblateError
from ablate.files import REPORT_MARKER, mark_report_folder
from ablate.report import output
from ablate.spec import TOP_KEYS, load_study

from .conftest import GOOD

ROOT = Path(__file__).resolve().parents[1]

GOOD_TEXT = yaml.safe_dump(GOOD, sort_keys=False)
PLACEHOLDER = "__VALUE__"


def run_cli(argv: Sequence[str]) -> int:
    """Exit code of `ablate ARGV`: main's return value, or argparse's SystemExit code for usage errors."""
    try:
        return main(list(argv))
    except SystemExit as stop:
        return int(stop.code or 0)


def with_value(dotted: str, raw: str, doc: dict | None = None) -> str:
    """GOOD as YAML text with the key `dotted` (a.b.c) set to the YAML scalar `raw`, written verbatim."""
    doc = copy.deepcopy(doc or GOOD)
    node = doc
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = PLACEHOLDER
    return yaml.safe_dump(doc, sort_keys=False).replace(PLACEHOLDER, raw)


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder (runs/ and reports/ would be created here)."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def faulted(argv: Sequence[str], fragments: Sequence[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `argv`: exit 1 (the environment's fault), one line holding every fragment, no traceback."""
    assert run_cli(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def refused(folder: Path, argv: Sequence[str], fragments: Sequence[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `argv` in `folder`: exit 2, every fragment in stderr, no traceback, nothing new in the folder."""
    before = listing(folder)
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err
    assert "Traceback" not in err
    assert listing(folder) == before
    return err


# ----------------------------------------------------------------------------- 1. finite, sane numbers

NUMBER_CASES = [
    ("recipe.lr", ".nan"),
    ("recipe.lr", ".inf"),
    ("recipe.lr", "nan"),  # a string to PyYAML; float('nan') to the config
    ("recipe.weight_decay", "-.inf"),
    ("recipe.epochs", "99999999999999999999999"),
    ("dataset.val_fraction", ".nan"),
    ("dataset.split_seed", "18446744073709551616"),  # 2**64
    ("dataset.train_size", "9223372036854775808"),  # 2**63
    ("measure.block_time", ".inf"),
    ("measure.block_time", ".nan"),
    ("measure.rounds", "99999999999999999999999"),
    ("min_effect_pp", ".nan"),
    ("runtime.threads", "99999999999999999999999"),
    ("tuning.sampler_seed", "4294967296"),  # 2**32: numpy's RandomState (Optuna's TPE) takes < 2**32
]


@pytest.mark.parametrize("key,raw", NUMBER_CASES, ids=[f"{k}={v}" for k, v in NUMBER_CASES])
def test_unusable_numbers_in_study_files(work: Path, capsys, key: str, raw: str) -> None:
    path = work / "s.yaml"
    path.write_text(with_value(key, raw))
    refused(work, ["plan", str(path), "--no-timing"], [str(path), key.split(".")[-1]], capsys)


@pytest.mark.parametrize("text,key", [
    ("seeds: [0, 99999999999999999999999]", "seeds[1]"),
    ("seeds: {min: 2, max: 4, target_ci_pp: .inf}", "seeds.target_ci_pp"),
    ("grid: {backbones: [cnn], attention: [none, se], reductions: [99999999999999999999]}", "grid.reductions[0]"),
    ("grid: {backbones: [cnn], attention: [none, simam], knobs: {simam: {lambda: [.inf]}}}",
     "grid.knobs.simam.lambda[0]"),
    ("tuning: {space: {lr: {low: .nan, high: 0.1}}}", "tuning.space.lr.low"),
    ("measure: {batch_sizes: [1, 18446744073709551616]}", "measure.batch_sizes[1]"),
])
def test_unusable_numbers_in_lists_and_nested_keys(work: Path, capsys, text: str, key: str) -> None:
    section = text.split(":")[0]
    doc = {k: v for k, v in GOOD.items() if k != section}
    path = work / "s.yaml"
    path.write_text(yaml.safe_dump(doc) + text + "\n")
    refused(work, ["plan", str(path), "--no-timing"], [str(path), key], capsys)


@pytest.mark.parametrize("argv,option", [
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "-inf"], "--lr"),
    (["train", "--val-fraction", "nan"], "--val-fraction"),
    (["train", "--grad-clip", "1e999"], "--grad-clip"),  # overflows to inf
    (["train", "--seed", str(2**70)], "--seed"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--train-size", str(2**64)], "--train-size"),
    (["train", "--knob", "lambda=inf", "--attention", "simam"], "--knob"),
    (["profile", "--block-time", "nan"], "--block-time"),
    (["profile", "--rounds", str(2**70)], "--rounds"),
    (["profile", "--reduction", f"16,{2**64}"], "--reduction"),
])
def test_unusable_numbers_on_the_command_line(work: Path, capsys, argv: list[str], option: str) -> None:
    err = refused(work, [*argv, "--no-timing"] if argv[0] == "profile" else argv, [option], capsys)
    assert err.strip().splitlines()[-1].startswith(f"ablate {argv[0]}: error: argument {option}")


# ----------------------------------------------------------------------------- 2. sizes the dataset holds


@pytest.mark.parametrize("changes,key,numbers", [
    ({"name": "fashion-mnist", "train_size": 100000}, "dataset.train_size", ["100000", "60000"]),
    ({"name": "fashion-mnist", "test_size": 20000}, "dataset.test_size", ["20000", "10000"]),
    ({"name": "cifar10", "train_size": 50001}, "dataset.train_size", ["50001", "50000"]),
    ({"name": "fashion-mnist", "train_size": 5}, "dataset.train_size", ["5", "10 (one per class)"]),
    ({"name": "synthetic", "train_size": 20, "val_fraction": 0.99}, "dataset.val_fraction", ["20"]),
])
def test_sizes_beyond_the_dataset_are_refused_before_anything(work: Path, capsys, changes: dict, key: str,
                                                              numbers: list[str]) -> None:
    path = work / "s.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "dataset": changes}))
    refused(work, ["plan", str(path), "--no-timing"], [str(path), key, *numbers], capsys)
    refused(work, ["run", str(path)], [key], capsys)


def test_train_size_beyond_the_dataset_on_the_command_line(work: Path, capsys) -> None:
    refused(work, ["train", "--dataset", "fashion-mnist", "--train-size", "100000", "--data-dir", str(work / "data")],
            ["--train-size", "100000", "60000"], capsys)


def test_plan_counts_no_more_images_than_exist(work: Path, capsys) -> None:
    path = work / "s.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "dataset": {"name": "fashion-mnist", "val_fraction": 0.1}}))
    assert run_cli(["plan", str(path), "--no-timing"]) == 0
    assert "54000 train images per epoch" in capsys.readouterr().out  # 60,000 - 10% validation


# ----------------------------------------------------------------------------- 3. a grid without `none`


def test_plan_without_a_baseline_arm(work: Path, capsys) -> None:
    path = work / "s.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "grid": {"backbones": ["cnn"], "attention": ["se", "eca"]}}))
    assert run_cli(["plan", str(path), "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "arms: 2;" in out and "no 'none' arm for cnn" in out
    assert listing(work) == {"s.yaml"}


def test_baseline_tuning_without_a_baseline_arm_is_refused(work: Path, capsys) -> None:
    path = work / "s.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "grid": {"backbones": ["cnn"], "attention": ["se"]},
                                    "tuning": {"scope": "baseline", "space": {"lr": {"low": 1e-4, "high": 1e-2}}}}))
    refused(work, ["plan", str(path), "--no-timing"], ["tuning.scope", "'none'", "per_arm"], capsys)


# ----------------------------------------------------------------------------- 4. YAML and files


def test_duplicate_key_names_file_line_and_key(work: Path, capsys) -> None:
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT + "tuning:\n  n_trials: 1\n  n_trials: 2\n")
    line = GOOD_TEXT.count("\n") + 3
    refused(work, ["plan", str(path)], [str(path), f"line {line}", "duplicate key 'n_trials'"], capsys)
    path.write_text(GOOD_TEXT + "name: other\n")
    line = GOOD_TEXT.count("\n") + 1
    refused(work, ["plan", str(path)], [f"line {line}", "duplicate key 'name'"], capsys)


@pytest.mark.parametrize("text", [
    "description: &d hello\nx: *d\n",
    "recipe: &r {epochs: 1}\ntuning: {<<: *r}\n",
    "description: &unused hello\n",
])
def test_anchors_and_aliases_are_refused(work: Path, capsys, text: str) -> None:
    path = work / "s.yaml"
    doc = {k: v for k, v in GOOD.items() if k != "recipe"}
    path.write_text(yaml.safe_dump(doc) + text)
    refused(work, ["plan", str(path)], [str(path), "anchors and aliases"], capsys)


def test_billion_laughs_fails_fast(work: Path, capsys) -> None:
    """Nine levels of nine aliases: 9**9 (387 million) strings once expanded; refused at the first alias."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT + "\n".join(lines) + "\ndescription: *a9\n")
    start = time.perf_counter()
    refused(work, ["plan", str(path)], [str(path), "anchors and aliases"], capsys)
    assert time.perf_counter() - start < 5


def test_study_file_must_be_utf8_text(work: Path, capsys) -> None:
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT, encoding="utf-16")
    refused(work, ["plan", str(path)], [str(path), "not a UTF-8 text file"], capsys)
    path.write_bytes(GOOD_TEXT.replace("tiny", "caf\u00e9").encode("latin-1"))
    refused(work, ["plan", str(path)], [str(path), "byte 0xe9", "not UTF-8"], capsys)
    path.write_bytes(bytes(range(256)) * 4)
    refused(work, ["plan", str(path)], [str(path), "not a UTF-8 text file"], capsys)
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_TEXT.encode())  # a UTF-8 BOM is fine
    assert load_study(path).name == "tiny"


@pytest.mark.parametrize("make,fragment", [
    (lambda w: w / ("x" * 300 + ".yaml"), "File name too long"),
    (lambda w: w / "missing.yaml", "study file not found"),
    (lambda w: w, "is a folder"),
])
def test_unreadable_study_paths(work: Path, capsys, make, fragment: str) -> None:
    path = make(work)
    err = refused(work, ["plan", str(path)], [fragment], capsys)
    assert len(err.splitlines()) == 1


def test_oversized_and_overnested_files(work: Path, capsys) -> None:
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT + "description: " + "x" * (2 << 20) + "\n")
    refused(work, ["plan", str(path)], [str(path), "larger than"], capsys)
    path.write_text(GOOD_TEXT + "description: " + "[" * 5000 + "]" * 5000 + "\n")
    refused(work, ["plan", str(path)], [str(path), "nested too deeply"], capsys)
    path.write_text(GOOD_TEXT + "description: " + "9" * 5000 + "\n")  # beyond Python's int-from-string limit
    refused(work, ["plan", str(path)], [str(path), "invalid YAML"], capsys)


# ----------------------------------------------------------------------------- 5. names matched in full


@pytest.mark.parametrize("name", ["tiny\n", "tiny\nx", "", "-tiny", "x" * 81, "t\u0131ny"])
def test_study_names_are_matched_in_full(work: Path, capsys, name: str) -> None:
    path = work / "s.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "name": name}))
    refused(work, ["plan", str(path)], [str(path), "name", "not a valid study name"], capsys)


def test_measure_device_index_is_ascii(work: Path, capsys) -> None:
    path = work / "s.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "measure": {"device": "cuda:\u0663"}}))  # ARABIC-INDIC DIGIT THREE
    refused(work, ["plan", str(path)], ["measure.device"], capsys)


# ----------------------------------------------------------------------------- 6. arms deduplicated by model


def test_reductions_building_the_same_model_collapse(work: Path, capsys) -> None:
    # cnn blocks have 32, 64, 128 channels; hidden = max(1, C // r): r=128 and r=1000 both give (1, 1, 1)
    path = work / "s.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "grid": {"backbones": ["cnn"], "attention": ["none", "se"],
                                                     "reductions": [1000, 128, 16]}}))
    assert [a.id for a in load_study(path).arms] == ["cnn/none", "cnn/se/after_relu/r128/s1-3",
                                                     "cnn/se/after_relu/r16/s1-3"]
    assert run_cli(["plan", str(path), "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "reduction 1000 gives the same hidden widths (1,1,1) as 128" in out
    assert "r1000" not in out


def test_collapse_notes_name_positions_too() -> None:
    cnn = BackboneChoice("cnn")
    notes = collapse_notes([cnn], ["se"], ["after_relu", "block_end"], [16])
    assert notes == ["on cnn, position 'block_end' builds the same model as 'after_relu'; kept once as 'after_relu'."]
    assert collapse_notes([cnn], ["none"], ["after_relu", "block_end"], [16, 1000]) == []
    assert len(enumerate_arms([cnn], ["se"], ["after_relu"], [128, 1000])) == 1


# ----------------------------------------------------------------------------- 7. output folders


@pytest.mark.parametrize("out", [".", "reports", "reports/", "/tmp/ablate-out", "../x", "reports/../x", "studies/x",
                                 "", "./reports"])
def test_study_output_only_under_reports(work: Path, capsys, out: str) -> None:
    path = work / "s.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "output": out}))
    refused(work, ["plan", str(path)], [str(path), "output", "under reports/"], capsys)


@pytest.mark.parametrize("out", [".", "reports", "/tmp/ablate-out", "../x", "studies/x", "reports/a/../../x"])
def test_report_out_only_under_reports(work: Path, capsys, out: str) -> None:
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    refused(work, ["report", str(path), "--out", out], ["--out", "under reports/"], capsys)


def test_report_out_may_not_follow_a_symlink_out_of_reports(work: Path, tmp_path: Path, capsys) -> None:
    (work / "reports").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (work / "reports" / "link").symlink_to(tmp_path / "elsewhere")
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    refused(work, ["report", str(path), "--out", "reports/link"], ["--out"], capsys)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_report_refuses_another_studys_folder(work: Path, capsys) -> None:
    other = work / "reports" / "theirs"
    other.mkdir(parents=True)
    (other / REPORT_MARKER).write_text("other-study\n")
    (other / "report.md").write_text("their report")
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    refused(work, ["report", str(path), "--out", "reports/theirs"], ["'other-study'", "'tiny'"], capsys)
    refused(work, ["report", str(path), "--out", "reports/theirs/figures"], ["'other-study'"], capsys)
    assert (other / "report.md").read_text() == "their report"


def test_report_into_a_missing_folder_creates_and_marks_it(work: Path, capsys, monkeypatch) -> None:
    def fake_write_report(study, *, out_dir, **kwargs):  # the real one needs a trained study; it marks first too
        mark_report_folder(Path(out_dir), study.name)
        output.write_text(Path(out_dir) / "report.md", f"# {study.name}\n")
        return Path(out_dir) / "report.md"

    monkeypatch.setattr("ablate.report.write_report", fake_write_report)
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    assert run_cli(["report", str(path), "--out", "reports/new/deeper"]) == 0
    folder = work / "reports" / "new" / "deeper"
    assert (folder / "report.md").read_text() == "# tiny\n"
    assert (folder / REPORT_MARKER).read_text() == "tiny\n"
    assert run_cli(["report", str(path), "--out", "reports/new/deeper"]) == 0  # its own folder: fine again


def test_report_no_storage_writes_nothing(work: Path, capsys) -> None:
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    refused(work, ["report", str(path), "--out", "reports/x"], ["does not exist"], capsys)


def test_report_over_a_file_is_refused(work: Path, capsys) -> None:
    (work / "reports").mkdir()
    (work / "reports" / "x").write_text("a file")
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    refused(work, ["report", str(path), "--out", "reports/x/y"], ["is a file"], capsys)


@contextlib.contextmanager
def read_only(path: Path, mode: int) -> Iterator[None]:
    """`path` unwritable for this process, root included: mode bits for a user, the immutable attribute
    (chattr +i, which root obeys too) for root; skips where neither can make it so."""
    if os.geteuid() != 0:
        old = stat.S_IMODE(path.stat().st_mode)
        path.chmod(mode)
        try:
            yield
        finally:
            path.chmod(old)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("root ignores file modes, and the immutable attribute (chattr +i) is not available here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_read_only_reports_folder(work: Path, capsys) -> None:
    reports = work / "reports"
    reports.mkdir()
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    with read_only(reports, 0o555):
        refused(work, ["report", str(path), "--out", "reports/x"], ["read-only"], capsys)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002, 0o077])
def test_report_files_get_the_umask_permissions(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        output.write_text(tmp_path / "sub" / "report.md", "text")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "sub" / "report.md").stat().st_mode)
    assert mode == 0o666 & ~umask
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["report.md"]  # no temporary file left


# ----------------------------------------------------------------------------- 8. the generated reference


def test_checked_in_reference_is_the_generated_one() -> None:
    assert (ROOT / "docs" / "study-file.md").read_text(encoding="utf-8") == reference(), (
        "docs/study-file.md is stale: regenerate it with `ablate spec > docs/study-file.md`")


def test_reference_lists_every_key(capsys) -> None:
    import dataclasses

    from ablate.datasets import DataConfig
    from ablate.recipe import Recipe, Runtime
    from ablate.spec import Measure, Tuning

    assert run_cli(["spec"]) == 0
    text = capsys.readouterr().out
    assert text == reference()
    for key in TOP_KEYS:
        assert f"| `{key}` |" in text
    for cls in (DataConfig, Recipe, Runtime, Measure, Tuning):
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in text
    assert "| `lr` | float | 0.001 |" in text  # Recipe's default learning rate


# ----------------------------------------------------------------------------- 9. fuzzing the YAML text

NUMERIC_KEYS = [k for k, _ in NUMBER_CASES] + ["recipe.batch_size", "recipe.momentum", "dataset.test_size",
                                                "dataset.rotate_degrees", "runtime.eval_batch_size",
                                                "tuning.n_trials", "description"]
unusable = st.one_of(
    st.sampled_from([".nan", ".NaN", ".inf", "-.inf", "+.inf", ".Inf"]),
    st.integers(min_value=2**63, max_value=2**90).map(str),
    st.integers(min_value=-(2**90), max_value=-(2**63) - 1).map(str),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(NUMERIC_KEYS), raw=unusable, as_list=st.booleans())
def test_fuzz_unusable_numbers_are_always_refused(tmp_path_factory, key: str, raw: str, as_list: bool) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_text(with_value(key, f"[{raw}]" if as_list else raw))
    with pytest.raises(AblateError) as err:
        load_study(path)
    assert str(path) in str(err.value) and key.split(".")[-1] in str(err.value)


GOOD_LINES = yaml.safe_dump(GOOD, sort_keys=False, default_flow_style=False).splitlines()
KEY_LINES = [i for i, line in enumerate(GOOD_LINES) if not line.lstrip().startswith("- ") and ":" in line]


@settings(max_examples=60, deadline=None)
@given(index=st.sampled_from(KEY_LINES), value=st.sampled_from(["", " 1", " x", " .nan", " [1, 2]"]))
def test_fuzz_duplicate_keys_are_always_refused(tmp_path_factory, index: int, value: str) -> None:
    line = GOOD_LINES[index]
    key = line.split(":")[0]
    lines = [*GOOD_LINES[:index], f"{key}:{value}" if value else line, *GOOD_LINES[index:]]  # the original second
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AblateError, match=f"line {index + 2}, .*duplicate key '{key.strip()}'"):
        load_study(path)


@settings(max_examples=60, deadline=None)
@given(index=st.sampled_from(KEY_LINES), depth=st.integers(1, 12), width=st.integers(1, 12))
def test_fuzz_aliases_are_always_refused(tmp_path_factory, index: int, depth: int, width: int) -> None:
    lines = list(GOOD_LINES)
    if not lines[index].endswith(":"):  # a scalar value: anchor it too
        key, _, value = lines[index].partition(":")
        lines[index] = f"{key}: &anchor{value}"
    bomb = ['b0: &b0 ["lol"]'] + [f"b{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * width) + "]"
                                   for i in range(1, depth)]
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_text("\n".join([*lines, *bomb, f"description: *b{depth - 1}"]) + "\n")
    with pytest.raises(AblateError, match="anchors and aliases"):
        load_study(path)


SECRET_ENDS = ("K9mqSecr", "J8wzTail")  # no message may show any part of a password: these ends included
PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
# a study file broken in one of the ways that need the data's size, memory or the storage URL to see
breakages = st.one_of(
    st.tuples(st.just("storage"), st.builds(  # an unencoded '@' in the password: SQLAlchemy would misread it
        lambda a, b: f"postgresql://ablate:{SECRET_ENDS[0]}{a}@{b}{SECRET_ENDS[1]}@127.0.0.1:1/db", PRINTABLE,
        PRINTABLE)),
    st.tuples(st.just("recipe.batch_size"), st.integers(181, 2**62)),  # GOOD trains on 180 images
    st.tuples(st.just("dataset.input_size"), st.integers(40_000, 2**40)),  # images beyond any memory
    st.tuples(st.just("measure.batch_sizes"), st.integers(10**8, 2**40).map(lambda n: [1, n])),
    st.tuples(st.just("runtime.eval_batch_size"), st.integers(10**8, 2**40)),
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # capsys: read each time
@given(broken=breakages, command=st.sampled_from([["plan", "--no-timing"], ["run", "--quiet"]]))
def test_fuzz_sizes_memory_and_passwords_exit_2_writing_nothing(tmp_path_factory, capsys, broken: tuple[str, object],
                                                                command: list[str]) -> None:
    """Batches beyond the training set, inputs and batches beyond memory, passwords a URL cannot hold: exit 2,
    one paragraph naming the key, no piece of the password, nothing written."""
    key, value = broken
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "s.yaml"
    path.write_text(with_value(key, yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...")
                               .strip()))
    before = listing(folder)
    with contextlib.chdir(folder):
        code = run_cli([command[0], str(path), *command[1:]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert key.split(".")[-1] in err or "needs about" in err, err
    assert not any(end in err for end in SECRET_ENDS), err
    assert listing(folder) == before


# ----------------------------------------------------------------------------- 10. never touch what is not ours

TRAIN = ["train", "--dataset", "synthetic", "--train-size", "200", "--epochs", "1", "--no-progress",
         "--device", "cpu"]


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("argv,make,fragment", [
    (TRAIN + ["--checkpoint", "victim.yaml"], lambda p: p.write_text("name: mine\n"), "ablate did not write it"),
    (TRAIN + ["--checkpoint", "victim.yaml"], lambda p: p.write_bytes(b""), "ablate did not write it"),
    (TRAIN + ["--checkpoint", "victim.yaml"], lambda p: p.mkdir(), "is a folder"),
    (TRAIN + ["--checkpoint", "victim.yaml"], _fifo, "not a regular file"),
    (TRAIN + ["--json", "victim.yaml"], lambda p: p.write_text('{"mine": 1}'), "ablate did not write it"),
    (TRAIN + ["--json", "victim.yaml"], lambda p: p.mkdir(), "is a folder"),
    (TRAIN + ["--json", "victim.yaml/x.json"], lambda p: p.write_text("a file"), "is a file, not a folder"),
    (["profile", "--attention", "none", "--no-timing", "--out", "victim.yaml"], lambda p: p.write_text("mine\n"),
     "ablate did not write it"),
    (["profile", "--attention", "none", "--no-timing", "--out", "victim.yaml"], lambda p: p.mkdir(), "is a folder"),
    (["profile", "--attention", "none", "--no-timing", "--json", "victim.yaml"], _fifo, "not a regular file"),
], ids=["ckpt-yaml", "ckpt-empty", "ckpt-folder", "ckpt-fifo", "json-user", "json-folder", "json-under-file",
        "profile-out-user", "profile-out-folder", "profile-json-fifo"])
def test_outputs_never_replace_what_is_not_ablates(work: Path, capsys, argv: list[str], make, fragment: str) -> None:
    """A path ablate would write to is new or ablate's own; anything else is refused untouched, before any work."""
    victim = work / "victim.yaml"
    make(victim)
    before = victim.read_bytes() if victim.is_file() else None
    start = time.monotonic()
    refused(work, argv, [fragment, "victim.yaml"], capsys)
    assert time.monotonic() - start < 5
    if before is not None:
        assert victim.read_bytes() == before


def test_json_outputs_are_marked_and_replaced_next_time(work: Path, capsys) -> None:
    """A JSON file ablate wrote carries its key, so the same command may write it again."""
    argv = ["profile", "--attention", "none", "--no-timing", "--json", "p.json", "--out", "p.csv", "--format", "csv"]
    assert run_cli(argv) == 0 and run_cli(argv) == 0
    import json

    assert json.loads((work / "p.json").read_text())["ablate"] == "profile"
    assert (work / "p.csv").read_text().startswith("arm,backbone,attention,")


def test_report_folder_with_someone_elses_files_is_refused(work: Path, capsys) -> None:
    folder = work / "reports" / "mine"
    folder.mkdir(parents=True)
    (folder / "report.md").write_text("my own notes")
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    refused(work, ["report", str(path), "--out", "reports/mine"], ["did not write", REPORT_MARKER], capsys)
    assert (folder / "report.md").read_text() == "my own notes"


def test_stale_temporary_files_of_a_killed_report_are_removed(tmp_path: Path) -> None:
    from ablate.files import new_temp, remove_stale_temps

    (tmp_path / "figures").mkdir()
    left = [new_temp(tmp_path / "report.md"), new_temp(tmp_path / "figures" / "a.png")]
    (tmp_path / ".keep.tmp").write_text("not ours: no token")
    assert remove_stale_temps(tmp_path) == 2
    assert not any(p.exists() for p in left) and (tmp_path / ".keep.tmp").exists()


# ----------------------------------------------------------------------------- 11. validate before writing


@pytest.mark.parametrize("section", ["runtime", "measure"])
def test_a_device_this_machine_lacks_is_refused_before_storage_exists(work: Path, capsys, section: str) -> None:
    """The refusal comes before the storage (and its fingerprint) is created: fixing the file then just runs."""
    path = work / "s.yaml"
    path.write_text(yaml.safe_dump({**GOOD, section: {"device": "cuda:99"}}))
    refused(work, ["run", str(path), "--quiet"], ["cuda:99"], capsys)
    assert not (work / "runs").exists()


def _final_owners(path: Path) -> dict:
    import optuna

    from ablate.contract import FINAL_KEYS, claimed
    from ablate.storage import open_storage

    study = load_study(path)
    final = optuna.load_study(study_name="tiny/final", storage=open_storage(study.storage))
    return {key: t for key, t in claimed(final, FINAL_KEYS).items()}


def test_allow_changed_spec_reruns_items_whose_training_changed(work: Path, capsys) -> None:
    """epochs 1 -> 2 with --allow-changed-spec: every item is trained again with 2 epochs (none is reported
    with settings it was not trained with); adding a seed only adds items and keeps the trained ones."""
    from .conftest import TINY

    path = work / "tiny.yaml"
    doc = {**TINY, "recipe": {"epochs": 1, "batch_size": 50}}
    path.write_text(yaml.safe_dump(doc))
    assert run_cli(["run", str(path), "--quiet"]) == 0
    first = {k: t.number for k, t in _final_owners(path).items()}
    path.write_text(yaml.safe_dump({**doc, "recipe": {"epochs": 2, "batch_size": 50}}))
    assert run_cli(["run", str(path), "--quiet", "--allow-changed-spec"]) == 0
    assert "re-running them" in capsys.readouterr().err
    owners = _final_owners(path)
    assert set(owners) == set(first) and all(owners[k].number != first[k] for k in first)
    assert {t.user_attrs["epochs_run"] for t in owners.values()} == {2}
    assert {t.user_attrs["recipe"]["epochs"] for t in owners.values()} == {2}
    kept = {k: t.number for k, t in owners.items()}
    path.write_text(yaml.safe_dump({**doc, "recipe": {"epochs": 2, "batch_size": 50}, "seeds": [0, 1, 2]}))
    assert run_cli(["run", str(path), "--quiet", "--allow-changed-spec"]) == 0
    owners = _final_owners(path)
    assert len(owners) == 6 and all(owners[k].number == n for k, n in kept.items())


# ----------------------------------------------------------------------------- 12. bounded waits and sizes

SIZE_CASES = [  # (study changes, fragments of the refusal)
    ({"recipe": {"batch_size": 100000}}, ["recipe.batch_size", "100000", "at most 180"]),
    ({"dataset": {"name": "synthetic", "train_size": 200, "test_size": 100, "input_size": 100000}},
     ["3x100000x100000", "GiB", "free here"]),
    ({"measure": {"batch_sizes": [1, 10**9]}}, ["measure", "batch 1000000000", "free here"]),
]


@pytest.mark.parametrize("changes,fragments", SIZE_CASES, ids=["batch>train", "input_size", "timed-batch"])
def test_sizes_that_cannot_fit_are_refused_with_figures(work: Path, capsys, changes: dict, fragments) -> None:
    """Refused from shapes alone (the meta device), fast and small: nothing of that size is allocated."""
    import resource

    path = work / "s.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **changes}))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    refused(work, ["plan", str(path)], fragments, capsys)
    refused(work, ["run", str(path), "--quiet"], fragments[:1], capsys)
    assert time.monotonic() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 300 * 1024  # KiB: no big tensor was made


@pytest.mark.parametrize("argv,fragments", [
    (["profile", "--input", "3x100000x100000", "--no-timing"], ["3x100000x100000", "free here", "--input"]),
    (["profile", "--input", "3x2048x2048", "--backbone", "vgg16", "--attention", "none"], ["3x2048x2048", "GiB"]),
    (["profile", "--rounds", "100000000", "--attention", "none"], ["--rounds", "at most 100,000"]),
    (["train", "--dataset", "synthetic", "--input-size", "100000", "--no-progress", "--device", "cpu"],
     ["3x100000x100000", "free here", "--input-size"]),
    (["train", "--dataset", "synthetic", "--train-size", "300", "--batch-size", "100000", "--no-progress"],
     ["--batch-size 100000", "at most 270"]),
    (["train", "--dataset", "synthetic", "--epochs", "0", "--no-progress"], ["--epochs"]),
], ids=["profile-input", "profile-vgg-2048", "profile-rounds", "train-input-size", "train-batch", "train-option-name"])
def test_command_line_sizes_that_cannot_fit(work: Path, capsys, argv: list[str], fragments: list[str]) -> None:
    start = time.monotonic()
    err = refused(work, argv, fragments, capsys)
    assert time.monotonic() - start < 10 and "options." not in err


def test_too_many_workers_for_memory_are_refused(work: Path, capsys, monkeypatch) -> None:
    from ablate import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 4 * 2**30)  # a 4 GiB host: 4 workers fit
    assert memory.max_workers() == 4
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    refused(work, ["run", str(path), "--workers", "30", "--quiet"], ["--workers 30", "at most 4"], capsys)


def test_plan_warns_when_a_study_takes_more_than_a_day(work: Path, capsys) -> None:
    from ablate.plan import DAY_S, long_run_warning

    path = work / "s.yaml"  # 2 arms x 3 timings (2 batch sizes + the step) x 30,000 rounds x 3 blocks x 1 s = 150 h
    path.write_text(yaml.safe_dump({**GOOD, "measure": {"rounds": 30_000, "block_time": 1.0}}))
    assert run_cli(["plan", str(path), "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: the profile phase alone takes 150.0 h" in out and "measure.rounds" in out
    # 3 days of parallel work after 0 h of serial work: 3 workers bring it under one day (known closed form)
    (line,) = long_run_warning(0.0, 3 * DAY_S, items=10)
    assert "--workers 3 " in line and "72.0 h" in line
    assert long_run_warning(0.0, DAY_S - 1, items=10) == []
    assert "even 2 workers (one per item) cannot bring it under a day" in long_run_warning(0.0, 5 * DAY_S, items=2)[0]
    assert "even 1 worker (one per item) cannot" in long_run_warning(0.0, 5 * DAY_S, items=1)[0]


def test_profile_says_its_timing_estimate_and_refuses_more_than_a_day(work: Path, capsys) -> None:
    from ablate.cli.profile import check_timing_time

    # 1 arm x 3 timings (2 batch sizes + the step) x 10 rounds x 3 blocks x 0.05 s = 4.5 s
    assert "= 4.5 s of timed blocks (a lower bound" in check_timing_time(1, [1, 64], True, 10, 3, 0.05)
    # 2 arms x 2 batch sizes x 30,000 rounds x 3 blocks x 1 s = 360,000 s = 100 h: over the day a profile may take
    refused(work, ["profile", "--attention", "none,se", "--rounds", "30000", "--batch-sizes", "1,2", "--train-batch",
                   "0", "--block-time", "1", "--device", "cpu"],
            ["2 arm(s) x 2 timed setting(s)", "30,000 round(s) x 3 block(s) x 1 s = 100.0 h", "at most 24.0 h"], capsys)


@pytest.mark.parametrize("argv", [["train", "--dataset", "synthetic"], ["profile", "--no-timing"], ["run", "s.yaml"]])
def test_thread_counts_past_the_bound_are_refused(work: Path, capsys, argv: list[str]) -> None:
    """100,000 threads crashed torch's thread pool (rc 139); every --threads has an upper bound."""
    from ablate.bounds import MAX_THREADS
    from ablate.switches import check_threads

    (work / "s.yaml").write_text(GOOD_TEXT)
    refused(work, [*argv, "--threads", "100000"], ["--threads", f"1 to {MAX_THREADS}", "'100000'"], capsys)
    assert check_threads(MAX_THREADS) == MAX_THREADS
    with pytest.raises(AblateError, match=f"from 1 to {MAX_THREADS}"):
        check_threads(MAX_THREADS + 1)


def test_a_fifo_study_file_is_refused_without_waiting(work: Path, capsys) -> None:
    fifo = _fifo(work / "s.yaml")
    start = time.monotonic()
    refused(work, ["plan", str(fifo)], ["not a regular file"], capsys)
    assert time.monotonic() - start < 5


def test_a_silent_database_server_times_out_with_one_line(work: Path, capsys, monkeypatch) -> None:
    """A server that accepts connections and never answers: the connect timeout ends the wait."""
    import socket

    pytest.importorskip("psycopg")
    with socket.create_server(("127.0.0.1", 0), backlog=8) as silent:  # listens, never accepts or answers
        port = silent.getsockname()[1]
        monkeypatch.setenv("ABLATE_CONNECT_TIMEOUT_S", "2")
        path = work / "s.yaml"
        path.write_text(yaml.safe_dump({**GOOD, "storage": f"postgresql://u:S3cr%20et@127.0.0.1:{port}/db"}))
        for command in ("status", "run"):  # the environment, not the input: exit 1
            start = time.monotonic()
            err = faulted([command, str(path)] + (["--quiet"] if command == "run" else []),
                          ["did not answer within 2 s", "ABLATE_CONNECT_TIMEOUT_S",
                           f"postgresql://u:***@127.0.0.1:{port}/db"], capsys)
            assert time.monotonic() - start < 15 and "S3cr" not in err


def test_val_fraction_that_leaves_nothing_to_train_on(work: Path, capsys) -> None:
    path = work / "s.yaml"
    path.write_text(with_value("dataset.val_fraction", "0.9999"))
    refused(work, ["plan", str(path)], ["leaves 0 to train on"], capsys)


@pytest.mark.parametrize("command", ["plan", "status"])
def test_interrupt_says_resume_only_where_something_resumes(work: Path, capsys, monkeypatch, command: str) -> None:
    import ablate.cli.plan as plan_cli
    import ablate.cli.status as status_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(plan_cli if command == "plan" else status_cli, "run", interrupted)
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    assert run_cli([command, str(path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "resume" not in err


# ----------------------------------------------------------------------------- 13. faults of the environment


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 6 MiB tmpfs (root only; skipped where mounting is not allowed); yields (folder, grow) where grow()
    gives it 256 MiB, as freeing space would."""
    import subprocess

    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=256m", str(folder)], check=True)

    try:
        yield folder, grow
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_disk_full_is_one_line_and_the_rerun_completes_exactly_once(small_disk, monkeypatch) -> None:
    """Storage and checkpoints (~14 MB for the ref000 CNN) cannot fit on 6 MiB: exit 1 with one line naming the
    full disk; after space is freed the same command completes every item exactly once. Each run is its own
    process, as a user's are (in one process the first run's trial would look alive until its heartbeat ends)."""
    from .conftest import expected_items, final_counts, write_study

    folder, grow = small_disk
    monkeypatch.chdir(folder)
    path = write_study(folder, runtime={"threads": 1}, seeds=[0])
    command = [sys.executable, "-m", "ablate", "run", path.name, "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    first = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in first.stderr.splitlines() if line.startswith("ablate run: error:")]
    assert first.returncode == 1, first.stderr
    assert len(lines) == 1 and "is full; free space" in lines[0] and "Traceback" not in first.stderr
    grow()
    again = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    counts = final_counts(path)
    assert set(counts) == expected_items(path) and set(counts.values()) == {1}


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_read_only_sqlite_storage_is_one_line(work: Path, capsys) -> None:
    """A storage file this process may not write: one line, exit 1 (the environment, not the input)."""
    import sqlite3

    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    db = work / "ro.db"
    sqlite3.connect(db).close()
    with read_only(db, 0o444):
        assert not os.access(db, os.W_OK)
        assert run_cli(["run", str(path), "--storage", f"sqlite:///{db}", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "read-only" in err and "Traceback" not in err
    assert str(db) in err and "writable" in err and "free space" not in err.lower()


def test_environment_faults_are_recognised_in_exception_chains() -> None:
    import errno as errno_module

    from ablate.errors import environment_fault

    try:
        try:
            raise OSError(errno_module.ENOSPC, "No space left on device", "runs/x/ck.pt")
        except OSError as inner:
            raise RuntimeError("saving failed") from inner
    except RuntimeError as outer:
        assert "disk is full (runs/x/ck.pt)" in environment_fault(outer)
    sqlite_text = "(sqlite3.OperationalError) attempt to write a readonly database"
    assert "read-only" in environment_fault(Exception(sqlite_text))
    assert environment_fault(ValueError("a bug")) is None


def _chain(*errors: BaseException) -> BaseException:
    """errors[0] raised from errors[1] raised from ... (as Optuna wraps SQLAlchemy, which wraps the driver)."""
    for outer, inner in zip(errors, errors[1:]):
        outer.__cause__ = inner
    return errors[0]


def _statement_timeout() -> BaseException:
    """What Optuna raises when PostgreSQL cancels a statement at its statement_timeout."""
    import optuna
    import sqlalchemy.exc

    psycopg = pytest.importorskip("psycopg")
    driver = psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
    wrapped = sqlalchemy.exc.OperationalError("SELECT studies.study_id FROM studies", {}, driver)
    return _chain(optuna.exceptions.StorageInternalError("An exception is raised during the commit."), wrapped,
                  driver)


def test_server_timeouts_are_faults_of_the_environment(monkeypatch) -> None:
    """A statement or connect timeout anywhere in the chain: one line naming the server (masked), the wait and
    the setting that sets it; other driver errors are not classified."""
    import sqlalchemy.exc

    from ablate.errors import EnvironmentFault, environment_fault
    from ablate.storage import environment_faults

    psycopg = pytest.importorskip("psycopg")
    assert "did not answer within its statement timeout" in environment_fault(_statement_timeout())
    monkeypatch.setenv("ABLATE_STATEMENT_TIMEOUT_S", "7")
    monkeypatch.setenv("ABLATE_CONNECT_TIMEOUT_S", "3")
    url = "postgresql://u:S3cret@db.example:5432/x"
    expired = psycopg.errors.ConnectionTimeout("connection timeout expired")
    connect = sqlalchemy.exc.OperationalError(None, None, expired)
    for err, wait in ((_statement_timeout(), "7 s (statement timeout"), (connect, "3 s (connect timeout)")):
        with pytest.raises(EnvironmentFault) as caught:
            with environment_faults(url):
                raise err
        text = str(caught.value)
        assert f"the storage server postgresql://u:***@db.example:5432/x did not answer within {wait}" in text
        assert "S3cret" not in text and ("ABLATE_STATEMENT_TIMEOUT_S" in text or "ABLATE_CONNECT_TIMEOUT_S" in text)
    refused = sqlalchemy.exc.OperationalError(None, None, psycopg.OperationalError("connection refused"))
    assert environment_fault(refused) is None


@pytest.mark.parametrize("command", ["status", "run"])
def test_a_statement_timeout_is_one_line_exit_1(work: Path, capsys, monkeypatch, command: str) -> None:
    """The statement timeout deep in Optuna (status: listing the studies; run: anywhere in the run): one line."""
    import ablate.cli.run as run_cli_module
    import ablate.status
    import ablate.storage

    def timed_out(*args, **kwargs):
        raise _statement_timeout()

    monkeypatch.setattr(ablate.storage, "storage_missing", lambda url: False)
    monkeypatch.setattr(ablate.storage, "open_storage", lambda url, read_only=False: object())
    monkeypatch.setattr(ablate.status, "phase_studies", timed_out)
    monkeypatch.setattr(run_cli_module, "run_study", timed_out)
    monkeypatch.setenv("ABLATE_STATEMENT_TIMEOUT_S", "9")
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    argv = [command, str(path), "--storage", "postgresql://u:S3cret@db.example/x"] + (
        ["--quiet", "--phases", "final"] if command == "run" else [])
    err = faulted(argv, ["postgresql://u:***@db.example/x did not answer within 9 s (statement timeout",
                         "wait until it is free", "ABLATE_STATEMENT_TIMEOUT_S"], capsys)
    assert "S3cret" not in err and ("It resumes" in err) == (command == "run")


def test_storage_faults_name_the_storage_file_and_the_report_folder(work: Path, capsys, monkeypatch) -> None:
    """Deep in SQLite and in a write the error names no file: the message names the storage file or the report's
    folder, says what fixes it, and promises no resuming where re-running starts again (report)."""
    import errno as errno_module
    import sqlite3

    import ablate.report
    from ablate.errors import EnvironmentFault
    from ablate.storage import environment_faults

    with pytest.raises(EnvironmentFault) as caught:
        with environment_faults(f"sqlite:///{work / 'runs' / 'x.db'}"):
            raise sqlite3.OperationalError("attempt to write a readonly database")
    text = str(caught.value)
    assert f"the storage file {work / 'runs' / 'x.db'} is read-only" in text and "writable" in text
    assert "free space" not in text.lower()

    def disk_full(*args, **kwargs):
        raise OSError(errno_module.ENOSPC, "No space left on device")

    monkeypatch.setattr(ablate.report, "write_report", disk_full)
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    err = faulted(["report", str(path), "--out", "reports/full"], ["the disk is full (reports/full)",
                                                                   "free space on it"], capsys)
    assert "resume" not in err


@pytest.mark.parametrize("via", ["--storage", "$ABLATE_STORAGE"])
@pytest.mark.parametrize("url,problem", [
    ("postgresql://u2:pa ss@host:port/db", "the port 'port' is not a number"),
    ("postgresql://u2:pa ss@[::1:1/db", "the IPv6 host '[::1:1' lacks its closing ']'"),
    ("postgresql://u2:pa ss@a:b:5432/db", "the host 'a:b' holds ':'"),
])
def test_a_bad_storage_url_names_where_it_came_from_and_what_is_wrong(work: Path, capsys, monkeypatch, via: str,
                                                                       url: str, problem: str) -> None:
    path = work / "s.yaml"
    path.write_text(GOOD_TEXT)
    if via == "$ABLATE_STORAGE":
        monkeypatch.setenv("ABLATE_STORAGE", url)
    err = refused(work, ["status", str(path)] + (["--storage", url] if via == "--storage" else []),
                  [f"{via}: storage URL 'postgresql://u2:***@", problem], capsys)
    assert "pa ss" not in err and "s.yaml: storage" not in err and "password" not in err


def _imagefolder_study(work: Path, folder: Path, **dataset) -> Path:
    path = work / "s.yaml"
    doc = {**GOOD, "dataset": {"name": f"imagefolder:{folder}", "augment": [], **dataset},
           "recipe": {"epochs": 1, "batch_size": 4}}
    path.write_text(yaml.safe_dump(doc))
    return path


def _corrupt_first(folder: Path) -> None:
    (folder / "cat" / "0.png").write_bytes(b"not a png at all")


def _corrupt_last(folder: Path) -> None:
    (folder / "fox" / "5.png").write_bytes((folder / "fox" / "5.png").read_bytes()[:40])


def _mixed_sizes(folder: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((31, 17, 3), dtype=np.uint8)).save(folder / "dog" / "3.png")


@pytest.mark.parametrize("damage,fragment", [(_corrupt_first, "0.png cannot be decoded"),
                                             (_corrupt_last, "5.png cannot be decoded"),
                                             (_mixed_sizes, "different sizes")],
                         ids=["corrupt-first", "corrupt-later", "mixed-sizes"])
def test_image_folders_are_checked_at_plan(work: Path, capsys, damage, fragment: str) -> None:
    from .conftest import write_imagefolder

    folder = write_imagefolder(work.parent / "images")
    damage(folder)
    path = _imagefolder_study(work, folder)
    refused(work, ["plan", str(path), "--no-timing"], [fragment], capsys)
    refused(work, ["run", str(path), "--quiet"], [fragment], capsys)


def test_an_image_folder_with_one_class_is_refused(work: Path, capsys) -> None:
    from .conftest import write_imagefolder

    folder = write_imagefolder(work.parent / "images", classes=("cat",))
    refused(work, ["plan", str(_imagefolder_study(work, folder)), "--no-timing"], ["one class folder"], capsys)


def test_a_truncated_idx_file_is_named_at_plan(work: Path, capsys) -> None:
    from .conftest import write_idx_gz

    debian = write_idx_gz(work.parent / "debian", n_train=200, n_test=50)
    root = work.parent / "root"
    assert run_cli(["data", "fetch", "fashion-mnist", "--data-dir", str(root), "--from", str(debian)]) == 0
    images = root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    path = work / "s.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "dataset": {"name": "fashion-mnist", "train_size": 100, "test_size": 50}}))
    capsys.readouterr()
    refused(work, ["plan", str(path), "--no-timing", "--data-dir", str(root)], ["truncated", "fetch it again"], capsys)
    refused(work, ["run", str(path), "--quiet", "--data-dir", str(root)], ["truncated"], capsys)


def test_data_dir_that_is_a_file(work: Path, capsys) -> None:
    (work / "notes.txt").write_text("x")
    refused(work, ["train", "--dataset", "synthetic", "--data-dir", "notes.txt", "--no-progress"],
            ["notes.txt is a file"], capsys)


def test_storage_on_a_read_only_file_system_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """Root writes read-only files, so the file system itself is made read-only (a tmpfs remounted ro)."""
    import sqlite3
    import subprocess

    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    try:
        connection = sqlite3.connect(folder / "ro.db")
        connection.execute("create table x (a)")
        connection.commit()
        connection.close()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        monkeypatch.chdir(tmp_path)
        path = tmp_path / "s.yaml"
        path.write_text(GOOD_TEXT)
        assert run_cli(["run", str(path), "--storage", f"sqlite:///{folder / 'ro.db'}", "--quiet"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "read-only" in err and "Traceback" not in err
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
