"""The figures of a run's or a comparison's handout: plotly figures of folded runs (lab.views.run_view),
their words from a `lab.views.handout.Words`, so the CLI draws what a page's download gives. Sized for
a printed page by lab.views.handout; the pages' live charts are ui/charts.py."""

from __future__ import annotations

from typing import Optional

import pandas as pd
import plotly.graph_objects as go

from lab.views.formatting import LOSS_SMOOTHING, series_colours, smooth, thinned
from lab.views.handout import Words
from lab.views.run_view import RunView

RAW, LINE, VALIDATION = "rgba(31,119,180,0.45)", "rgb(31,119,180)", "rgb(214,39,40)"


def laid_out(figure: go.Figure, title: str, x_title: str, y_title: str, series: int = 1) -> go.Figure:
    # The legend under the plot, one more line of room per few series: a printed page has no scrollbar.
    figure.update_layout(
        title=dict(text=title, x=0, xanchor="left"),
        height=340 + 20 * max(0, series - 4),
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0),
        hovermode="x unified",
    )
    figure.update_xaxes(title_text=x_title)
    figure.update_yaxes(title_text=y_title)
    return figure


def metric_word(words: Words, metric: str) -> str:
    return words.get(f"lessons.metric.{metric}", metric)


def run_loss(view: RunView, words: Words) -> go.Figure:
    """The training loss (raw and smoothed) and the validation loss against the optimizer step."""
    figure = go.Figure()
    if not view.steps.empty:
        steps, loss = view.steps["step"].tolist(), view.steps["loss"].tolist()
        figure.add_scatter(
            x=thinned(steps), y=thinned(loss), mode="lines", name=words("chart.training"), line=dict(color=RAW)
        )
        figure.add_scatter(
            x=thinned(steps),
            y=thinned(smooth(loss, LOSS_SMOOTHING)),
            mode="lines",
            name=words("chart.smoothed", smoothing=f"{LOSS_SMOOTHING:g}"),
            line=dict(color=LINE, width=2.5),
        )
    if "loss" in view.evaluations and not view.evaluations.empty:
        figure.add_scatter(
            x=view.evaluations["step"].tolist(),
            y=view.evaluations["loss"].tolist(),
            mode="lines+markers",
            name=words("chart.validation"),
            line=dict(color=VALIDATION, dash="dash"),
        )
    return laid_out(figure, words("chart.training_loss"), words("chart.step"), words("chart.loss"))


def run_metrics(view: RunView, words: Words) -> go.Figure:
    """Each validation metric (all in [0, 1]) at each evaluation."""
    figure = go.Figure()
    for name in view.metric_names:
        figure.add_scatter(
            x=view.evaluations["step"].tolist(),
            y=view.evaluations[name].tolist(),
            mode="lines+markers",
            name=metric_word(words, name),
        )
    figure.update_yaxes(range=[0, 1.02])
    return laid_out(figure, words("chart.validation_metrics"), words("chart.step"), "", len(view.metric_names))


def label_f1(history: pd.DataFrame, words: Words) -> go.Figure:
    """Each label's validation F1 across evaluations: which labels the model learns first."""
    figure = go.Figure()
    labels = list(dict.fromkeys(history["label"].astype(str)))
    colours = series_colours(labels)
    for label, rows in history.groupby("label", sort=False):
        figure.add_scatter(
            x=rows["step"].tolist(),
            y=rows["f1"].tolist(),
            mode="lines+markers",
            name=str(label),
            line=dict(color=colours[str(label)]),
        )
    figure.update_yaxes(range=[0, 1.02])
    return laid_out(figure, words("chart.label_f1"), words("chart.step"), "F1", len(labels))


def tradeoff(rows: pd.DataFrame, metric: str, words: Words, colours: dict[str, str]) -> go.Figure:
    """Held-out metric against the share of parameters trained (log scale), one point per method (rows:
    lab.views.compare_view.comparison_rows with the methods' names)."""
    done = rows.dropna(subset=["test", "trainable share"])
    figure = go.Figure()
    for method, share, score in zip(done["method"], done["trainable share"], done["test"]):
        figure.add_scatter(
            x=[100 * share],
            y=[score],
            name=str(method),
            mode="markers",
            marker=dict(size=12, color=colours.get(str(method))),
            hovertemplate=f"{method}: %{{y:.3f}}, %{{x:.3g}}%<extra></extra>",
        )
    figure.update_xaxes(type="log")
    figure.update_yaxes(range=[0, 1.05])
    word = metric_word(words, metric)
    figure = laid_out(
        figure,
        words("chart.method_tradeoff", metric=word),
        words("chart.trainable_share"),
        words("chart.test_metric", metric=word),
        len(done),
    )
    figure.update_layout(hovermode="closest")
    return figure


def run_curves(
    views: dict[str, RunView], metric: Optional[str], smoothing: float, colours: dict[str, str]
) -> tuple[go.Figure, go.Figure]:
    """The smoothed training loss and the validation metric of several runs (`views` by shown name), one colour
    per run on both, without titles: the Compare page and the handouts lay them out in their own words."""
    loss, scores = go.Figure(), go.Figure()
    for name, view in views.items():
        line = dict(color=colours.get(name))
        if not view.steps.empty:
            loss.add_scatter(
                x=thinned(view.steps["step"].tolist()),
                y=thinned(smooth(view.steps["loss"].tolist(), smoothing)),
                mode="lines",
                name=name,
                line=line,
            )
        if metric and metric in view.evaluations:
            scores.add_scatter(
                x=view.evaluations["step"].tolist(),
                y=view.evaluations[metric].tolist(),
                mode="lines+markers",
                name=name,
                line=line,
                marker=line,
            )
    scores.update_yaxes(range=[0, 1.02])
    return loss, scores


def curves_by_run(
    views: dict[str, RunView], metric: str, words: Words, colours: dict[str, str]
) -> tuple[go.Figure, go.Figure]:
    """The validation metric and the smoothed training loss of several runs (`views` by shown name)."""
    loss, scores = run_curves(views, metric, LOSS_SMOOTHING, colours)
    word = metric_word(words, metric)
    return (
        laid_out(scores, words("chart.validation_metric", metric=word), words("chart.step"), word, len(views)),
        laid_out(loss, words("chart.training_loss_smoothed"), words("chart.step"), words("chart.loss"), len(views)),
    )
