"""Runs say which environment made them; the lock file pins every dependency pyproject.toml asks for."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

from ablate.provenance import environment, environment_id, mismatch_warning

ROOT = Path(__file__).resolve().parents[1]


def test_environment_id_is_stable_and_changes_with_any_field() -> None:
    env = environment("cpu", 1)
    assert env["id"] == environment_id(env) == environment_id(dict(env))
    for key in ("cpu", "threads", "torch"):
        changed = {**env, key: "other"}
        assert environment_id(changed) != env["id"]


def test_a_worker_warns_only_when_stored_runs_came_from_another_environment() -> None:
    mine = environment("cpu", 1)
    assert mismatch_warning(mine, [mine, mine, None, {}]) is None
    other = {**mine, "cpu": "Some Other CPU", "threads": 2}
    other["id"] = environment_id(other)
    text = mismatch_warning(mine, [mine, other])
    assert text is not None and "cpu, threads" in text and "statistically" in text


def test_the_lock_pins_every_dependency_at_a_version_pyproject_allows() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    for req in wanted:
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is not pinned in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} violates {req}"
        for extra in req.extras:  # psycopg[binary] needs psycopg-binary pinned too
            assert f"{name}-{extra}" in pins, f"{req.name}[{extra}] is not pinned"
