"""Plotly figures for the pages: functions of tables, so tests can check them; their words come from
the catalogue (English outside a page).

Columns are passed as plain lists: plotly would send numpy arrays base64-encoded, which a browser
test cannot count points in.

Every figure keeps a fixed `uirevision`, so a chart redrawn each second while a run is live keeps
the user's zoom and hidden traces. Titles are stable: the browser test finds charts by title.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lab.views.formatting import SERIES_COLOURS, series_colours, smooth, thinned
from lab.views.handout_charts import run_curves
from lab.views.run_view import RunView
from ui.i18n import metric_name, t

HEIGHT = 330
# Colours per theme: the light theme's pale blue is near invisible on a dark page. Each keeps 3:1 contrast
# with its page background (tests/test_views.py), the least WCAG asks of lines and bars.
PALETTES = {
    "light": {
        "raw": "rgba(31,119,180,0.8)",
        "line": "rgb(31,119,180)",
        "validation": "rgb(214,39,40)",
        "bar": "rgb(31,119,180)",
        "table_bar": "#9ecae1",
        "background": "#ffffff",
    },
    "dark": {
        "raw": "rgba(125,185,255,0.6)",
        "line": "rgb(125,185,255)",
        "validation": "rgb(255,120,110)",
        "bar": "rgb(125,185,255)",
        "table_bar": "#2f6690",
        "background": "#0e1117",
    },
}


LABEL_COLOURS = SERIES_COLOURS  # per label, and per data-map region below
REGION_COLOURS = {"easy": "#2ca02c", "ambiguous": "#ff7f0e", "hard": "#d62728"}


def _legend_height(series: int) -> int:
    # Room for a legend of one line per series on a phone; plotly clips a taller one behind a scrollbar.
    return HEIGHT + 18 * max(0, series - 3)


def palette() -> dict[str, str]:
    """The colours for the theme the browser shows (Streamlit's menu switches it between light and dark)."""
    theme = getattr(st.context.theme, "type", None)
    return PALETTES["dark" if theme == "dark" else "light"]


def _layout(figure: go.Figure, title: str, x_title: str = "", y_title: str = "", height: int = HEIGHT) -> go.Figure:
    # The legend goes under the plot: above it, it collides with the title on narrow screens.
    figure.update_layout(
        title=dict(text=title, x=0, xanchor="left"),
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        uirevision=title,
        legend=dict(orientation="h", yanchor="top", y=-0.32, xanchor="left", x=0),
        hovermode="x unified",
    )
    figure.update_xaxes(title_text=x_title)
    figure.update_yaxes(title_text=y_title)
    return figure


def training_loss(steps: pd.DataFrame, smoothing: float, evaluations: Optional[pd.DataFrame] = None) -> go.Figure:
    """Raw training loss (faint), its smoothed line, and validation loss at each evaluation, against
    the optimizer step. The raw loss is always the first trace."""
    figure, colours = go.Figure(), palette()
    if not steps.empty:
        x, loss = steps["step"].tolist(), steps["loss"].tolist()
        figure.add_scatter(
            x=thinned(x),
            y=thinned(loss),
            mode="lines+markers",
            name=t("chart.training"),
            line=dict(color=colours["raw"], width=1),
            marker=dict(size=4),
        )
        if smoothing > 0:
            figure.add_scatter(
                x=thinned(x),
                y=thinned(smooth(loss, smoothing)),
                mode="lines",
                name=t("chart.smoothed", smoothing=f"{smoothing:g}"),
                line=dict(color=colours["line"], width=2.5),
            )
    if evaluations is not None and not evaluations.empty:
        figure.add_scatter(
            x=evaluations["step"].tolist(),
            y=evaluations["loss"].tolist(),
            mode="lines+markers",
            name=t("chart.validation"),
            line=dict(color=colours["validation"], dash="dash"),
        )
    return _layout(figure, t("chart.training_loss"), t("chart.step"), t("chart.loss"))


def validation_metrics(evaluations: pd.DataFrame, metric_names: Sequence[str]) -> go.Figure:
    """Validation metrics (all in [0, 1]) at each evaluation."""
    figure = go.Figure()
    steps = evaluations["step"].tolist()
    for name in metric_names:
        figure.add_scatter(x=steps, y=evaluations[name].tolist(), mode="lines+markers", name=metric_name(name))
    figure.update_yaxes(range=[0, 1.02])
    return _layout(figure, t("chart.validation_metrics"), t("chart.step"), "")


def label_f1_history(history: pd.DataFrame) -> go.Figure:
    """Each label's F1 across evaluations: which labels the model learns first, and which it never does."""
    figure = go.Figure()
    for label, rows in history.groupby("label", sort=False):
        figure.add_scatter(x=rows["step"].tolist(), y=rows["f1"].tolist(), mode="lines+markers", name=str(label))
    figure.update_yaxes(range=[0, 1.02])
    return _layout(figure, t("chart.label_f1"), t("chart.step"), "F1")


def confusion_heatmap(confusion: dict, normalize: bool) -> go.Figure:
    """Rows are true labels, columns predicted; normalised rows show each label's recall spread. A matrix
    of many labels is stored as its top confusions (lab.training.metrics): those are drawn as bars."""
    if "top" in confusion:
        return top_confusions(confusion, normalize)
    labels, matrix = confusion.get("labels", []), pd.DataFrame(confusion.get("matrix", []))
    values = matrix.div(matrix.sum(axis=1).replace(0, 1), axis=0) if normalize else matrix
    text = values.map(lambda v: f"{v:.2f}") if normalize else values.astype(str)
    # Numbers in the cells only while they fit; with many labels they stay in the hover.
    template = "%{text}" if len(labels) <= 12 else None
    figure = go.Figure(
        go.Heatmap(
            z=values.values,
            x=labels,
            y=labels,
            text=text.values,
            texttemplate=template,
            colorscale="Blues",
            showscale=False,
            hovertemplate=t("chart.confusion_hover") + "<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")
    size = max(300, min(700, 40 * len(labels) + 120))
    figure = _layout(
        figure,
        t("chart.confusion_share") if normalize else t("chart.confusion"),
        t("chart.predicted"),
        t("chart.true"),
        height=size,
    )
    figure.update_layout(hovermode="closest")
    return figure


def top_confusions(confusion: dict, normalize: bool) -> go.Figure:
    """The largest confusions, one bar each ("true → predicted"), the largest on top: in counts, or as a
    share of the true label's examples."""
    top, labels = confusion.get("top", []), confusion.get("labels", [])
    support = dict(zip(labels, confusion.get("support", [])))
    values = [cell["count"] / max(1, support.get(cell["true"], 0)) if normalize else cell["count"] for cell in top]
    shown = sum(cell["count"] for cell in top)
    figure = go.Figure(
        go.Bar(
            x=values[::-1],
            y=[f"{cell['true']} → {cell['predicted']}" for cell in reversed(top)],
            orientation="h",
            customdata=[[cell["true"], cell["predicted"]] for cell in reversed(top)],
            marker_color=palette()["bar"],
            hovertemplate=t("chart.top_confusion_hover") + "<extra></extra>",
        )
    )
    title = t(
        "chart.top_confusions_share" if normalize else "chart.top_confusions",
        shown=len(top),
        labels=f"{len(labels):,}",
        share=f"{shown / max(1, confusion.get('errors', 0)):.0%}",
    )
    x_title = t("chart.confusion_share_axis") if normalize else t("chart.confusion_count")
    figure = _layout(figure, title, x_title, "", height=max(300, min(900, 18 * len(top) + 120)))
    figure.update_layout(hovermode="closest")
    return figure


def label_probabilities(probabilities: dict[str, float]) -> go.Figure:
    ordered = sorted(probabilities.items(), key=lambda item: item[1])
    figure = go.Figure(
        go.Bar(
            x=[p for _, p in ordered],
            y=[label for label, _ in ordered],
            orientation="h",
            text=[f"{p:.1%}" for _, p in ordered],
            textposition="auto",
        )
    )
    figure.update_xaxes(range=[0, 1])
    figure = _layout(
        figure, t("chart.probabilities"), t("chart.probability"), "", height=max(160, 60 + 36 * len(ordered))
    )
    figure.update_layout(hovermode="closest")
    return figure


def label_distribution(counts: pd.DataFrame, task: str) -> go.Figure:
    figure = go.Figure()
    for split, rows in counts.groupby("split", sort=False):
        figure.add_bar(x=rows["label"].tolist(), y=rows["count"].tolist(), name=t(f"split.{split}"))
    figure.update_layout(barmode="group")
    return _layout(figure, t(f"chart.label_distribution.{task}"), "", t("chart.count"))


def token_length_histogram(lengths: Sequence[int], max_length: int, model: str) -> go.Figure:
    figure = go.Figure(go.Histogram(x=list(lengths), nbinsx=50, name=t("chart.examples")))
    figure.add_vline(
        x=max_length,
        line_dash="dash",
        line_color="firebrick",
        annotation_text=f"max_length {max_length}",
        annotation_position="top right",
    )
    figure = _layout(figure, t("chart.token_lengths", model=model), t("chart.tokens"), t("chart.examples"))
    figure.update_layout(hovermode="closest", showlegend=False)
    return figure


def compare_curves(
    views: dict[str, RunView], smoothing: float, metric: Optional[str], colours: Optional[dict[str, str]] = None
) -> tuple[go.Figure, go.Figure]:
    """Training loss (smoothed) and the validation metric of several runs on shared axes."""
    loss, scores = run_curves(views, metric, smoothing, colours or series_colours(list(views)))
    height = _legend_height(len(views))
    return (
        _layout(loss, t("chart.training_loss_smoothed"), t("chart.step"), t("chart.loss"), height=height),
        _layout(
            scores,
            t("chart.validation_metric", metric=metric_name(metric) if metric else t("chart.metric")),
            t("chart.step"),
            metric or "",
            height=height,
        ),
    )


def method_tradeoff(rows: pd.DataFrame, metric: str, colours: Optional[dict[str, str]] = None) -> go.Figure:
    """Held-out metric against the share of parameters trained (log scale), one point per method: what
    each method buys with what it trains. Rows come from lab.views.compare_view.comparison_rows."""
    done = rows.dropna(subset=["test", "trainable share"])
    colours = colours or series_colours(done["method"].tolist())
    figure = go.Figure()
    # A colour and a legend entry per method: the adapters crowd around 0.1-0.5%, where names written
    # beside the points overlap.
    points = zip(done["method"].tolist(), done["trainable share"].tolist(), done["test"].tolist())
    for method, share, score in points:
        figure.add_scatter(
            x=[100 * share],
            y=[score],
            name=method,
            mode="markers",
            marker=dict(size=12, color=colours.get(method)),
            hovertemplate=f"{method}: %{{y:.3f}}, %{{x:.3g}}%<extra></extra>",
        )
    figure.update_xaxes(type="log")
    figure.update_yaxes(range=[0, 1.05])
    figure = _layout(
        figure,
        t("chart.method_tradeoff", metric=metric_name(metric)),
        t("chart.trainable_share"),
        t("chart.test_metric", metric=metric_name(metric)),
        height=_legend_height(len(done)),
    )
    figure.update_layout(hovermode="closest")
    return figure


def per_label_by_method(table: pd.DataFrame, colours: Optional[dict[str, str]] = None) -> go.Figure:
    """Test F1 of each label (x) for each method (one bar colour each); `table` is labels x methods."""
    colours = colours or series_colours([str(method) for method in table.columns])
    figure = go.Figure()
    labels = [str(label) for label in table.index]
    for method in table.columns:
        figure.add_bar(x=labels, y=table[method].tolist(), name=str(method), marker_color=colours.get(str(method)))
    figure.update_yaxes(range=[0, 1.02])
    figure = _layout(figure, t("chart.per_label_by_method"), "", "F1", height=HEIGHT + 120)  # room for the legend
    figure.update_layout(barmode="group", hovermode="closest")
    return figure


def rank_heatmap(table: pd.DataFrame, step: int) -> go.Figure:
    """AdaLoRA's ranks at one evaluation: layers (rows) x adapted matrices (columns), colour = rank kept."""
    figure = go.Figure(
        go.Heatmap(
            z=table.values.tolist(),
            x=[str(c) for c in table.columns],
            y=[t("chart.part.layer", number=i) for i in table.index],
            text=table.values.tolist(),
            texttemplate="%{text}",
            colorscale="Viridis",
            zmin=0,
            colorbar=dict(title=t("chart.rank")),
            hovertemplate="%{y} · %{x}: %{z}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")
    figure = _layout(figure, t("chart.ranks", step=step), "", "", height=max(260, 45 * len(table) + 110))
    figure.update_layout(hovermode="closest")
    return figure


def projection(
    points: Sequence[Sequence[float]],
    labels: Sequence[str],
    step: int,
    ranges: Optional[tuple[list[float], list[float]]] = None,
) -> go.Figure:
    """The validation examples' sentence vectors in 2-D (PCA), one colour per gold label; fixed `ranges`
    keep the frames of a run on the same axes."""
    figure = go.Figure()
    for label, colour in series_colours(sorted(set(labels))).items():
        chosen = [point for point, gold in zip(points, labels) if gold == label]
        figure.add_scatter(
            x=[p[0] for p in chosen],
            y=[p[1] for p in chosen],
            mode="markers",
            name=label,
            marker=dict(size=6, opacity=0.8, color=colour),
        )
    if ranges:
        figure.update_xaxes(range=ranges[0])
        figure.update_yaxes(range=ranges[1])
    figure = _layout(
        figure,
        t("chart.projection", step=step),
        t("chart.component", number=1),
        t("chart.component", number=2),
        height=380,
    )
    figure.update_layout(hovermode="closest")
    return figure


def data_map(frame: pd.DataFrame) -> go.Figure:
    """Dataset cartography: each training example's spread (x) and mean (y) of its gold-label probability
    over epochs (or over the evaluations, for a short run's sample), coloured by region; the hover shows the
    start of the text."""
    figure = go.Figure()
    for region in ("easy", "ambiguous", "hard"):
        rows = frame[frame["region"] == region]
        figure.add_scatter(
            x=rows["variability"].tolist(),
            y=rows["confidence"].tolist(),
            mode="markers",
            name=t(f"chart.region.{region}"),
            text=[text[:80] for text in rows["text"]],
            customdata=rows["label"].tolist(),
            marker=dict(size=5, opacity=0.7, color=REGION_COLOURS[region]),
            hovertemplate="%{text}<br>%{customdata} · %{y:.2f} ± %{x:.2f}<extra></extra>",
        )
    figure.update_yaxes(range=[0, 1.02])
    if frame.attrs.get("evaluations", 0) > 0:  # a short run's map: the spread over its evaluations
        title, spread = t("chart.data_map_evaluations"), t("chart.variability_evaluations")
    else:
        title, spread = t("chart.data_map"), t("chart.variability")
    figure = _layout(figure, title, spread, t("chart.confidence"), height=400)
    figure.update_layout(hovermode="closest")
    return figure


def parameters_by_part(parts: Sequence[dict]) -> go.Figure:
    """Trainable parameters per part of the model (log scale, so LoRA's thousands show beside full
    fine-tuning's millions); the hover tells the part's total."""
    names = [_part_name(row["part"]) for row in parts]
    figure = go.Figure(
        go.Bar(
            x=names,
            y=[row["trainable"] or None for row in parts],
            customdata=[[row["trainable"], row["total"]] for row in parts],
            hovertemplate=t("chart.part_hover") + "<extra></extra>",
            marker_color=palette()["bar"],
        )
    )
    figure.update_yaxes(type="log")
    figure = _layout(figure, t("chart.parameters_by_part"), "", t("chart.trainable"), height=260)
    figure.update_layout(hovermode="closest")
    return figure


def _part_name(part: str) -> str:
    if part.startswith("layer "):
        return t("chart.part.layer", number=part.split()[1])
    return t(f"chart.part.{part.replace(' ', '_')}")


def sweep_figures(study, metric: str) -> tuple[go.Figure, go.Figure]:
    """Optuna's own history and parallel-coordinates figures of a sweep, their titles and axes in the
    page's language, the target named by its metric."""
    import optuna.visualization as optuna_figures

    name = t("chart.validation_metric", metric=metric_name(metric))
    history = optuna_figures.plot_optimization_history(study, target_name=name)
    names = {"Best Value": t("chart.best_so_far"), "Infeasible Trial": t("chart.infeasible_trial")}
    for trace in history.data:
        trace.name = names.get(trace.name, trace.name)
    figures = (
        _layout(history, t("chart.sweep_history"), t("chart.trial"), name),
        _layout(optuna_figures.plot_parallel_coordinate(study, target_name=name), t("chart.sweep_parallel")),
    )
    for figure in figures:
        figure.update_layout(hovermode="closest")
    return figures


def sweep_importances(study, metric: str) -> go.Figure:
    """Optuna's parameter importances (fANOVA); raises where the completed trials' parameters do not differ."""
    import optuna.visualization as optuna_figures

    figure = optuna_figures.plot_param_importances(
        study, target_name=t("chart.validation_metric", metric=metric_name(metric))
    )
    figure = _layout(figure, t("chart.sweep_importance"), t("chart.importance"), t("chart.parameter"))
    figure.update_layout(hovermode="closest")
    return figure
