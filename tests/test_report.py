"""`ablate report` on a small synthetic study: every section, valid linked files, numbers from storage.

One study (3 arms x 2 seeds, 1 epoch, two reduction ratios for a factor table) is trained once per
module and reported once; the partial-study test reuses its storage with a grown study file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
import yaml
from optuna.trial import TrialState
from PIL import Image
from scipy import stats as sps

from ablate.cli import main
from ablate.errors import AblateError
from ablate.models import attention_modules, build_model
from ablate.report import collect, default_output, write_report
from ablate.report.diagnostics import attention_gates, grad_cam
from ablate.report.markdown import Sections, escape, render
from ablate.report.output import replace_manifest
from ablate.data import dataset_info
from ablate.report.tables import arm_table, cost_view, summary_view
from ablate.spec import load_study
from ablate.runner import run_study
from ablate.storage import open_storage

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
    images = text.split("### Second view: the shared test images")[1].split("###")[0]
    assert len([line for line in images.splitlines() if line.startswith("| cnn/")]) == 3  # arms vs baseline


def test_accuracy_statistics_match_storage(built: Built) -> None:
    values = final_values(built)
    arms = pd.read_csv(built.report.parent / "tables" / "arms.csv").set_index("arm")
    base = values[values["arm"] == "cnn/none"]["acc"]
    for arm, g in values.groupby("arm"):
        acc = g["acc"]
        assert arms.loc[arm, "n"] == 2
        assert arms.loc[arm, "acc_mean"] == pytest.approx(acc.mean())
        assert arms.loc[arm, "acc_std"] == pytest.approx(acc.std(ddof=1))
        n_test = dataset_info(load_study(built.path).dataset).test_count
        p = acc.mean() / 100
        sd = max(acc.std(ddof=1), 100 * (p * (1 - p) / n_test) ** 0.5)  # spread floored by test-set noise
        low, high = sps.t.interval(0.95, 1, loc=acc.mean(), scale=sd / 2**0.5)
        assert (arms.loc[arm, "acc_ci_low"], arms.loc[arm, "acc_ci_high"]) == pytest.approx((low, high))
        if arm != "cnn/none":
            assert arms.loc[arm, "diff"] == pytest.approx(acc.mean() - base.mean())
            assert arms.loc[arm, "test"] == "paired"  # same seeds on both sides
            mine = g.sort_values("seed")["acc"].to_numpy()
            theirs = values[values["arm"] == "cnn/none"].sort_values("seed")["acc"].to_numpy()
            if (mine - theirs).std() > 0:
                assert arms.loc[arm, "p"] == pytest.approx(sps.ttest_rel(mine, theirs).pvalue)
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
