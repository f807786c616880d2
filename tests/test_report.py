"""`ablate report` on a small synthetic study: every section, valid linked files, numbers from storage.

One study (3 arms x 2 seeds, 1 epoch, two reduction ratios for a factor table) is trained once per
module and reported once; the partial-study test reuses its storage with a grown study file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import yaml
from optuna.trial import TrialState
from PIL import Image
from scipy import stats as sps

from ablate.cli import main
from ablate.datasets import dataset_info
from ablate.errors import AblateError
from ablate.models import attention_modules, build_model
from ablate.records import decode_correct
from ablate.report import collect, default_output, write_report
from ablate.report.collect import trial_attrs
from ablate.report.diagnostics import attention_gates, grad_cam
from ablate.report.markdown import Sections, escape, git_state, render
from ablate.report.output import replace_manifest
from ablate.report.tables import arm_table, cost_view, summary_view
from ablate.runner import run_study
from ablate.spec import load_study
from ablate.storage import open_storage, storage_file

DESCRIPTION = "pipes | and <script>alert(1)</script> and `ticks`"
STUDY = {
    "name": "rep",
    "description": DESCRIPTION,
    "dataset": {"name": "synthetic", "train_size": 100, "test_size": 60, "augment": []},
    "grid": {"backbones": ["cnn"], "attention": ["none", "se", "sam"], "positions": ["after_relu"],
             "reductions": [4, 16]},
    "seeds": [0, 1],
    "recipe": {"epochs": 2, "batch_size": 50},
    "runtime": {"loss_every": 1},
    "tuning": {"enabled": True, "n_trials": 2, "epochs": 1, "space": {"lr": {"low": 5e-4, "high": 5e-3, "log": True}}},
    "measure": {"batch_sizes": [1, 8], "block_time": 0.005, "rounds": 3},
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
    with contextlib.chdir(folder):  # the study's relative runs/ and reports/ land in the temp folder
        path = folder / "rep.yaml"
        path.write_text(yaml.safe_dump(STUDY))
        run_study(load_study(path), progress=False)
        report = write_report(load_study(path))
        yield Built(folder, path, folder / report)


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
    results = text.split("## Results")[1].split("###")[0]
    rows = [line for line in results.splitlines() if line.startswith("| cnn/")]
    assert len(rows) == 4
    assert "Second view" not in text and "pooled images" not in text  # no per-image test pooled over seeds
    per_seed = text.split("### Per seed: do these two trained networks differ?")[1].split("###")[0]
    assert len([line for line in per_seed.splitlines() if line.startswith("| cnn/")]) == 3 * 2  # arms x seeds
    seeds = pd.read_csv(built.report.parent / "tables" / "per_seed.csv")
    assert len(seeds) == 6 and set(seeds["seed"]) == {0, 1}
    excerpt = (built.report.parent / "excerpt.md").read_text()
    assert excerpt.startswith(text.split("## Summary\n\n")[1].split("\n")[0])  # the report's own summary
    assert all(row in excerpt for row in rows)  # and its results table, verbatim


def _correct(built: Built) -> dict[tuple[str, int], np.ndarray]:
    """(arm, seed) -> per-image correctness, decoded straight from the stored trials."""
    study = load_study(built.path)
    final = optuna.load_study(study_name="rep/final", storage=open_storage(study.storage))
    n = dataset_info(study.dataset).test_count
    return {(t.params["arm"], t.params["seed"]): decode_correct(trial_attrs(t)["test_correct"], n)
            for t in final.get_trials(states=(TrialState.COMPLETE,))}


def test_accuracy_statistics_match_storage(built: Built) -> None:
    values = final_values(built)
    correct = _correct(built)
    arms = pd.read_csv(built.report.parent / "tables" / "arms.csv").set_index("arm")
    base = values[values["arm"] == "cnn/none"]["acc"]
    for arm, g in values.groupby("arm"):
        acc = g["acc"]
        assert arms.loc[arm, "n"] == 2
        assert arms.loc[arm, "acc_mean"] == pytest.approx(acc.mean())
        assert arms.loc[arm, "acc_std"] == pytest.approx(acc.std(ddof=1))
        # CI: seed variance / n plus the image component (two-way ANOVA of seeds x images), Satterthwaite df
        y = 100.0 * np.stack([correct[(arm, s)] for s in sorted(g["seed"])]).astype(float)
        n, m = y.shape
        ms_img = n * y.mean(0).var(ddof=1)
        df_res = (n - 1) * (m - 1)
        ms_res = np.square(y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()).sum() / df_res
        v_seed, v_img = acc.var(ddof=1) / n, max(ms_img - ms_res, 0.0) / (n * m)
        df = (v_seed + v_img) ** 2 / (v_seed**2 / (n - 1) + ((ms_img / (n * m)) ** 2 / (m - 1)
                                                          + (ms_res / (n * m)) ** 2 / df_res if v_img else 0.0))
        half = sps.t.ppf(0.975, df) * (v_seed + v_img) ** 0.5
        assert (arms.loc[arm, "acc_ci_low"], arms.loc[arm, "acc_ci_high"]) == pytest.approx(
            (acc.mean() - half, acc.mean() + half))
        if arm != "cnn/none":
            assert arms.loc[arm, "diff"] == pytest.approx(acc.mean() - base.mean())
            assert arms.loc[arm, "test"] in ("blocked", "paired (unequal spread)")  # same seeds on both sides
            assert arms.loc[arm, "diff_ci_low"] <= arms.loc[arm, "diff"] <= arms.loc[arm, "diff_ci_high"]
    # Holm: adjusted p never below the raw one, and at most 3 x the raw one (3 comparisons)
    tested = arms.dropna(subset=["p"])
    assert len(tested) == 3
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
    text = render(secret, t, Sections(summary=summary_view(t, c.batch_sizes), costs=cost_view(t, c.batch_sizes)),
                  c.batch_sizes)
    assert "s3cret" not in text
    assert "- storage: postgresql://ablate:\\*\\*\\*@db:5432/x" in text  # escaped in prose
    assert '--storage "$ABLATE_STORAGE"' in text  # a command that works: the URL with its password from the environment


def test_output_must_stay_inside(in_folder: Built, capsys: pytest.CaptureFixture[str]) -> None:
    path = in_folder.folder / "escape.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "output": "../../outside"}))
    assert main(["report", str(path), "--no-diagnostics"]) == 2  # the study file is refused on load
    assert "without '..'" in capsys.readouterr().err
    study = load_study(in_folder.path)  # and a Study built some other way is refused by the report itself
    for bad in ("../outside", "/tmp/outside"):
        with pytest.raises(AblateError, match="without '..'"):
            default_output(dataclasses.replace(study, output=Path(bad)))
    assert default_output(study) == Path("reports/rep")


def test_partial_study_reports_missing_arms(in_folder: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    grown = {**STUDY, "grid": {**STUDY["grid"], "attention": ["none", "se", "sam", "eca"]}}
    path = in_folder.folder / "grown.yaml"
    path.write_text(yaml.safe_dump(grown))  # same name and storage: eca has never run

    def no_data(*args: object, **kwargs: object) -> None:
        raise AblateError("dataset 'synthetic' is not in data/")

    monkeypatch.setattr("ablate.report.diagnostics.load_data", no_data)
    assert main(["report", str(path), "--out", "reports/partial"]) == 0
    text = (in_folder.folder / "reports" / "partial" / "report.md").read_text()
    assert "Arms with no result yet (1): cnn/eca/after\\_relu/s1-3" in text
    assert "8 complete, 0 running, 0 failed, 2 missing" in text
    assert "fingerprint" in text and "changed since some trials ran" in text
    assert "visual diagnostics skipped: the dataset is not available here" in text
    items = pd.read_csv(in_folder.folder / "reports" / "partial" / "tables" / "items.csv")
    assert set(items[items["status"] == "missing"]["arm"]) == {"cnn/eca/after_relu/s1-3"}
    arms = pd.read_csv(in_folder.folder / "reports" / "partial" / "tables" / "arms.csv").set_index("arm")
    assert arms.loc["cnn/eca/after_relu/s1-3", "n"] == 0 and arms.loc["cnn/eca/after_relu/s1-3", "status"] == "missing"
    for link in IMAGE_LINK.findall(text):
        assert (in_folder.folder / "reports" / "partial" / link).is_file()


def test_cost_rows_come_from_the_profile_phase_only(in_folder: Built, tmp_path: Path) -> None:
    """Final trials of older storages carry a copy of their arm's cost row: the profile phase's row wins, and
    without a profile phase an arm has no cost (a copy is never read)."""
    study = load_study(in_folder.path)
    db = tmp_path / "old.db"
    shutil.copy(storage_file(study.storage), db)
    old = dataclasses.replace(study, storage=f"sqlite:///{db}")
    with contextlib.closing(sqlite3.connect(db)) as con, con:  # an older ablate's copy, written as it stored it
        ids = [row[0] for row in con.execute("SELECT trial_id FROM trials WHERE state = 'COMPLETE'")]
        con.executemany("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?, 'cost', ?)",
                        [(i, json.dumps({"params": -1, "macs_full": -1})) for i in ids])
    profiled = collect(study).arms.set_index("arm")
    arms = collect(old).arms.set_index("arm")
    assert (arms["params"] == profiled["params"]).all() and (arms["params"] > 0).all() and arms["profiled"].all()
    optuna.delete_study(study_name="rep/profile", storage=old.storage)
    unprofiled = collect(old).arms
    assert "params" not in unprofiled and not unprofiled["profiled"].any()


def test_no_storage_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "rep.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    with pytest.raises(AblateError, match="does not exist"):
        write_report(load_study(path))
    assert not (tmp_path / "runs").exists()  # reading never creates storage


# ---------------------------------------------------------------- diagnostics on hand-built models


def test_grad_cam_on_a_model_with_a_known_answer() -> None:
    """score_k = w_k . GAP(A): dscore/dA is w_k / HW everywhere, so the CAM is relu(sum_c w_kc A_c), normalised."""
    layer = torch.nn.Identity()
    head = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, -0.5], [0.0, 1.0]]))
    model = torch.nn.Sequential(layer, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), head).eval()
    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, 1, 2] = 8.0  # channel 0 hot at (1, 2): class 0 wins
    x[0, 1, 3, 0] = 2.0
    cam, pred = grad_cam(model, layer, x)
    assert pred.tolist() == [0]
    expected = torch.relu(1.0 * x[0, 0] - 0.5 * x[0, 1])
    assert torch.allclose(cam[0], expected / expected.max())
    assert cam[0].argmax().item() == 1 * 4 + 2


def test_attention_gates_are_the_modules_own_weights() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 3, 32, 32)
    for attention, kind in (("sam", "spatial"), ("se", "channel"), ("cbam", "spatial"), ("coord", "spatial")):
        model = build_model("cnn", attention, reduction=4).eval()
        gates = attention_gates(model, x)
        path, module = attention_modules(model)[0]
        with torch.no_grad():
            features = model.features.block1.conv1(x)
            features = model.features.block1.relu1(model.features.block1.bn1(features))
            if attention == "sam":
                want = module.gate(features)[:, 0]
            elif attention == "cbam":
                want = module.spatial(features * module.channel(features))[:, 0]
            elif attention == "se":
                want = module.fc(module.squeeze(features).flatten(1))
            else:  # coord, recomputed step by step: the spatial map is mean over channels of a_h * a_w
                x_h = features.mean(3, keepdim=True)
                x_w = features.mean(2, keepdim=True).transpose(2, 3)
                y = module.act(module.bn1(module.conv1(torch.cat([x_h, x_w], dim=2))))
                y_h, y_w = torch.split(y, [32, 32], dim=2)
                a_h, a_w = torch.sigmoid(module.conv_h(y_h)), torch.sigmoid(module.conv_w(y_w.transpose(2, 3)))
                assert torch.allclose(module(features), features * a_h * a_w, atol=1e-6)
                want = (a_h * a_w).mean(1)
        assert torch.allclose(gates[path][kind], want, atol=1e-6), attention


def test_rewriting_a_report_removes_only_its_own_stale_files(tmp_path: Path) -> None:
    (tmp_path / "figures").mkdir()
    for name in ("old.png", "kept.png", "users.png"):
        (tmp_path / "figures" / name).write_bytes(b"x")
    replace_manifest(tmp_path, ["figures/old.png", "figures/kept.png"])
    removed = replace_manifest(tmp_path, ["figures/kept.png"])
    assert removed == ["figures/old.png"]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["kept.png", "users.png"]


def test_study_section_prints_the_hyperparameters_the_runs_used(built: Built) -> None:
    study = load_study(built.path)
    final = optuna.load_study(study_name="rep/final", storage=open_storage(study.storage))
    used = {t.user_attrs["recipe"]["lr"] for t in final.get_trials(states=(TrialState.COMPLETE,))}
    section = built.report.read_text().split("## Study")[1].split("## ")[0]
    assert len(used) == 1 and used != {study.recipe.lr}  # tuned: the study file's lr trained no run
    assert f"lr={next(iter(used)):.4g}," in section and f"lr={study.recipe.lr}," not in section


def test_git_state_ignores_the_report_folder(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "reports" / "x").mkdir(parents=True)
    (tmp_path / "reports" / "x" / "report.md").write_text("old\n")
    (tmp_path / "code.py").write_text("a = 1\n")
    git("add", ".")
    git("commit", "-qm", "init")
    assert not git_state(tmp_path / "reports" / "x", tmp_path).endswith("(with uncommitted changes)")
    (tmp_path / "reports" / "x" / "report.md").write_text("new\n")  # the report rewriting itself: still clean
    assert not git_state(tmp_path / "reports" / "x", tmp_path).endswith("(with uncommitted changes)")
    assert git_state(None, tmp_path).endswith("(with uncommitted changes)")
    (tmp_path / "code.py").write_text("a = 2\n")  # a real change elsewhere is reported
    assert git_state(tmp_path / "reports" / "x", tmp_path).endswith("(with uncommitted changes)")
    assert git_state(Path("/elsewhere"), tmp_path).endswith("(with uncommitted changes)")
