"""The artifact store beside a study's storage: files optuna-dashboard serves on studies and trials.

Optuna keeps only an artifact's metadata in storage (a system attribute per artifact); the bytes go
to a store. ablate uses a folder: `artifacts/` beside a SQLite or journal storage file, else
`runs/<study>/artifacts`, or the study file's `artifacts:` path when workers on several machines
share one folder.
`attach` gives a file a stable home: a study or trial that already holds an artifact of that file
name gets its bytes replaced under the same id, so re-running a report never duplicates anything.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial

from .contract import attached_artifacts
from .storage import storage_file


def artifact_dir(storage_url: str, run_dir: Path, configured: str | Path | None = None) -> Path:
    """Where a study's artifacts live: the configured (shared) folder, else beside the storage file."""
    if configured:
        return Path(configured)
    path = storage_file(storage_url)
    return (path.parent if path is not None else Path(run_dir)) / "artifacts"


def open_store(folder: Path) -> FileSystemArtifactStore:
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(folder))


def attach(store: FileSystemArtifactStore, storage: BaseStorage, target: optuna.Study | Trial | FrozenTrial,
           path: Path) -> str:
    """Upload `path` to `target` (a study or a running trial), replacing an artifact of the same name."""
    existing = attached_artifacts(storage, target).get(path.name)
    if existing is not None:
        with open(path, "rb") as f:
            store.write(existing, f)
        return existing
    return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=target, storage=storage)


def curve_figure(series: dict[str, list[float]], title: str, path: Path) -> Path:
    """A trial's learning curves as a PNG artifact: loss and accuracy per epoch (validation decides;
    the test curve is drawn dashed for reference only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, ax, style in (("train_loss", loss_ax, "-"), ("val_loss", loss_ax, "-"), ("test_loss", loss_ax, "--"),
                           ("train_acc", acc_ax, "-"), ("val_acc", acc_ax, "-"), ("test_acc", acc_ax, "--")):
        values = [v for v in series.get(key) or [] if v is not None]
        if values:
            ax.plot(range(1, len(values) + 1), values, style, marker="o", ms=3, label=key.split("_")[0])
    for ax, label in ((loss_ax, "loss"), (acc_ax, "accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend(fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, format="png", dpi=90)
    finally:
        plt.close(fig)
    return path
