"""The report's charts on small hand-built results tables: what each figure draws, read from matplotlib's objects.

Every expected value comes from the table the test builds (its CIs, verdicts, overheads), never from a
figure drawn once: the colour of 15 attention types, the error bars of measured overheads, the fixed
colour limits of the heatmap, the legend entries and the arms the diagnostics draw.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ablate import stats  # noqa: E402
from ablate.attention import ATTENTION  # noqa: E402
from ablate.columns import Columns  # noqa: E402
from ablate.models import build_model  # noqa: E402
from ablate.report import diagnostics, figures  # noqa: E402
from ablate.report.output import Figure  # noqa: E402

BUILTIN = [n for n in ATTENTION if n != "none"]
FIFTEEN = BUILTIN + [f"plugin{i}" for i in range(15 - len(BUILTIN))]
LATENCY = Columns.overhead(Columns.latency_metric(1))
STEP = Columns.overhead(Columns.TRAIN_STEP)


def arm_row(attention: str, *, backbone: str = "cnn", position: str | None = "after_relu", reduction: int | None = 16,
            diff: float = 0.0, half: float = 1.0, verdict: str = stats.SAME, acc: float = 90.0,
            latency: tuple[float, float, float] = (20.0, 10.0, 30.0),
            step: tuple[float, float, float] = (15.0, 5.0, 25.0)) -> dict:
    """One row of a results table, with the column names of report.tables.arm_table."""
    baseline = attention == "none"
    arm = f"{backbone}/none" if baseline else f"{backbone}/{attention}/{position}/r{reduction}"
    nan = math.nan
    return {
        "arm": arm, "backbone": backbone, "attention": attention, "position": None if baseline else position,
        "reduction": None if baseline else reduction, "is_baseline": baseline, "status": "complete", "n": 3,
        "acc_mean": acc, "acc_ci_low": acc - 1, "acc_ci_high": acc + 1,
        "diff": nan if baseline else diff, "diff_ci_low": nan if baseline else diff - half,
        "diff_ci_high": nan if baseline else diff + half,
        "p": nan if baseline else 0.5, "p_holm": nan if baseline else (0.001 if verdict != stats.SAME else 0.9),
        "verdict": "baseline" if baseline else verdict, "mde": nan if baseline else 1.5,
        "macs_full": 8e6 * (1.0 if baseline else 1.02), "params_vs_none_pct": 0.0 if baseline else 0.4,
        "macs_fvcore_default_vs_none_pct": 0.0 if baseline else 0.6, "macs_full_vs_none_pct": 0.0 if baseline else 1.1,
        **dict(zip(LATENCY, (nan,) * 3 if baseline else latency)),
        **dict(zip(STEP, (nan,) * 3 if baseline else step)),
    }


def frame(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    table["reduction"] = table["reduction"].astype("Int64")
    return table


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[plt.Figure]:
    """The matplotlib figures the chart functions draw, kept open instead of saved (closed after the test)."""
    kept: list[plt.Figure] = []

    def keep(fig: plt.Figure, _out: Path, name: str, title: str, caption: str) -> Figure:
        kept.append(fig)
        return Figure(f"figures/{name}.png", title, caption)

    monkeypatch.setattr(figures, "save_figure", keep)
    monkeypatch.setattr(diagnostics, "save_figure", keep)
    yield kept
    for fig in kept:
        plt.close(fig)


def data_points(ax: plt.Axes) -> list:
    """The marker lines of an axes, without error-bar caps."""
    return [ln for ln in ax.lines if ln.get_marker() not in (None, "None", "", "_", "|")]


def rgb(color: object) -> tuple[float, float, float]:
    return tuple(round(c, 4) for c in to_rgb(color))


# ---------------------------------------------------------------- any number of attention types


def test_styles_are_distinct_and_deterministic_for_fifteen_types() -> None:
    styles = figures.attention_styles(FIFTEEN)
    assert figures.attention_styles(list(reversed(FIFTEEN)) + ["none"]) == styles  # the set decides, not the order
    types = [styles[n] for n in FIFTEEN]
    assert len({rgb(s.color) for s in types}) == 15  # colours alone already differ
    assert len({(rgb(s.color), s.marker) for s in types}) == 15
    # the eleventh type on also differs by its second channels, so a light shade is never the only cue
    assert {s.marker for s in types[:10]} == {"o"} and {s.marker for s in types[10:]} == {"s"}
    assert {s.fill for s in types[10:]} == {"none"} and all(s.hatch for s in types[10:])
    assert rgb(styles["none"].color) == (0.0, 0.0, 0.0)
    assert figures.attention_order(FIFTEEN)[:len(BUILTIN)] == BUILTIN  # registry order first, plugins after


def test_fifteen_types_are_told_apart_in_the_scatter_and_line_charts(drawn: list[plt.Figure], tmp_path: Path) -> None:
    rows = [arm_row("none")] + [arm_row(a, reduction=r, acc=80 + i) for i, a in enumerate(FIFTEEN) for r in (4, 16)]
    table = frame(rows)
    figures.accuracy_vs_cost(table, tmp_path, "macs_full", "MACs", "acc_vs_macs", "MACs", scale=1e6)
    figures.accuracy_vs_reduction(table, tmp_path)
    scatter, lines = drawn
    keys = {(rgb(ln.get_color()), ln.get_fillstyle()) for ln in data_points(scatter.axes[0])}
    assert len(keys) == 16  # 15 types + the baseline: colour + fill (the marker shape is the position)
    by_type = {(rgb(ln.get_color()), ln.get_marker()) for ln in data_points(lines.axes[0])}
    assert len(by_type) == 15  # one line per type over the two ratios: colour + marker (line style = position)
    legend = scatter.legends[0]
    assert [t.get_text() for t in legend.get_texts()][:16] == ["none", *FIFTEEN]


# ---------------------------------------------------------------- heatmap


def heat_table(scale: float) -> pd.DataFrame:
    return frame([
        arm_row("none"),
        arm_row("se", diff=-1.0 * scale, half=0.4, verdict=stats.WORSE),  # significant
        arm_row("sam", diff=0.3 * scale, half=1.5 * scale),  # CI covers 0
        arm_row("cbam", diff=0.8 * scale, half=0.5),  # CI excludes 0, not significant after correction
    ])


def test_heatmap_colour_scale_is_fixed_and_cells_carry_ci_and_significance(drawn: list[plt.Figure],
                                                                          tmp_path: Path) -> None:
    small, large = heat_table(1.0), heat_table(6.0)
    figures.diff_heatmap(small, tmp_path)
    figures.diff_heatmap(large, tmp_path)
    limits = [fig.axes[0].collections[0].get_clim() for fig in drawn]
    assert limits[0] == limits[1] == (-figures.DIFF_LIMIT_PP, figures.DIFF_LIMIT_PP)
    ax = drawn[0].axes[0]
    texts = {t.get_text(): t for t in ax.texts}
    for _, r in small[~small["is_baseline"]].iterrows():
        star = "*" if r["verdict"] in (stats.BETTER, stats.WORSE) else ""
        text = texts[f"{r['diff']:+.2f}{star}\n[{r['diff_ci_low']:+.2f}, {r['diff_ci_high']:+.2f}]"]
        assert (text.get_fontweight() == "bold") == bool(star)
    hatched = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch()]
    covers = small[~small["is_baseline"] & (small["diff_ci_low"] <= 0) & (small["diff_ci_high"] >= 0)]
    assert len(hatched) == len(covers) == 1
    assert f"±{figures.DIFF_LIMIT_PP:g} pp" in drawn[0].axes[1].get_ylabel()  # the colour bar states the fixed scale


def test_heatmap_panel_without_arms_says_so(drawn: list[plt.Figure], tmp_path: Path) -> None:
    table = frame([arm_row("none"), arm_row("se", reduction=16), arm_row("none", backbone="vgg16"),
                   arm_row("se", backbone="vgg16", reduction=4)])
    figures.diff_heatmap(table, tmp_path)
    (fig,) = drawn
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["cnn, reduction r=4: no arm", "cnn, reduction r=16", "vgg16, reduction r=4",
                      "vgg16, reduction r=16: no arm"]


def test_heat_cell_of_several_arms_prints_no_interval() -> None:
    arms = frame([arm_row("se", reduction=4, diff=1.0, verdict=stats.BETTER),
                  arm_row("se", reduction=16, diff=2.0, verdict=stats.BETTER)])
    cell = figures.heat_cell(arms)
    assert cell.value == 1.5 and cell.significant and not cell.covers_zero
    assert cell.text == "+1.50*\nmean of 2 arms"
    mixed = frame([arm_row("se", diff=1.0, verdict=stats.BETTER), arm_row("se", diff=-1.0, verdict=stats.WORSE)])
    assert not figures.heat_cell(mixed).significant  # opposite directions claim nothing


# ---------------------------------------------------------------- cost overhead


def cost_table(noise: bool) -> pd.DataFrame:
    return frame([
        arm_row("none"),
        arm_row("se", latency=(20.0, 10.0, 30.0), step=(4.0, -2.0, 9.0) if noise else (4.0, 1.0, 9.0)),
        arm_row("cbam", latency=(60.0, 50.0, 75.0), step=(30.0, 20.0, 41.0)),
    ])


def legend_labels(fig: plt.Figure) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def test_cost_bars_carry_cis_and_within_noise_bars_look_different(drawn: list[plt.Figure], tmp_path: Path) -> None:
    table = cost_table(noise=True)
    figures.cost_overhead(table, (1,), tmp_path)
    (fig,) = drawn
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["params", "MACs (fvcore default)", "MACs (full)", "latency b1", "training step"]
    for ax, cols in zip(fig.axes[3:], (LATENCY, STEP)):
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        arms = table[~table["is_baseline"]]
        assert len(bars) == len(arms)  # every measured overhead has its CI drawn
        for bar, (_, r) in zip(bars, arms.iterrows()):
            (segment,) = bar.lines[2][0].get_segments()
            assert np.allclose([segment[0][0], segment[1][0]], [r[cols[1]], r[cols[2]]])
    step_bars = [c.patches[0] for c in fig.axes[4].containers if isinstance(c, BarContainer)]
    se_bar, cbam_bar = step_bars
    assert se_bar.get_hatch() and se_bar.get_facecolor()[3] == 0  # CI [-2, 9] covers 0: hollow, hatched
    assert not cbam_bar.get_hatch() and cbam_bar.get_facecolor()[3] == 1
    assert not any(isinstance(c, ErrorbarContainer) for ax in fig.axes[:3] for c in ax.containers)  # counted: exact
    assert legend_labels(fig) == [figures.COUNTED, figures.MEASURED, figures.NOISE]


def test_cost_legend_has_no_entry_without_a_bar(drawn: list[plt.Figure], tmp_path: Path) -> None:
    figures.cost_overhead(cost_table(noise=False), (1,), tmp_path)
    (fig,) = drawn
    assert legend_labels(fig) == [figures.COUNTED, figures.MEASURED]  # nothing within noise: no such entry
    drawn_labels = {c.get_label() for ax in fig.axes for c in ax.containers}
    assert set(legend_labels(fig)) <= drawn_labels


# ---------------------------------------------------------------- forest


def test_forest_draws_the_primary_ci_and_lists_only_verdicts_present(drawn: list[plt.Figure], tmp_path: Path) -> None:
    table = heat_table(1.0)
    figures.forest(table, tmp_path)
    (fig,) = drawn
    ax = fig.axes[0]
    arms = table[~table["is_baseline"]].sort_values("diff")
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == len(arms)
    for bar, (_, r) in zip(bars, arms.iterrows()):
        (segment,) = bar.lines[2][0].get_segments()
        assert np.allclose([segment[0][0], segment[1][0]], [r["diff_ci_low"], r["diff_ci_high"]])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [stats.WORSE, stats.SAME]  # in VERDICT_COLORS order; no 'better', no 'not testable'


# ---------------------------------------------------------------- diagnostics: which arms


def many_arms(k: int) -> pd.DataFrame:
    """A baseline and k arms over 3 types, in study order; accuracy rising against that order."""
    types = ["se", "cbam", "eca"]
    rows = [arm_row("none")] + [arm_row(types[i % 3], reduction=2 ** (i // 3 + 1), acc=70 + i) for i in range(k)]
    return frame(rows)


def test_diagnostics_draw_every_finished_arm_of_a_normal_study() -> None:
    table = many_arms(6)
    choice = diagnostics.choose_arms(table)
    assert choice.shown == list(table["arm"]) and choice.left_out == {} and choice.note("cnn") == ""


def test_diagnostics_cut_by_a_data_free_rule_and_name_the_arms_left_out() -> None:
    table = many_arms(9)
    choice = diagnostics.choose_arms(table, max_arms=5)
    # baseline, then one arm of each type in turn in study order: se, cbam, eca, then se again
    assert choice.shown == list(table["arm"].iloc[:5])
    assert choice.left_out == {"cnn": list(table["arm"].iloc[5:])}
    for arm in table["arm"].iloc[5:]:
        assert arm in choice.note("cnn")
    reversed_acc = table.assign(acc_mean=table["acc_mean"].to_numpy()[::-1])
    assert diagnostics.choose_arms(reversed_acc, max_arms=5) == choice  # test accuracy decides nothing
    ordered = table.set_index("arm").loc[choice.shown]
    assert set(ordered["attention"]) == {"none", "se", "cbam", "eca"}  # every type keeps a row


def test_grad_cam_figures_show_every_drawn_arm_and_the_note(drawn: list[plt.Figure], tmp_path: Path) -> None:
    torch.manual_seed(0)
    arms = [f"cnn/se/after_relu/r{r}" for r in range(1, 11)]
    models = {a: build_model("cnn", "se", reduction=int(a.rsplit("r", 1)[1])).eval() for a in arms}
    data = SimpleNamespace(meta=SimpleNamespace(classes=tuple(str(c) for c in range(10))))
    images = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    note = "cnn: 1 finished arm(s) not drawn ...: cnn/se/after_relu/r99."
    figs = diagnostics.grad_cam_figures(models, "cnn", data, images, torch.tensor([0, 1]),
                                        images.float() / 255, tmp_path, note)
    assert len(figs) == len(drawn) == math.ceil(len(arms) / diagnostics.GRAD_CAM_ROWS)
    rows = [ax.get_ylabel() for fig in drawn for ax in fig.axes if ax.get_ylabel()]
    assert rows == [a.removeprefix("cnn/") for a in arms]
    for fig, record in zip(drawn, figs):
        assert "cnn/se/after_relu/r99" in fig.get_supxlabel().replace("\n", " ") and note in record.caption
