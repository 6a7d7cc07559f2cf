"""`learning_rate: auto` on the pages: the New run form's learning-rate field with its auto choice and its
"Find a rate now" button, and the range test's curve (loss against rate, log axis, the chosen rate marked) that
the Live run page and the button draw (lab.training.lr_find runs the test)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional, Union

import plotly.graph_objects as go
import streamlit as st

from lab.accounts.uploads import check_own_data_files
from lab.config import RunConfig
from lab.config_sections import AUTO_RATE
from lab.events import LearningRateFoundEvent
from lab.views.run_view import RunView
from ui.auth import current_viewer
from ui.common import get_store, user_errors, wait_for_training_stack
from ui.i18n import t
from ui.widgets import config_widget

if TYPE_CHECKING:
    from lab.training.lr_find import RangeTest

FOUND = "lr-find-results"  # session_state: the config's YAML -> the range test "Find a rate now" ran on it


def rate_text(rate: float) -> str:
    """A rate as the CLI says it: 3.2e-3."""
    return f"{rate:.1e}".replace("e-0", "e-")


def learning_rate_field(was: Union[float, str, None], key: str, placeholder: str) -> Union[float, str, None]:
    """The learning-rate number (empty: the method's default) and, below it, the auto choice: a range test finds
    the rate when the run starts. The number waits, greyed, while auto is ticked."""
    auto_key = f"{key}-auto"
    auto = bool(st.session_state.get(auto_key, was == AUTO_RATE))
    number = config_widget(
        "train",
        "learning_rate",
        None if isinstance(was, str) else was,
        key,
        placeholder=placeholder,
        disabled=auto,
    )
    auto = st.checkbox(t("form.rate_auto"), value=was == AUTO_RATE, key=auto_key, help=t("form.rate_auto_help"))
    return AUTO_RATE if auto else number


def rate_test_chart(test: LearningRateFoundEvent) -> go.Figure:
    """The range test's loss against its rate on a log axis: each step faint, the smoothed curve the rule read,
    and the chosen rate as a dashed line."""
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=list(test.rates),
            y=list(test.losses),
            mode="markers",
            name=t("lr_find.each_step"),
            marker=dict(size=5, opacity=0.45),
        )
    )
    figure.add_trace(go.Scatter(x=list(test.rates), y=list(test.smoothed), mode="lines", name=t("lr_find.smoothed")))
    figure.add_vline(
        x=test.learning_rate,
        line_dash="dash",
        annotation_text=t("lr_find.chosen", rate=rate_text(test.learning_rate)),
        annotation_position="top left",
    )
    # Past the divergence a loss can be huge: the axis stops a little above where the curve started.
    finite = [loss for loss in test.smoothed if loss == loss]
    if finite:
        figure.update_yaxes(range=[min(finite) * 0.9, max(finite[0] * 1.5, min(finite) * 1.2)])
    figure.update_xaxes(type="log", title_text=t("lr_find.rate"))
    figure.update_yaxes(title_text=t("lr_find.loss"))
    title = t("lr_find.chart_title")
    figure.update_layout(
        title=dict(text=title, x=0, xanchor="left"),
        height=330,
        margin=dict(l=10, r=10, t=40, b=10),
        uirevision=title,
        legend=dict(orientation="h", yanchor="top", y=-0.32, xanchor="left", x=0),
    )
    return figure


def rate_test_summary(test: LearningRateFoundEvent) -> str:
    """`auto -> 3.2e-3: the steepest descent of the smoothed loss, over 80 steps in 6 s`."""
    summary = t(
        "lr_find.summary",
        rate=rate_text(test.learning_rate),
        rule=t(f"lr_find.rule_{test.rule}"),
        steps=len(test.rates),
        seconds=f"{test.seconds:.0f}",
    )
    return summary + (" " + t("lr_find.diverged") if test.diverged else "")


def rate_test_section(view: RunView, key: str = "lr-find-chart") -> None:
    """The run's range test, when its learning rate was auto: the curve and the rate it chose."""
    test = view.rate_test
    if test is None:
        return
    with st.expander(t("lr_find.title"), icon=":material/query_stats:"):
        st.caption(rate_test_summary(test))
        st.plotly_chart(rate_test_chart(test), key=key, width="stretch")


def find_rate_now(config: RunConfig, disabled: bool = False) -> None:
    """ "Find a rate now": the range test on the form's config, with a Stop button while it runs; its curve stays
    drawn for this config (a changed form asks again). A student may test only on files and models they may
    train on."""
    wait_for_training_stack()
    from lab.training.lr_find import RANGE_TEST_STEPS

    found: dict[str, Any] = st.session_state.setdefault(FOUND, {})
    recipe = config.to_yaml()
    with st.expander(t("lr_find.title"), icon=":material/query_stats:"):
        st.caption(t("form.find_rate_caption", steps=RANGE_TEST_STEPS))
        if st.button(t("form.find_rate"), key="find-rate", disabled=disabled):
            with user_errors():
                viewer = current_viewer()
                if viewer is not None:
                    check_own_data_files(config, get_store(), viewer)
                test = _range_test(RunConfig.from_yaml(recipe))
                if test is not None:
                    found[recipe] = test.event()
        shown: Optional[LearningRateFoundEvent] = found.get(recipe)
        if shown is not None:
            st.caption(rate_test_summary(shown))
            st.plotly_chart(rate_test_chart(shown), key="find-rate-chart", width="stretch")


def _range_test(config: RunConfig) -> Optional[RangeTest]:
    """The range test in a thread of its own while the page waits beside a Stop button: a click on it (or on any
    widget) reruns the page, which interrupts the wait here, and the test stops at its next step. None when
    stopped."""
    from lab.training.lr_find import find_learning_rate

    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["test"] = find_learning_rate(config, stop)
        except Exception as exc:  # noqa: BLE001 - raised again on the page's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="lab-find-rate", daemon=True)
    worker.start()
    st.button(t("form.find_rate_stop"), key="find-rate-stop", icon=":material/stop:")
    ticking = st.empty()
    try:
        with st.spinner(t("form.finding_rate")):
            while worker.is_alive():
                worker.join(0.5)
                ticking.empty()  # a call into Streamlit: where a rerun the click asked for interrupts the wait
    finally:
        stop.set()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("test")
