"""Home: what the lab does, one-click runs, and the latest runs.

Start with `streamlit run app.py`. Pages come from the `pages/` folder; this file is the first page.
"""
import time

import streamlit as st

from lab.hub import is_offline
from lab.training.metrics import primary_metric_name
from lab.views.formatting import format_duration
from lab.views.one_click import cuda_present, one_click_runs
from ui.common import (LIVE_PAGE, NEW_RUN_PAGE, RUNS_PAGE, get_store, launch, open_run, page_setup, status_badge,
                       user_errors)

page_setup("Home")
st.title("Fine-Tuning Lab")
st.markdown(
    "Fine-tune BERT-family models for **text classification** and **named-entity recognition**, on built-in "
    "datasets or your own files.  \n"
    "Choose full fine-tuning or a PEFT method (LoRA, AdaLoRA, IA3, prompt tuning, …), then watch the loss "
    "curves and per-label precision / recall tables while it trains.  \n"
    "Compare runs side by side, and try the finished model on your own text in the playground.")

st.subheader("One click")
offline = is_offline()
for column, card in zip(st.columns(2), one_click_runs(offline, gpu=cuda_present())):
    with column.container(border=True, height="stretch"):
        st.markdown(f"**{card.title}**")
        st.write(card.description)
        if card.note:
            st.caption(card.note)
        if st.button(f"Start {card.title}", key=f"one-click-{card.key}", type="primary", icon=":material/play_arrow:"):
            with user_errors():
                open_run(launch(card.config))
st.page_link(NEW_RUN_PAGE, label="Or set up your own run", icon=":material/tune:")

st.subheader("Recent runs")
with user_errors():
    runs = get_store().list_runs(limit=8)
    if not runs:
        st.caption("No runs yet: start one above.")
    for run in runs:
        metric = primary_metric_name(run.task)
        end = run.finished_at or time.time()
        details = [status_badge(run.status), run.task, run.dataset, run.peft_method]
        if metric in run.metrics:
            details.append(f"test {metric} **{run.metrics[metric]:.3f}**")
        if run.started_at:
            details.append(format_duration(end - run.started_at))
        with st.container(border=True, gap=None):
            st.page_link(LIVE_PAGE, label=f"**{run.name}**", query_params={"run": run.id}, icon=":material/monitoring:")
            st.caption(" · ".join(details) + f" · {run.id}")
    if runs:
        st.page_link(RUNS_PAGE, label="All runs", icon=":material/table_rows:")
