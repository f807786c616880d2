"""Modules and backbones from outside ablate: import paths, entry points, register_*, the checks that refuse
bad ones before anything is written, the source fingerprint, and MAC columns that flag what they cannot count.

The example package (examples/ablate-example-plugin) is pip-installed into a temporary folder, so its entry
points are found the way an installed package's are. Studies run in subprocesses, so registering plugins
never leaks into other tests' registries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from torch import nn

import ablate
from ablate.cli import main
from ablate.contract import profile_costs
from ablate.errors import AblateError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ablate-example-plugin"


def run_ablate(args: list[str], cwd: Path, *paths: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *map(str, paths)])}
    return subprocess.run([sys.executable, "-m", "ablate", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package pip-installed (no deps, no index) into a fresh target folder."""
    base = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(EXAMPLE, base / "src")  # the build writes into its source folder: keep ours clean
    target = base / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    assert (target / "ablate_example_plugin-0.1.0.dist-info" / "entry_points.txt").is_file()
    return target


def tiny_study(folder: Path, name: str, backbones: list, attention: list, positions: list | None = None) -> Path:
    grid = {"backbones": backbones, "attention": attention, "reductions": [16]}
    if positions:
        grid["positions"] = positions
    doc = {"name": name, "dataset": {"name": "synthetic", "train_size": 120, "test_size": 40, "augment": []},
           "grid": grid, "seeds": [0], "recipe": {"epochs": 1, "batch_size": 40},
           "measure": {"batch_sizes": [1], "block_time": 0.002, "rounds": 2}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def completed_final(folder: Path, name: str) -> dict[str, dict]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'runs' / name / 'optuna.db'}")
    final = optuna.load_study(study_name=f"{name}/final", storage=storage)
    return {t.params["arm"]: t.user_attrs for t in final.get_trials(states=(TrialState.COMPLETE,))}


def profiled_costs(folder: Path, name: str) -> dict[str, dict]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'runs' / name / 'optuna.db'}")
    return profile_costs(optuna.load_study(study_name=f"{name}/profile", storage=storage))


def test_entry_points_appear_in_ablate_list(installed: Path, tmp_path: Path) -> None:
    out = run_ablate(["list"], tmp_path, installed)
    assert out.returncode == 0, out.stderr
    rows = {line.split("|")[1].strip(): line for line in out.stdout.splitlines() if line.startswith("| ")}
    assert "ablate-example-plugin 0.1.0" in rows["gct"] and "mode=l2" in rows["gct"]
    assert "ablate-example-plugin 0.1.0" in rows["tinynet"] and "stage_end" in rows["tinynet"]
    assert "built-in" in rows["se"]


def test_entry_point_study_profiles_and_trains(installed: Path, tmp_path: Path) -> None:
    path = tiny_study(tmp_path, "ep", ["tinynet"], ["none", "se", "gct"])
    out = run_ablate(["run", str(path), "--quiet"], tmp_path, installed)
    assert out.returncode == 0, out.stderr
    attrs = completed_final(tmp_path, "ep")
    assert set(attrs) == {"tinynet/none", "tinynet/se/stage_end/r16/s1-2", "tinynet/gct/stage_end/s1-2"}
    # GCT: alpha, gamma, beta per channel at 16 and 32 channels; the baseline is the same net without them
    assert attrs["tinynet/gct/stage_end/s1-2"]["n_params"] - attrs["tinynet/none"]["n_params"] == 3 * (16 + 32)
    cost = profiled_costs(tmp_path, "ep")["tinynet/gct/stage_end/s1-2"]  # stored once, on the profile trial
    assert cost["attn_macs_full"] > 0 and cost["macs_uncounted"] is None
    profile = run_ablate(["profile", "--backbone", "tinynet,cnn", "--attention", "none,gct", "--no-timing"], tmp_path,
                         installed)
    assert profile.returncode == 0, profile.stderr
    assert "tinynet/gct/stage_end/s1-2" in profile.stdout and "cnn/gct/after_relu/s1-3" in profile.stdout


