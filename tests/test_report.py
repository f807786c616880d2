"""`ablate report` on a small synthetic study: every section, valid linked files, numbers from storage.

One study (3 arms x 2 seeds, 1 epoch, two reduction ratios for a factor table) is trained once per
module and reported once; the partial-study test reuses its storage with a grown study file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState
from PIL import Image
from scipy import stats as sps

from ablate.cli import main
from ablate.errors import AblateError
from ablate.report import collect, default_output, write_report
from ablate.report.markdown import Sections, escape, render
from ablate.report.tables import arm_table, summary_view
from ablate.spec import load_study
from ablate.storage import open_storage
from ablate.study import run_study

DESCRIPTION = "pipes | and <script>alert(1)</script> and `ticks`"
STUDY = {
    "name": "rep",
    "description": DESCRIPTION,
    "dataset": {"name": "synthetic", "train_size": 200, "test_size": 100, "augment": []},
    "grid": {"backbones": ["cnn"], "attention": ["none", "se", "sam"], "positions": ["after_relu"],
             "reductions": [4, 16]},
    "seeds": [0, 1],
    "recipe": {"epochs": 2, "batch_size": 50},
    "runtime": {"loss_every": 1},
    "tuning": {"enabled": True, "n_trials": 2, "epochs": 1, "space": {"lr": {"low": 5e-4, "high": 5e-3, "log": True}}},
    "measure": {"batch_sizes": [1, 8], "min_run_time": 0.01},
}
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
FILE_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


@dataclasses.dataclass(frozen=True)
class Built:
    folder: Path
    path: Path
    report: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    folder = tmp_path_factory.mktemp("report")
    old = Path.cwd()
    os.chdir(folder)
    try:
        path = folder / "rep.yaml"
        path.write_text(yaml.safe_dump(STUDY))
        run_study(load_study(path), progress=False)
        report = write_report(load_study(path))
        yield Built(folder, path, folder / report)
    finally:
        os.chdir(old)


@pytest.fixture
def in_folder(built: Built, monkeypatch: pytest.MonkeyPatch) -> Built:
    monkeypatch.chdir(built.folder)
    return built


def final_values(built: Built) -> pd.DataFrame:
    """(arm, seed, value) straight from the Optuna storage, independent of ablate.report."""
    study = load_study(built.path)
    final = optuna.load_study(study_name="rep/final", storage=open_storage(study.storage))
    rows = [{"arm": t.params["arm"], "seed": t.params["seed"], "acc": t.value}
            for t in final.get_trials(states=(TrialState.COMPLETE,))]
    return pd.DataFrame(rows)


def test_report_has_every_section(built: Built) -> None:
    text = built.report.read_text()
    assert built.report == built.folder / "reports" / "rep" / "report.md"
    for heading in ("# Ablation report: rep", "## Summary", "## Completeness", "## Environment", "## Study",
                    "## How to reproduce", "## Results", "### Cost", "## Figures", "## Factors", "### reduction",
                    "## Visual diagnostics", "## Caveats", "## Files"):
        assert f"\n{heading}\n" in f"\n{text}", heading
    for name in ("acc_vs_macs", "acc_vs_latency", "effect_vs_baseline", "accuracy_diff_heatmap", "cost_overhead",
                 "curves_cnn_se", "curves_cnn_sam", "iteration_loss_cnn", "tune_history_cnn_none",
                 "accuracy_vs_reduction", "grad_cam_cnn", "feature_maps_cnn_none", "spatial_gates_cnn_sam",
                 "channel_gates_cnn_se"):
        assert re.search(rf"\(figures/{name}[^)]*\.png\)", text), name
    assert "make report STUDY=" in text and "ablate report" in text
    assert "fvcore" in text and "Holm" in text  # caveats name the MAC policy and the correction


def test_every_linked_file_exists_and_images_are_png(built: Built) -> None:
    text = built.report.read_text()
    images = IMAGE_LINK.findall(text)
    assert len(images) >= 14
    for link in images + FILE_LINK.findall(text):
        assert not link.startswith(("/", "..")) and ".." not in Path(link).parts
        assert (built.report.parent / link).is_file(), link
    for link in images:
        file = built.report.parent / link
        assert file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(file) as im:
            im.verify()
            assert im.format == "PNG" and min(im.size) > 100


def test_tables_have_one_row_per_arm(built: Built) -> None:
    study = load_study(built.path)
    arms = pd.read_csv(built.report.parent / "tables" / "arms.csv")
    assert sorted(arms["arm"]) == sorted(a.id for a in study.arms) and len(arms) == 4
    runs = pd.read_csv(built.report.parent / "tables" / "runs.csv")
    assert len(runs) == 4 * 2
    text = built.report.read_text()
    results = text.split("## Results")[1].split("### Cost")[0]
    rows = [line for line in results.splitlines() if line.startswith("| cnn/")]
    assert len(rows) == 4


def test_accuracy_statistics_match_storage(built: Built) -> None:
    values = final_values(built)
    arms = pd.read_csv(built.report.parent / "tables" / "arms.csv").set_index("arm")
    base = values[values["arm"] == "cnn/none"]["acc"]
    for arm, g in values.groupby("arm"):
        acc = g["acc"]
        assert arms.loc[arm, "n"] == 2
        assert arms.loc[arm, "acc_mean"] == pytest.approx(acc.mean())
        assert arms.loc[arm, "acc_std"] == pytest.approx(acc.std(ddof=1))
        if acc.std() > 0:
            low, high = sps.t.interval(0.95, 1, loc=acc.mean(), scale=sps.sem(acc))
            assert (arms.loc[arm, "acc_ci_low"], arms.loc[arm, "acc_ci_high"]) == pytest.approx((low, high))
        if arm != "cnn/none":
            assert arms.loc[arm, "diff"] == pytest.approx(acc.mean() - base.mean())
    # Holm: adjusted p never below the raw one, and at most 3 x the raw one (3 comparisons)
    tested = arms.dropna(subset=["p"])
    assert (tested["p_holm"] >= tested["p"] - 1e-12).all() and (tested["p_holm"] <= 3 * tested["p"] + 1e-12).all()
    assert arms.loc["cnn/none", "verdict"] == "baseline"


def test_user_strings_are_escaped(built: Built) -> None:
    text = built.report.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "pipes \\| and" in text and "\\`ticks\\`" in text
    assert escape("a|b<c>`d`\nx") == "a\\|b&lt;c&gt;\\`d\\` x"


def test_storage_password_is_masked(in_folder: Built) -> None:
    study = load_study(in_folder.path)
    c = collect(study)
    t = arm_table(c)
    secret = dataclasses.replace(c, study=dataclasses.replace(study, storage="postgresql://ablate:s3cret@db:5432/x"))
    text = render(secret, t, Sections(summary=summary_view(t, c.batch_sizes), costs=summary_view(t, ())),
                  c.batch_sizes)
    assert "s3cret" not in text and "ablate:\\*\\*\\*@db" in text.replace("***", "\\*\\*\\*")


def test_output_must_stay_inside(in_folder: Built, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {**STUDY, "output": "../../outside"}
    path = in_folder.folder / "escape.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(AblateError, match="without '..'"):
        default_output(load_study(path))
    assert main(["report", str(path), "--no-diagnostics"]) == 2
    assert "without '..'" in capsys.readouterr().err


def test_partial_study_reports_missing_arms(in_folder: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    grown = {**STUDY, "grid": {**STUDY["grid"], "attention": ["none", "se", "sam", "eca"]}}
    path = in_folder.folder / "grown.yaml"
    path.write_text(yaml.safe_dump(grown))  # same name and storage: eca has never run

    def no_data(*args: object, **kwargs: object) -> None:
        raise AblateError("dataset 'synthetic' is not in data/")

    monkeypatch.setattr("ablate.report.diagnostics.load_data", no_data)
    assert main(["report", str(path), "--out", "partial"]) == 0
    text = (in_folder.folder / "partial" / "report.md").read_text()
    assert "Arms with no result yet (1): cnn/eca/after\\_relu/s1-3" in text
    assert "8 complete, 0 running, 0 failed, 2 missing" in text
    assert "fingerprint" in text and "changed since some trials ran" in text
    assert "visual diagnostics skipped: the dataset is not available here" in text
    items = pd.read_csv(in_folder.folder / "partial" / "tables" / "items.csv")
    assert set(items[items["status"] == "missing"]["arm"]) == {"cnn/eca/after_relu/s1-3"}
    arms = pd.read_csv(in_folder.folder / "partial" / "tables" / "arms.csv").set_index("arm")
    assert arms.loc["cnn/eca/after_relu/s1-3", "n"] == 0 and arms.loc["cnn/eca/after_relu/s1-3", "status"] == "missing"
    for link in IMAGE_LINK.findall(text):
        assert (in_folder.folder / "partial" / link).is_file()


def test_no_storage_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "rep.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    with pytest.raises(AblateError, match="does not exist"):
        write_report(load_study(path))
    assert not (tmp_path / "runs").exists()  # reading never creates storage
