"""Visual diagnostics from the final checkpoints: the reference tutorials' three views, for every arm.

1. Feature maps (ref000/ref001): the most active channels of each block's last activation before
   its max-pool, for a few test images, captured by forward hooks.
2. Grad-CAM (ref001, done correctly): the gradient of the predicted class's logit with respect to
   a layer's *activations* (not its weights), averaged over space, weights those activations;
   ReLU of the weighted sum, upsampled to the image (Selvaraju et al. 2017).
3. The attention modules' own gates, hooked where each module declares them (`Attention.gate_modules`,
   `Attention.gate_maps`): spatial gates drawn over the image, and channel gates averaged per class at
   each depth (SENet's excitation analysis: similar across classes early, class-specific late).

Nothing is trained: models are rebuilt from the arm's factors and loaded from the checkpoint of the
lowest seed that has one. A missing dataset, or a missing or unreadable checkpoint, becomes a note in the report.

Which arms: every finished arm. Only a backbone with more than MAX_DIAGNOSTIC_ARMS finished arms is cut,
by a rule that reads no result (test data decides nothing): its baseline, then the attention types'
arms in turn, in study-file order; the arms left out are named in the Grad-CAM figure, its caption
and the report's notes.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..arms import Arm
from ..augment import Normalize, to_unit_float
from ..checkpoint import UnreadableCheckpoint, load_weights
from ..datasets import Data, load_data
from ..errors import AblateError
from ..models import attention_modules, build_model
from .collect import Collected
from .figures import short
from .output import Figure, save_figure

MAX_CLASS_IMAGES = 2000  # test images averaged for the per-class channel-gate profiles
MAX_CLASSES_SHOWN = 6
MAX_DIAGNOSTIC_ARMS = 16  # per backbone, baseline included: beyond it the report's diagnostics stop being read
GRAD_CAM_ROWS = 8  # arms per Grad-CAM figure; more arms continue in further figures


@dataclass
class Diagnostics:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    arms: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ArmChoice:
    """The arms drawn, in study order, and per backbone the finished arms left out (empty: none)."""

    shown: list[str]
    left_out: dict[str, list[str]]
    max_arms: int

    def note(self, backbone: str) -> str:
        """Which arms of `backbone` are not drawn and why; '' when every finished arm is."""
        left = self.left_out.get(backbone, [])
        if not left:
            return ""
        return (f"{backbone}: {len(left)} finished arm(s) not drawn in the visual diagnostics (at most "
                f"{self.max_arms} per backbone; chosen without looking at any result: the baseline, then one arm "
                f"of each attention type in turn, in study-file order): {', '.join(left)}.")


def choose_arms(table: pd.DataFrame, max_arms: int = MAX_DIAGNOSTIC_ARMS) -> ArmChoice:
    """Every finished arm per backbone; beyond max_arms, the baseline and then each type's arms in turn.

    The rule is data-free on purpose: choosing by accuracy would let the test set pick what is shown
    (and hid the arm that disagreed, in an earlier demo).
    """
    done = table[table["n"] > 0]
    shown: list[str] = []
    left_out: dict[str, list[str]] = {}
    for backbone in dict.fromkeys(done["backbone"]):
        sub = done[done["backbone"] == backbone]
        queues = [list(g["arm"]) for _, g in sub[~sub["is_baseline"]].groupby("attention", sort=False)]
        picked = set(sub[sub["is_baseline"]]["arm"])
        while len(picked) < max_arms and any(queues):
            for queue in queues:
                if queue and len(picked) < max_arms:
                    picked.add(queue.pop(0))
        shown += [a for a in sub["arm"] if a in picked]
        left = [a for a in sub["arm"] if a not in picked]
        if left:
            left_out[backbone] = left
    return ArmChoice(shown, left_out, max_arms)


def _checkpoint(collected: Collected, arm: str) -> tuple[Path | None, int | None]:
    """The checkpoint of the lowest seed of `arm` whose file exists (relative paths: cwd, then the study's folder)."""
    for _, run in collected.runs[collected.runs["arm"] == arm].sort_values("seed").iterrows():
        if not run["checkpoint"]:
            continue
        path = Path(run["checkpoint"])
        for candidate in (path, collected.study.path.parent / path):
            if candidate.is_file():
                return candidate, int(run["seed"])
    return None, None


def _load_model(arm: Arm, data: Data, path: Path) -> nn.Module:
    meta = data.meta
    model = build_model(**arm.build_kwargs(), num_classes=meta.num_classes, in_channels=meta.in_channels,
                        input_size=meta.input_size)
    return load_weights(model, path).eval()


def _pre_pool_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Each stage's final activation (attention included), as the backbone declares it (`stage_paths`)."""
    return [(path.removeprefix("features."), model.get_submodule(path)) for path in model.stage_paths]


@contextmanager
def _capture(modules: dict[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that keep each module's latest output under its key; removed on exit."""
    store: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, o, k=k: store.__setitem__(k, o)) for k, m in modules.items()]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def grad_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cam in [0, 1] of shape N x H x W at the input's size, predicted classes) for a batch.

    The class score is the predicted logit; in eval mode images do not interact, so one backward of
    the summed scores gives every image its own gradient.
    """
    with _capture({"a": layer}) as store, torch.enable_grad():
        logits = model(x.detach().requires_grad_(True))  # so the layer's output is in the graph even without params
        activation = store["a"]
        pred = logits.argmax(1)
        score = logits.gather(1, pred[:, None]).sum()
        (grad,) = torch.autograd.grad(score, activation)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation.detach()).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12), pred


@torch.no_grad()
def attention_gates(model: nn.Module, x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """module path -> {'spatial': N x H x W, 'channel': N x C} for every attention module that declares them."""
    modules = attention_modules(model)
    declared = {path: m.gate_modules() for path, m in modules}
    with _capture({f"{path}|{name}": g for path, gs in declared.items() for name, g in gs.items()}) as store:
        model(x)
    gates: dict[str, dict[str, torch.Tensor]] = {}
    for path, m in modules:
        maps = m.gate_maps({name: store[f"{path}|{name}"] for name in declared[path]})
        if maps:
            gates[path] = {kind: value.float() for kind, value in maps.items()}
    return gates


# ---------------------------------------------------------------- drawing


def _show_image(ax: plt.Axes, image: torch.Tensor) -> None:
    """uint8 C x H x W -> imshow (grey for one channel)."""
    img = image.permute(1, 2, 0).numpy()
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
              vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([])


def _mosaic(fmap: torch.Tensor, k: int = 9) -> np.ndarray:
    """The k most active channels of one C x H x W map, each scaled to [0, 1], tiled with 1-px gaps."""
    top = fmap.mean(dim=(1, 2)).argsort(descending=True)[:k]
    side = math.ceil(math.sqrt(len(top)))
    h, w = fmap.shape[1:]
    canvas = np.full((side * (h + 1) - 1, side * (w + 1) - 1), np.nan)
    for i, ch in enumerate(top.tolist()):
        m = fmap[ch].numpy()
        m = (m - m.min()) / (m.max() - m.min() + 1e-12)
        r, c = divmod(i, side)
        canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = m
    return canvas


def _image_title(data: Data, label: int, pred: int | None = None) -> str:
    names = data.meta.classes
    text = f"true: {names[label]}"
    return text if pred is None else f"{text}\npred: {names[pred]}"


def feature_map_figure(model: nn.Module, arm: str, backbone: str, data: Data, images: torch.Tensor,
                       labels: torch.Tensor, x: torch.Tensor, out: Path) -> Figure:
    layers = _pre_pool_layers(model)
    with torch.no_grad(), _capture(dict(layers)) as store:
        model(x)
    n = len(images)
    fig, axes = plt.subplots(n, len(layers) + 1, figsize=(2.6 * (len(layers) + 1), 2.7 * n), squeeze=False,
                             layout="constrained")
    for i in range(n):
        _show_image(axes[i, 0], images[i])
        axes[i, 0].set_title(_image_title(data, int(labels[i])), fontsize=8)
        for j, (name, _) in enumerate(layers, start=1):
            fmap = store[name][i].float()
            axes[i, j].imshow(_mosaic(fmap), cmap="viridis", vmin=0, vmax=1)
            axes[i, j].set_axis_off()
            if i == 0:
                axes[i, j].set_title(f"{name.replace('.', ' ')}\n{fmap.shape[1]}x{fmap.shape[2]}, top-9 channels",
                                     fontsize=8)
    fig.suptitle(f"Feature maps: {arm}", fontsize=10)
    return save_figure(fig, out, f"feature_maps_{arm}", f"Feature maps: {arm}",
                       f"{short(arm, backbone)}: for each test image, the 9 channels with the highest mean activation "
                       "at the end of each block (before its max-pool), each scaled to its own [0, 1] range.")


def grad_cam_figure(models: dict[str, nn.Module], backbone: str, data: Data, images: torch.Tensor,
                    labels: torch.Tensor, x: torch.Tensor, out: Path, *, name: str = "", heading: str = "",
                    left_out: str = "") -> Figure:
    """One row per arm over the same images; `left_out` (the arms not drawn, and why) goes under the figure
    and into its caption."""
    arms = list(models)
    fig, axes = plt.subplots(len(arms), len(images), figsize=(2.5 * len(images), 2.8 * len(arms) + 0.4),
                             squeeze=False, layout="constrained")
    layer_names = []
    for r, arm in enumerate(arms):
        layers = _pre_pool_layers(models[arm])
        with torch.no_grad(), _capture(dict(layers)) as store:
            models[arm](x[:1])
        # the deepest block activation that still has spatial detail (>= 4x4)
        layer_name, layer = next(((n, m) for n, m in reversed(layers) if min(store[n].shape[-2:]) >= 4), layers[0])
        layer_names.append(f"{short(arm, backbone)}: {layer_name}")
        cam, pred = grad_cam(models[arm], layer, x)
        for i in range(len(images)):
            ax = axes[r, i]
            _show_image(ax, images[i])
            ax.imshow(cam[i].numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_title(_image_title(data, int(labels[i]), int(pred[i])), fontsize=7)
            if i == 0:
                ax.set_ylabel(short(arm, backbone), fontsize=8)
    subset = "a subset of the finished arms (the others are named below)" if left_out else "every finished arm"
    fig.suptitle(f"Grad-CAM, {backbone}: {subset}{', ' + heading if heading else ''}; one row per arm", fontsize=10)
    if left_out:
        fig.supxlabel(textwrap.fill(left_out, 32 * len(images)), fontsize=7)
    title = f"Grad-CAM: {backbone}" + (f" ({heading})" if heading else "")
    return save_figure(fig, out, name or f"grad_cam_{backbone}", title,
                       "Grad-CAM of the predicted class over the same test images, one row per arm (red = regions that "
                       "raise the predicted class's score). Target layer per arm: " + "; ".join(layer_names) + "."
                       + (" " + left_out if left_out else ""))


def grad_cam_figures(models: dict[str, nn.Module], backbone: str, data: Data, images: torch.Tensor,
                     labels: torch.Tensor, x: torch.Tensor, out: Path, left_out: str = "") -> list[Figure]:
    """Every drawn arm of a backbone, GRAD_CAM_ROWS per figure so each row stays legible."""
    arms = list(models)
    parts = [arms[i:i + GRAD_CAM_ROWS] for i in range(0, len(arms), GRAD_CAM_ROWS)]
    figures = []
    for k, part in enumerate(parts):
        heading = (f"arms {k * GRAD_CAM_ROWS + 1}-{k * GRAD_CAM_ROWS + len(part)} of {len(arms)} drawn"
                   if len(parts) > 1 else "")
        figures.append(grad_cam_figure({a: models[a] for a in part}, backbone, data, images, labels, x, out,
                                       name=f"grad_cam_{backbone}" + (f"_part{k + 1}" if k else ""),
                                       heading=heading, left_out=left_out))
    return figures


def spatial_gate_figure(model: nn.Module, arm: str, backbone: str, gates: dict[str, dict[str, torch.Tensor]],
                        data: Data, images: torch.Tensor, labels: torch.Tensor, out: Path) -> Figure | None:
    paths = [p for p, g in gates.items() if "spatial" in g]
    if not paths:
        return None
    sizes = {i.path: f"{i.height}x{i.width}" for i in getattr(model, "insertions", [])}
    n = len(images)
    fig, axes = plt.subplots(n, len(paths) + 1, figsize=(2.6 * (len(paths) + 1), 2.7 * n), squeeze=False,
                             layout="constrained")
    for i in range(n):
        _show_image(axes[i, 0], images[i])
        axes[i, 0].set_title(_image_title(data, int(labels[i])), fontsize=8)
        for j, path in enumerate(paths, start=1):
            g = gates[path]["spatial"][i]
            up = F.interpolate(g[None, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
            _show_image(axes[i, j], images[i])
            axes[i, j].imshow(up.numpy(), cmap="jet", alpha=0.5)
            axes[i, j].set_title(f"{path.removeprefix('features.')} ({sizes.get(path, '?')})\n"
                                 f"gate {float(g.min()):.2f}–{float(g.max()):.2f}", fontsize=7)
    fig.suptitle(f"Spatial attention gates: {arm}", fontsize=10)
    return save_figure(fig, out, f"spatial_gates_{arm}", f"Spatial attention: {arm}",
                       f"{short(arm, backbone)}: the spatial weights each attention module multiplies its input by "
                       "(captured by hooks; coord: product of its H and W gates, averaged over channels), upsampled "
                       "over the image; colours scaled per map, the gate's range in each title.")


def channel_gate_figure(arm: str, backbone: str, model: nn.Module, data: Data, out: Path) -> Figure | None:
    """Mean channel gate per class at each depth, over up to MAX_CLASS_IMAGES test images."""
    test = data.test
    n = min(len(test), MAX_CLASS_IMAGES)
    normalize = Normalize(data.meta.mean, data.meta.std, "cpu")
    sums: dict[str, torch.Tensor] = {}
    counts = torch.zeros(data.meta.num_classes)
    for start in range(0, n, 256):
        x = normalize(to_unit_float(test.images[start:min(n, start + 256)]))
        y = test.labels[start:min(n, start + 256)]
        for path, g in attention_gates(model, x).items():
            if "channel" in g:
                per_class = torch.zeros(data.meta.num_classes, g["channel"].shape[1]).index_add_(0, y, g["channel"])
                sums[path] = sums.get(path, 0) + per_class
        counts += torch.bincount(y, minlength=data.meta.num_classes).float()
    if not sums:
        return None
    classes = [int(c) for c in counts.argsort(descending=True)[:MAX_CLASSES_SHOWN] if counts[c] > 0]
    fig, axes = plt.subplots(1, len(sums), figsize=(4.2 * len(sums), 3.6), squeeze=False, layout="constrained")
    colors = plt.get_cmap("tab10")
    for ax, (path, total) in zip(axes[0], sums.items()):
        for k, cls in enumerate(classes):
            ax.plot((total[cls] / counts[cls]).numpy(), lw=1, color=colors(k % 10), label=data.meta.classes[cls])
        ax.plot((total.sum(0) / counts.sum()).numpy(), lw=2, color="black", label="all classes")
        ax.set_title(path.removeprefix("features."), fontsize=9)
        ax.set_xlabel("channel index")
        ax.set_ylabel("mean channel gate (excitation)")
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"Channel gates per class and depth: {arm} ({n} test images)", fontsize=10)
    return save_figure(fig, out, f"channel_gates_{arm}", f"Channel attention: {arm}",
                       f"{short(arm, backbone)}: mean channel weight of each attention module per class (SENet's "
                       "excitation analysis), shallow to deep from left to right. Curves that coincide mean the "
                       "module weights channels the same way for every class; diverging curves are class-specific.")


# ---------------------------------------------------------------- entry point


def _pick_images(data: Data, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first test image of each of the first n classes present: fixed and diverse."""
    labels = data.test.labels
    idx = []
    for cls in labels.unique().tolist():
        idx.append(int((labels == cls).nonzero()[0, 0]))
        if len(idx) == n:
            break
    index = torch.tensor(sorted(idx))
    return data.test.images[index].cpu(), labels[index].cpu()


def run_diagnostics(collected: Collected, table: pd.DataFrame, out: Path, *, data_dir: str | None = None,
                    n_images: int = 4, max_arms: int = MAX_DIAGNOSTIC_ARMS) -> Diagnostics:
    """All three views for every finished arm of every backbone (see the module docstring)."""
    result = Diagnostics()
    choice = choose_arms(table, max_arms)
    if not choice.shown:
        result.notes.append("no finished arm yet: no visual diagnostics.")
        return result
    try:
        data = load_data(collected.study.dataset, data_dir, "cpu")
    except AblateError as err:
        result.notes.append(f"visual diagnostics skipped: the dataset is not available here ({err})")
        return result
    images, labels = _pick_images(data, n_images)
    x = Normalize(data.meta.mean, data.meta.std, "cpu")(to_unit_float(images))
    arms = {a.id: a for a in collected.study.arms}
    for backbone in dict.fromkeys(table.set_index("arm").loc[choice.shown, "backbone"]):
        models = _load_models(collected, [a for a in choice.shown if arms[a].backbone.label == backbone], arms,
                              data, result)
        if choice.note(backbone):
            result.notes.append(choice.note(backbone))
        if not models:
            continue
        result.figures += grad_cam_figures(models, backbone, data, images, labels, x, out, choice.note(backbone))
        for arm_id, model in models.items():
            result.figures.append(feature_map_figure(model, arm_id, backbone, data, images, labels, x, out))
            gates = attention_gates(model, x)
            for fig in (spatial_gate_figure(model, arm_id, backbone, gates, data, images, labels, out),
                        channel_gate_figure(arm_id, backbone, model, data, out)):
                if fig is not None:
                    result.figures.append(fig)
    return result


def _load_models(collected: Collected, arm_ids: list[str], arms: dict[str, Arm], data: Data,
                 result: Diagnostics) -> dict[str, nn.Module]:
    """The models of `arm_ids` from their checkpoints; an arm that has none, or whose file does not load, is a note."""
    models: dict[str, nn.Module] = {}
    for arm_id in arm_ids:
        path, seed = _checkpoint(collected, arm_id)
        if path is None:
            result.notes.append(f"{arm_id}: no checkpoint file found; diagnostics skipped for this arm.")
            continue
        try:
            models[arm_id] = _load_model(arms[arm_id], data, path)
        except UnreadableCheckpoint as err:  # truncated or overwritten: a note, not a traceback
            result.notes.append(f"{arm_id}: {err}; diagnostics skipped for this arm.")
            continue
        except (RuntimeError, KeyError, OSError) as err:
            result.notes.append(f"{arm_id}: checkpoint {path} does not load into this arm's model "
                                f"({type(err).__name__}); diagnostics skipped for this arm.")
            continue
        result.arms.append(f"{arm_id} (seed {seed})")
    return models