def test_import_path_study_records_the_source_and_trains(tmp_path: Path) -> None:
    path = tiny_study(tmp_path, "ip", ["ablate_example.tinynet:TinyNet"], ["none", "ablate_example.gct:GCT"],
                      ["after_pool"])
    out = run_ablate(["run", str(path), "--quiet"], tmp_path, EXAMPLE)
    assert out.returncode == 0, out.stderr
    assert set(completed_final(tmp_path, "ip")) == {"tinynet/none", "tinynet/gct/after_pool/s1-2"}
    probe = ("import json, sys; from ablate.spec import load_study; s = load_study(sys.argv[1]); "
             "print(json.dumps({'fingerprint': s.fingerprint, 'plugins': list(s.plugins)}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(EXAMPLE)])}

    def fingerprint(module_dir: Path) -> dict:
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(module_dir)])
        done = subprocess.run([sys.executable, "-c", probe, str(path)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, check=True, timeout=300)
        return json.loads(done.stdout)

    first = fingerprint(EXAMPLE)
    sources = {p["kind"]: p for p in first["plugins"]}
    gct_file = EXAMPLE / "ablate_example" / "gct.py"
    assert sources["attention"]["target"] == "ablate_example.gct:GCT"
    assert sources["attention"]["sha256"] == hashlib.sha256(gct_file.read_bytes()).hexdigest()
    assert sources["backbone"]["name"] == "tinynet" and sources["attention"]["package"] is None  # not installed
    changed = shutil.copytree(EXAMPLE, tmp_path / "changed")
    (changed / "ablate_example" / "gct.py").write_text(gct_file.read_text() + "\n# edited\n")
    assert fingerprint(changed)["fingerprint"] != first["fingerprint"]  # the module's code is part of the study
    assert fingerprint(EXAMPLE)["fingerprint"] == first["fingerprint"]


BAD_MODULES = textwrap.dedent('''
    import torch
    from torch import nn
    from ablate.attention import Knob

    class Halver(nn.Module):
        """Keeps half the channels: changes the shape."""
        def __init__(self, channels):
            super().__init__()
        def forward(self, x):
            return x[:, : x.shape[1] // 2]

    class NoKnob(nn.Module):
        """Declares a knob its constructor does not take."""
        knobs = (Knob("alpha", 1.0),)
        def __init__(self, channels):
            super().__init__()
        def forward(self, x):
            return x

    class CumGate(nn.Module):
        """A gate built on an op no MAC policy counts (cumsum)."""
        def __init__(self, channels):
            super().__init__()
        def forward(self, x):
            return x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True).cumsum(dim=1))

    class Se(nn.Module):
        name = "se"
        def __init__(self, channels):
            super().__init__()
''')


@pytest.fixture
def bad_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "h20_bad_plugins.py").write_text(BAD_MODULES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("attention,fragments", [
    ("h20_bad_plugins:Halver", ["h20_bad_plugins:Halver", "site features.block1.attn1", "changes the shape",
                                "32x32x32 to 16x32x32"]),
    ("h20_bad_plugins:NoKnob", ["h20_bad_plugins:NoKnob", "site features.block1.attn1", "cannot be built",
                                "alpha"]),
    ("h20_missing_package.attn:Gate", ["cannot load attention type 'h20_missing_package.attn:Gate'",
                                       "No module named 'h20_missing_package'", "grid.attention[1]"]),
    ("h20_bad_plugins:Se", ["named 'se', which is a built-in"]),
])
def test_bad_plugins_are_refused_before_anything_is_written(bad_modules: Path, capsys: pytest.CaptureFixture,
                                                            attention: str, fragments: list[str]) -> None:
    path = tiny_study(bad_modules, "bad", ["cnn"], ["none", attention])
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert all(f in err for f in fragments), err
    assert not (bad_modules / "runs").exists() and not (bad_modules / "reports").exists()


def test_uncounted_op_is_flagged_in_the_mac_columns(bad_modules: Path, capsys: pytest.CaptureFixture) -> None:
    from ablate.costs import static_costs

    assert ablate.register_attention(__import__("h20_bad_plugins").CumGate) == "cumgate"
    row = static_costs(ablate.build_model("cnn", "cumgate"), (3, 32, 32))
    assert row["macs_uncounted"] == "aten::cumsum x3"  # one module per block of the 3-block CNN
    for name in ("se", "cbam", "eca", "simam", "nonlocal"):  # the built-in zoo is counted in full
        assert static_costs(ablate.build_model("cnn", name), (3, 32, 32))["macs_uncounted"] is None
    assert main(["profile", "--backbone", "cnn", "--attention", "none,cumgate", "--no-timing"]) == 0
    out = capsys.readouterr()
    assert "macs_uncounted" in out.out and "aten::cumsum x3" in out.out
    assert "cnn/cumgate/after_relu/s1-3: ops that no MAC policy counts" in out.err


def test_library_registration_of_a_module_and_a_backbone() -> None:
    from ablate.models import ResNet  # a public class a user can configure

    class Doubler(nn.Module):
        name = "h20_doubler"

        def __init__(self, channels: int) -> None:
            super().__init__()

        def forward(self, x):  # type: ignore[no-untyped-def]
            return 2 * x

    assert ablate.register_attention(Doubler) == "h20_doubler"
    assert ablate.register_attention(Doubler) == "h20_doubler"  # twice is harmless
    tiny = ResNet("h20_resnet8", "basic", (1, 1, 1), (16, 32, 64), "cifar", "zero_pad", "6n+2 with n=1")
    assert ablate.register_backbone(tiny) == "h20_resnet8"
    model = ablate.build_model("h20_resnet8", "h20_doubler", "post")
    assert len(model.insertions) == 3 and "h20_resnet8" in ablate.list_backbones()
    with pytest.raises(AblateError, match="not an nn.Module class"):
        ablate.register_attention(print)  # type: ignore[arg-type]
