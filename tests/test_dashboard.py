"""optuna-dashboard as the live view of a study: a real server, queried through its JSON API.

Two tiny synthetic studies (same grid, different learning rates) are run and reported once per
module; `ablate dashboard` serves the first on a free loopback port; the test reads what a user's
browser would get: named objectives, learning curves, the note, plotly figures and artifacts. The
side-by-side comparison of the two studies is checked on the same storage.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from ablate.cli import main
from ablate.contract import storage_of, study_id_of
from ablate.report import write_report
from ablate.report.collect import collect
from ablate.report.tables import arm_table
from ablate.runner import run_study
from ablate.spec import load_study

STUDY = {
    "name": "dash",
    "dataset": {"name": "synthetic", "train_size": 100, "test_size": 60, "augment": []},
    "grid": {"backbones": ["cnn"], "attention": ["none", "se"], "positions": ["after_relu"], "reductions": [4]},
    "seeds": [0, 1],
    "recipe": {"epochs": 2, "batch_size": 50},
    "measure": {"batch_sizes": [1], "block_time": 0.005, "rounds": 3},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("dash")
    with contextlib.chdir(folder):  # the study's relative runs/ and reports/ land in the temp folder
        for name, lr in (("dash", 0.01), ("dash-lr", 0.003)):
            (folder / f"{name}.yaml").write_text(yaml.safe_dump({**STUDY, "name": name,
                                                                  "recipe": {**STUDY["recipe"], "lr": lr}}))
            run_study(load_study(folder / f"{name}.yaml"), progress=False)
        write_report(load_study(folder / "dash.yaml"), diagnostics=False)
        yield folder


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ablate", "dashboard", "dash.yaml", "--port", str(port)],
                            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                get(base + "/api/studies")
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"ablate dashboard exited: {proc.stdout.read().decode() if proc.stdout else ''}")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def study_detail(base: str, name: str) -> dict:
    ids = {s["study_name"]: s["study_id"] for s in get(base + "/api/studies")["study_summaries"]}
    assert name in ids, sorted(ids)
    return get(f"{base}/api/studies/{ids[name]}")


def test_final_study_in_the_dashboard(server: str) -> None:
    detail = study_detail(server, "dash/final")
    assert detail["objective_names"] == ["test accuracy (%)"]
    trials = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert len(trials) == 4  # 2 arms x 2 seeds
    for t in trials:  # learning curves: one validation accuracy per epoch
        assert [v["step"] for v in t["intermediate_values"]] == [1, 2]
        assert all(0 <= v["value"] <= 100 for v in t["intermediate_values"])
        assert any(a["filename"].endswith(".png") for a in t["artifacts"])
    assert "# dash" in detail["note"]["body"] and "## Results" in detail["note"]["body"]
    ids = {g["id"] for g in detail["plotly_graph_objects"]}
    assert {"ablate-accuracy-vs-macs", "ablate-accuracy-vs-latency"} <= ids
    names = {a["filename"] for a in detail["artifacts"]}
    assert {"report.md", "arms.csv"} <= names
    columns = {a["key"]: a["sortable"] for a in detail["union_user_attrs"]}
    for key in ("final_acc", "params", "macs_full", "latency_b1_ms", "latency_b1_overhead_pct", "hp_source"):
        assert key in columns, sorted(columns)
    assert columns["final_acc"] and columns["macs_full"]  # scalars: sortable columns
    assert not any(k in columns for k in ("val_acc", "test_acc", "iter_loss"))  # series stay in one attribute


def test_phase_studies_name_their_objectives(server: str) -> None:
    assert study_detail(server, "dash/profile")["objective_names"] == ["arms timed"]


def test_artifacts_are_served(server: str) -> None:
    detail = study_detail(server, "dash/final")
    art = next(a for a in detail["artifacts"] if a["filename"] == "report.md")
    ids = {s["study_name"]: s["study_id"] for s in get(server + "/api/studies")["study_summaries"]}
    with urllib.request.urlopen(f"{server}/artifacts/{ids['dash/final']}/{art['artifact_id']}", timeout=10) as r:
        assert r.read().startswith(b"# Ablation report: dash")


def test_rerunning_the_report_replaces_what_it_published(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    study = load_study(folder / "dash.yaml")
    final = optuna.load_study(study_name="dash/final", storage=study.storage)
    before = dict(storage_of(final).get_study_system_attrs(study_id_of(final)))
    write_report(study, diagnostics=False)
    after = storage_of(final).get_study_system_attrs(study_id_of(final))
    for prefix in ("artifacts:", "dashboard:plot_data:"):  # the same artifact ids and figure keys, no new ones
        assert sorted(k for k in after if k.startswith(prefix)) == sorted(k for k in before if k.startswith(prefix))


def test_compare_two_studies(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    assert main(["report", "dash.yaml", "dash-lr.yaml", "--out", "reports/compare"]) == 0
    text = (folder / "reports" / "compare" / "report.md").read_text()
    assert "# Comparison: dash vs dash-lr" in text
    merged = pd.read_csv(folder / "reports" / "compare" / "tables" / "compare.csv")
    assert sorted(merged["arm"]) == sorted(a.id for a in load_study(folder / "dash.yaml").arms)
    for name in ("dash", "dash-lr"):  # each study's numbers are its own report's, unchanged by the comparison
        own = arm_table(collect(load_study(folder / f"{name}.yaml"))).set_index("arm")["acc_mean"]
        assert merged.set_index("arm")[f"acc_mean [{name}]"].to_dict() == pytest.approx(own.to_dict())
    for link in ("figures/compare_effect.png", "tables/compare.csv"):
        assert (folder / "reports" / "compare" / link).is_file()


def test_compare_needs_shared_arms(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(folder)
    other = {**STUDY, "name": "dash-other", "grid": {**STUDY["grid"], "attention": ["eca"]}}
    (folder / "other.yaml").write_text(yaml.safe_dump(other))
    run_study(load_study(folder / "other.yaml"), phases=("profile",), progress=False)
    assert main(["report", "dash.yaml", "other.yaml", "--out", "reports/cmp2"]) == 2
    assert "share no arm" in capsys.readouterr().err
