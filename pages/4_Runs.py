"""Runs: the history, filtered; several runs compared side by side; downloads and delete.

Comparing overlays the training loss and validation metric of the chosen runs and lines up their
test metrics, trainable parameters, time and peak memory: the view for "which PEFT method?".
"""

import functools
import html

import streamlit as st

from lab.config import NO_ADAPTER_METHODS
from lab.training.metrics import primary_metric_name
from lab.views.formatting import plain_text
from lab.views.history import comparison_frame, folded_views, runs_frame, zip_folder
from ui import charts
from ui.common import (
    get_store,
    method_name,
    open_run,
    page_setup,
    status_name,
    task_name,
    user_errors,
    wait_for_training_stack,
)
from ui.handout import run_handout_button
from ui.i18n import duration_units, metric_name, t

page_setup("pages.runs")
st.title(t("pages.runs"))
store = get_store()
FILTERS = ("task", "dataset", "method", "status", "group")
# How a filter shows its values.
SHOWN = {"task": task_name, "method": method_name, "status": status_name}
FILTER_SHOWN = {**SHOWN, "group": lambda group: group or "–"}


def comparison_row_name(name: str) -> str:
    """A row of the comparison table, in the page's language ("test f1", "best validation f1" included)."""
    for prefix, key in (("best validation ", "history.best_validation"), ("test ", "history.test")):
        if name.startswith(prefix):
            return t(key, metric=metric_name(name[len(prefix) :]))
    return t(f"history.{name.replace(' ', '_')}")


def filtered_history(frame):
    row = st.container(horizontal=True)  # side by side on a desktop, wrapping on a phone
    for name in FILTERS:
        chosen = row.multiselect(
            t(f"history.{name}"),
            sorted(frame[name].unique()),
            placeholder=t("history.all"),
            format_func=FILTER_SHOWN.get(name, str),
            width=220,
        )
        if chosen:
            frame = frame[frame[name].isin(chosen)]
    labels = {name: st.column_config.Column(t(f"history.{name.replace(' ', '_')}")) for name in frame.columns}
    labels["created"] = st.column_config.DatetimeColumn(t("history.created"), format="YYYY-MM-DD HH:mm")
    shown = frame.assign(**{name: frame[name].map(SHOWN[name]) for name in SHOWN})
    st.dataframe(shown, hide_index=True, width="stretch", column_config=labels)
    return frame


def compare(records: dict, ids: list[str]) -> None:
    st.subheader(t("history.compare"))
    completed = [run_id for run_id in ids if records[run_id].status == "completed"]
    # Compared by default: the completed runs of a group when the list shows one group, else the newest
    # completed runs of one task (a loss or an F1 means nothing across tasks).
    groups = {records[run_id].group_name for run_id in ids}
    task = records[completed[0]].task if completed else ""
    if len(groups) == 1 and "" not in groups:
        default = completed
    else:
        default = [run_id for run_id in completed if records[run_id].task == task][:3]
    chosen = st.multiselect(
        t("history.runs_to_compare"),
        ids,
        default=default,
        placeholder=t("history.choose_placeholder"),
        format_func=lambda i: f"{records[i].name} · {method_name(records[i].peft_method)} · {i[-4:]}",
    )
    if not chosen:
        st.caption(t("history.choose_runs"))
        return
    if len({records[run_id].task for run_id in chosen}) > 1:
        st.warning(t("history.mixed_tasks"), icon=":material/warning:")
    runs = [records[run_id] for run_id in chosen]
    # The session's folded view of each run (shared with the Live and Compare pages), fed only new events.
    views = folded_views(st.session_state.setdefault("run-folders", {}), store, chosen)
    smoothing = st.slider(t("live.smoothing"), 0.0, 0.95, 0.6, 0.05, width=320)
    metric = primary_metric_name(runs[0].task)
    # Legend text: plotly reads a few HTML tags (links among them), so a name's are escaped.
    named = {html.escape(f"{run.name} ({run.id[-4:]})"): views[run.id] for run in runs}
    loss, scores = charts.compare_curves(named, smoothing, metric)
    left, right = st.columns(2)
    left.plotly_chart(loss, width="stretch", key="compare-loss")
    right.plotly_chart(scores, width="stretch", key="compare-metric")
    # astype: pandas 3's arrow strings refuse a row set in place
    table = comparison_frame(runs, views, duration_units()).astype(object)
    for name, show in SHOWN.items():
        table.loc[name] = table.loc[name].map(show)
    # st.table renders Markdown: the runs' names, datasets and models are shown as typed.
    for name in ("dataset", "model"):
        table.loc[name] = table.loc[name].map(plain_text)
    st.table(table.rename(columns=plain_text, index=comparison_row_name))


