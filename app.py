"""Home: what the lab does, one-click runs, and the latest runs.

Start with `streamlit run app.py`. Pages come from the `pages/` folder; this file is the first page.
"""

import copy
import time

import streamlit as st

from lab.config import RunConfig
from lab.groups.one_click import OneClick, cuda_present, one_click_runs
from lab.hub import is_offline
from lab.training.metrics import primary_metric_name
from lab.views.formatting import plain_text
from ui.common import (
    LIVE_PAGE,
    NEW_RUN_PAGE,
    RUNS_PAGE,
    get_store,
    launch,
    method_name,
    open_run,
    page_setup,
    status_badge,
    user_errors,
)
from ui.estimates import card_estimate
from ui.i18n import duration, metric_name, t


def named_in_page_language(card: OneClick) -> RunConfig:
    """The card's run, named by the card's title in the page's language (the data it really trains on when
    that differs: WNUT-16 offline)."""
    title = t(
        f"one_click.{card.key}.offline_title" if card.offline_substitute else f"one_click.{card.key}.{card.plan}.title"
    )
    config = copy.deepcopy(card.config)
    config.name = t("home.run_name", title=title)
    return config


page_setup("pages.home")
st.title(t("app.name"))
st.markdown(t("home.intro"))

st.subheader(t("home.one_click"))
offline = is_offline()
for column, card in zip(st.columns(2), one_click_runs(offline, gpu=cuda_present())):
    words = f"one_click.{card.key}.{card.plan}"
    with column.container(border=True, height="stretch"):
        st.markdown(f"**{t(words + '.title')}**")
        st.write(t(words + ".description"))
        if card.offline_substitute:
            st.caption(t(f"one_click.{card.key}.offline"))
        elif offline:
            st.caption(t("one_click.offline_data"))
        card_estimate(card.config)
        if st.button(
            t("home.start", title=t(words + ".title")),
            key=f"one-click-{card.key}",
            type="primary",
            icon=":material/play_arrow:",
        ):
            with user_errors():
                open_run(launch(named_in_page_language(card)))
st.page_link(NEW_RUN_PAGE, label=t("home.own_run"), icon=":material/tune:")

st.subheader(t("home.recent"))
with user_errors():
    runs = get_store().list_runs(limit=8)
    if not runs:
        st.caption(t("home.no_runs"))
    for run in runs:
        metric = primary_metric_name(run.task)
        end = run.finished_at or time.time()
        details = [
            status_badge(run.status),
            t(f"task.{run.task}"),
            plain_text(run.dataset),
            method_name(run.peft_method),
        ]
        if metric in run.metrics:
            details.append(t("home.test_metric", metric=metric_name(metric), value=f"{run.metrics[metric]:.3f}"))
        if run.started_at:
            details.append(duration(end - run.started_at))
        with st.container(border=True, gap=None):
            # The name as typed: a page link's label renders Markdown.
            st.page_link(
                LIVE_PAGE,
                label=f"**{plain_text(run.name)}**",
                query_params={"run": run.id},
                icon=":material/monitoring:",
            )
            st.caption(" · ".join(details) + f" · {run.id}")
    if runs:
        st.page_link(RUNS_PAGE, label=t("home.all_runs"), icon=":material/table_rows:")
