"""Study files: shipped files validate; each kind of bad file names file + key + allowed, exit 2."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ablate.cli import main
from ablate.errors import AblateError
from ablate.spec import load_study, parse_study

from .conftest import GOOD

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "studies").glob("*.yaml"))


def write(tmp_path: Path, doc: object, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def mutate(**changes: object) -> dict:
    doc = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        node = doc
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(last)
        else:
            node[last] = value
    return doc


DELETE = object()


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_shipped_study_files_validate(path: Path) -> None:
    study = load_study(path)
    assert study.arms and study.seeds
    assert len({a.id for a in study.arms}) == len(study.arms)


def test_shipped_studies_exist() -> None:
    names = {p.stem for p in STUDIES}
    assert {"demo", "cnn_cifar10_attention", "vgg16_cifar10_attention", "se_reduction_ratio",
            "insertion_position", "cbam_design"} <= names


def test_good_file_loads(tmp_path: Path) -> None:
    study = load_study(write(tmp_path, GOOD))
    assert [a.id for a in study.arms] == ["cnn/none", "cnn/se/after_relu/r16/s1-3"]
    assert study.storage == "sqlite:///runs/tiny/optuna.db"
    assert study.fingerprint == load_study(write(tmp_path, GOOD, "again.yaml")).fingerprint


BAD_CASES = [
    ("invalid yaml", "name: [unclosed", "invalid YAML"),
    ("unknown top key", mutate(sedds=[0]), "sedds: unknown key (did you mean 'seeds'?)"),
    ("unknown attention", mutate(grid__attention=["none", "cbma"]),
     "grid.attention[1]: unknown value 'cbma' (did you mean 'cbam'?)"),
    ("unknown position", mutate(grid__positions=["middle"]), "grid.positions[0]: unknown value 'middle'"),
    ("unknown backbone", mutate(grid__backbones=["resnet51"]), "grid.backbones[0].name: unknown value 'resnet51'"),
    ("unknown dataset", mutate(dataset__name="imagenet"), "dataset"),
    ("reduction zero", mutate(grid__reductions=[0]), "grid.reductions[0]: must be >= 1"),
    ("reduction text", mutate(grid__reductions=["16"]), "grid.reductions[0]: expected an integer"),
    ("empty grid", mutate(grid__attention=[]), "grid.attention: must not be empty"),
    ("seeds not integers", mutate(seeds=[0, "one"]), "seeds[1]: expected an integer"),
    ("knob on module without it", mutate(grid__knobs={"se": {"kernel": [3]}}), "grid.knobs.se.kernel: unknown key"),
    ("bad knob value", mutate(grid__attention=["sam"], grid__knobs={"sam": {"kernel": [5]}}), "allowed: 7 | 3"),
    ("knob for absent attention", mutate(grid__knobs={"cbam": {"order": ["parallel"]}}), "not in grid.attention"),
    ("after_bn without bn", mutate(grid__backbones=[{"name": "vgg16", "bn": False}], grid__positions=["after_bn"]),
     "'after_bn' does not exist"),
    ("range low > high", mutate(tuning={"enabled": True, "space": {"lr": {"low": 0.1, "high": 0.01}}}),
     "tuning.space.lr: low (0.1) must be <= high (0.01)"),
    ("tune unknown param", mutate(tuning={"enabled": True, "space": {"lrr": {"low": 0.1, "high": 1}}}),
     "tuning.space.lrr: unknown key (did you mean 'lr'?)"),
    ("bad scope", mutate(tuning={"scope": "everything"}), "tuning.scope: unknown value 'everything'"),
    ("storage scheme", mutate(storage="redis://localhost/0"), "unsupported storage URL"),
    ("bad name", mutate(name="../escape"), "not a valid study name"),
    ("missing dataset", mutate(dataset=DELETE), "dataset: required key is missing"),
    ("stage out of range", mutate(grid__stages=[[4]]), "out of range"),
    ("bad recipe value", mutate(recipe__epochs=0), "recipe"),
    ("unknown recipe key", mutate(recipe__lrate=0.1), "recipe"),
    ("name with a trailing newline", mutate(name="tiny\n"), "not a valid study name"),
    ("nan learning rate", mutate(recipe__lr=float("nan")), "recipe.lr: nan is not a usable number"),
    ("seed beyond 64 bits", mutate(seeds=[2**64]), "seeds[0]: 18446744073709551616 is not a usable number"),
    ("more images than the dataset", mutate(dataset__name="fashion-mnist", dataset__train_size=100000),
     "dataset.train_size: 100000 images requested, but fashion-mnist has 60000"),
    ("output outside reports", mutate(output="."), "output: '.' is not a report folder"),
    ("duplicate key", "name: a\nname: b\n", "line 2, column 1: invalid YAML: duplicate key 'name'"),
    ("alias", "name: &n a\ndescription: *n\n", "anchors and aliases"),
]


@pytest.mark.parametrize("label,doc,fragment", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_study_files(tmp_path: Path, label: str, doc: object, fragment: str, capsys) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(AblateError) as err:
        load_study(path)
    assert str(path) in str(err.value) and fragment in str(err.value), str(err.value)
    assert main(["plan", str(path), "--no-timing"]) == 2
    message = capsys.readouterr().err
    assert fragment in message and "Traceback" not in message
    assert not (tmp_path / "runs").exists()


def test_missing_file_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 2
    assert "study file not found" in capsys.readouterr().err


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(AblateError, match="invalid YAML"):
        load_study(path)


def test_parse_accepts_backbone_options() -> None:
    doc = mutate(grid__backbones=[{"name": "vgg16", "head": "imagenet", "bn": False}], grid__positions=["block_end"])
    study = parse_study(doc, Path("x.yaml"))
    assert study.arms[1].id == "vgg16+imagenet-nobn/se/block_end/r16/s1-5"