def export_onnx_button(row, run_id: str, model_dir, output) -> None:
    """Export to ONNX (adapters merged, checked with onnxruntime) into the run's folder, then offer it."""
    folder = output / "onnx"
    if row.button(t("history.export_onnx"), icon=":material/output:", help=t("history.export_onnx_help")):
        wait_for_training_stack()
        from lab.publish.export import export_onnx, test_texts

        with user_errors(), st.spinner(t("history.exporting")):
            result = export_onnx(model_dir, folder, test_texts(store.load_config(run_id)))
            st.session_state[f"onnx-{run_id}"] = result.max_abs_difference
    if f"onnx-{run_id}" in st.session_state and (folder / "model.onnx").is_file():
        st.success(
            t("history.exported", folder=str(folder), difference=f"{st.session_state[f'onnx-{run_id}']:.1e}"),
            icon=":material/check:",
        )
        st.download_button(
            t("history.onnx_zip"),
            functools.partial(zip_folder, folder),
            f"{run_id}-onnx.zip",
            mime="application/zip",
            icon=":material/download:",
            on_click="ignore",
        )


def push_to_hub(model_dir) -> None:
    """The model or adapter folder, model card included, to a hub repository (token: HF_TOKEN or the login)."""
    st.caption(t("history.push_help"))
    repo_id = st.text_input(t("history.repo_id"), placeholder="my-name/imdb-lora")
    private = st.checkbox(t("history.private"), value=True)
    if st.button(t("history.push_now"), type="primary", disabled=not repo_id.strip(), key="push-confirm"):
        from lab.publish.push import push_folder

        with user_errors(), st.spinner(t("history.pushing")):
            url = push_folder(model_dir, repo_id.strip(), private=private)
            st.success(t("history.pushed", url=url), icon=":material/check:")


def manage(records: dict, ids: list[str]) -> None:
    st.subheader(t("history.download_or_delete"))
    run_id = st.selectbox(
        t("live.run"), ids, format_func=lambda i: f"{records[i].name} · {status_name(records[i].status)} · {i}"
    )
    # A CLI run trained with --output keeps its model and report there: the store records where.
    run, folder, output = records[run_id], store.run_dir(run_id), store.output_dir(records[run_id])
    row = st.container(horizontal=True)
    if row.button(t("history.open"), icon=":material/monitoring:"):
        open_run(run_id)
    config_file, report_file, model_dir = folder / "config.yaml", output / "report.json", output / "model"
    if config_file.is_file():
        row.download_button(
            "config.yaml",
            config_file.read_text(encoding="utf-8"),
            f"{run_id}-config.yaml",
            icon=":material/download:",
            on_click="ignore",
        )
    if report_file.is_file():
        row.download_button(
            "report.json",
            report_file.read_text(encoding="utf-8"),
            f"{run_id}-report.json",
            icon=":material/download:",
            on_click="ignore",
        )
    run_handout_button(row, store, run_id)
    if model_dir.is_dir():
        what = "model" if run.peft_method in NO_ADAPTER_METHODS else "adapter"  # the file's name stays English
        # A callable is only run when clicked: zipping a model on every rerun would be slow.
        # No rerun on a click ("ignore"): a rerun re-registers every deferred file, and a second download
        # clicked before it ends would find its file gone ("Deferred file ... not found").
        row.download_button(
            t(f"history.{what}_zip"),
            functools.partial(zip_folder, model_dir),
            f"{run_id}-{what}.zip",
            mime="application/zip",
            icon=":material/download:",
            on_click="ignore",
        )
    viewer = store.viewer
    if viewer is not None and not viewer.may_change(run):
        return  # a run a teacher shared: to look at and download, not to push or delete
    if model_dir.is_dir() and run.status == "completed":
        export_onnx_button(row, run_id, model_dir, output)
        if viewer is None or viewer.is_teacher:  # a push uses the server's hub token: the owner's, not a student's
            with row.popover(t("history.push"), icon=":material/cloud_upload:"):
                push_to_hub(model_dir)
    if viewer is not None and viewer.is_teacher:
        shared = row.toggle(t("history.share"), value=run.shared, key=f"share-{run_id}", help=t("history.share_help"))
        if shared != run.shared:
            store.share_run(run_id, shared)
            st.rerun()
    with row.popover(t("history.delete"), icon=":material/delete:"):
        st.markdown(t("history.delete_question", name=plain_text(run.name)))
        if st.button(t("history.delete_for_good"), type="primary", key="delete-confirm"):
            with user_errors():
                store.delete_run(run_id)
                st.toast(t("history.deleted", run=run_id))
                st.rerun()


with user_errors():
    st.caption(t("history.tensorboard"))
    st.code(f"tensorboard --logdir {store.runs_dir}", language="bash")
    records = {run.id: run for run in store.list_runs()}
    if not records:
        st.info(t("live.no_runs"))
    else:
        frame = filtered_history(runs_frame(list(records.values()), duration_units(), metric_name))
        ids = frame["run"].tolist()
        if ids:
            compare(records, ids)
            manage(records, ids)
        else:
            st.caption(t("history.no_match"))
