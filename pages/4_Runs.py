"""Runs: the history, filtered; several runs compared side by side; downloads and delete.

Comparing overlays the training loss and validation metric of the chosen runs and lines up their
test metrics, trainable parameters, time and peak memory: the view for "which PEFT method?".
"""
import functools

import streamlit as st

from lab.config import NO_ADAPTER_METHODS
from lab.training.metrics import primary_metric_name
from lab.views.history import comparison_frame, runs_frame, zip_folder
from lab.views.run_view import run_view
from ui import charts
from ui.common import get_store, open_run, page_setup, user_errors

page_setup("Runs")
st.title("Runs")
store = get_store()
FILTERS = (("task", "Task"), ("dataset", "Dataset"), ("method", "Method"), ("status", "Status"))


def filtered_history(frame):
    row = st.container(horizontal=True)  # four across on a desktop, wrapping on a phone
    for name, label in FILTERS:
        chosen = row.multiselect(label, sorted(frame[name].unique()), placeholder="all", width=220)
        if chosen:
            frame = frame[frame[name].isin(chosen)]
    st.dataframe(frame, hide_index=True, width="stretch",
                 column_config={"created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")})
    return frame


def compare(records: dict, ids: list[str]) -> None:
    st.subheader("Compare")
    default = [run_id for run_id in ids if records[run_id].status == "completed"][:3]
    chosen = st.multiselect("Runs to compare", ids, default=default,
                            format_func=lambda i: f"{records[i].name} · {records[i].peft_method} · {i[-4:]}")
    if not chosen:
        st.caption("Choose runs to overlay their curves and line up their results.")
        return
    runs = [records[run_id] for run_id in chosen]
    views = {run.id: run_view(event for _, event in store.events_since(run.id)) for run in runs}
    smoothing = st.slider("Loss smoothing", 0.0, 0.95, 0.6, 0.05, width=320)
    metric = primary_metric_name(runs[0].task)
    named = {f"{run.name} ({run.id[-4:]})": views[run.id] for run in runs}
    loss, scores = charts.compare_curves(named, smoothing, metric)
    left, right = st.columns(2)
    left.plotly_chart(loss, width="stretch", key="compare-loss")
    right.plotly_chart(scores, width="stretch", key="compare-metric")
    st.table(comparison_frame(runs, views))


def manage(records: dict, ids: list[str]) -> None:
    st.subheader("Download or delete")
    run_id = st.selectbox("Run", ids, format_func=lambda i: f"{records[i].name} · {records[i].status} · {i}")
    # A CLI run trained with --output keeps its model and report there: the store records where.
    run, folder, output = records[run_id], store.run_dir(run_id), store.output_dir(records[run_id])
    row = st.container(horizontal=True)
    if row.button("Open", icon=":material/monitoring:"):
        open_run(run_id)
    config_file, report_file, model_dir = folder / "config.yaml", output / "report.json", output / "model"
    if config_file.is_file():
        row.download_button("config.yaml", config_file.read_text(encoding="utf-8"), f"{run_id}-config.yaml",
                            icon=":material/download:", on_click="ignore")
    if report_file.is_file():
        row.download_button("report.json", report_file.read_text(encoding="utf-8"), f"{run_id}-report.json",
                            icon=":material/download:", on_click="ignore")
    if model_dir.is_dir():
        what = "model" if run.peft_method in NO_ADAPTER_METHODS else "adapter"
        # A callable is only run when clicked: zipping a model on every rerun would be slow.
        # No rerun on a click ("ignore"): a rerun re-registers every deferred file, and a second download
        # clicked before it ends would find its file gone ("Deferred file ... not found").
        row.download_button(f"{what} (.zip)", functools.partial(zip_folder, model_dir), f"{run_id}-{what}.zip",
                            mime="application/zip", icon=":material/download:", on_click="ignore")
    with row.popover("Delete", icon=":material/delete:"):
        st.write(f"Delete **{run.name}** and its files (model, checkpoints, report)?")
        if st.button("Delete for good", type="primary", key="delete-confirm"):
            with user_errors():
                store.delete_run(run_id)
                st.toast(f"Deleted {run_id}.")
                st.rerun()


with user_errors():
    records = {run.id: run for run in store.list_runs()}
    if not records:
        st.info("No runs yet. Start one from the Home page (one click) or the New run page.")
    else:
        frame = filtered_history(runs_frame(list(records.values())))
        ids = frame["run"].tolist()
        if ids:
            compare(records, ids)
            manage(records, ids)
        else:
            st.caption("No run matches these filters.")
