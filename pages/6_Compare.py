"""Compare methods: one run per PEFT method on the same data, model and budget, side by side as they finish.

The runs queue through the job runner like any other and form a group in the run store
(lab.groups.compare), so the comparison survives a reload and its runs show on the Runs page too.
"""

import contextlib

import streamlit as st

from lab.config import PEFT_METHODS, TASKS
from lab.data.builtin import BUILTINS
from lab.errors import LabError
from lab.groups.compare import GROUP_PREFIX, by_method, comparison_base, method_configs, plan_comparison
from lab.groups.parallel import cancel_group
from lab.training.metrics import primary_metric_name
from lab.views.compare_view import comparison_rows, finished_count, per_label_f1
from lab.views.formatting import LOSS_SMOOTHING, format_share
from lab.views.history import folded_views
from ui import charts
from ui.common import get_runner, get_store, method_name, page_setup, status_name, task_name, user_errors
from ui.estimates import group_estimate
from ui.handout import comparison_handout_button
from ui.i18n import duration, metric_name, t

page_setup("pages.compare")
st.title(t("pages.compare"))
st.caption(t("compare.intro"))
store = get_store()


def launch_form() -> None:
    task = st.radio(t("form.task"), TASKS, format_func=task_name, horizontal=True, key="compare-task")
    base = comparison_base(task)
    names = [name for name, spec in BUILTINS.items() if spec.task == task]
    left, middle, right = st.columns(3)
    dataset = left.selectbox(
        t("field.data.dataset"),
        names,
        index=names.index(base.data.dataset),
        format_func=lambda n: BUILTINS[n].title,
        key=f"compare-dataset-{task}",
    )
    model = middle.text_input(t("form.model_id"), base.model.name_or_path, key="compare-model")
    train_subset = right.number_input(
        t("field.data.train_subset"), min_value=0, value=base.data.train_subset, step=100, key=f"compare-subset-{task}"
    )
    methods = st.multiselect(
        t("compare.methods"), PEFT_METHODS, default=list(PEFT_METHODS), format_func=method_name, key="compare-methods"
    )
    st.caption(
        t("compare.budget", epochs=f"{base.train.epochs:g}", max_length=base.train.max_length, count=len(methods))
    )
    overrides = [f"data.dataset={dataset}", f"model.name_or_path={model.strip()}", f"data.train_subset={train_subset}"]
    with contextlib.suppress(LabError):  # a setting the launch refuses: the button says why
        group_estimate(method_configs(base.with_overrides(overrides), methods), get_runner().slot_count)
    if st.button(
        t("compare.launch", count=len(methods)), type="primary", icon=":material/play_arrow:", disabled=not methods
    ):
        with user_errors():
            config = base.with_overrides(overrides)
            runner = get_runner()
            comparison = plan_comparison(config, methods)
            comparison.start(lambda method_config, group: runner.submit(method_config, group=group))
            st.query_params["group"] = comparison.group
            st.toast(t("compare.queued", count=len(methods)))
            st.rerun()


def cancel_remaining(records) -> None:
    active = [run for run in records if run.is_active]
    if active and st.button(t("compare.cancel", count=len(active)), icon=":material/stop:"):
        with user_errors():
            cancel_group(get_runner(), get_store(), active[0].group_name)
            st.rerun()


def comparison(group: str, polling: bool) -> None:
    records = store.list_runs(group=group)
    if not records:
        st.info(t("compare.empty"))
        return
    task = records[0].task
    metric = primary_metric_name(task)
    st.progress(
        finished_count(records) / len(records),
        text=t("compare.progress", done=finished_count(records), total=len(records)),
    )
    # The session's folded view of each run, fed only what was written since the last refresh.
    views = folded_views(st.session_state.setdefault("run-folders", {}), store, [run.id for run in records])
    rows = comparison_rows(records, views)
    rows = rows.assign(method=rows["method"].map(method_name))
    shown = rows.assign(
        status=rows["status"].map(status_name),
        **{
            "train seconds": rows["train seconds"].map(duration),
            "trainable share": rows["trainable share"].map(format_share),
        },
    )
    st.dataframe(
        shown.drop(columns=["run"]),
        hide_index=True,
        width="stretch",
        column_config={
            "method": st.column_config.TextColumn(t("history.method")),
            "status": st.column_config.TextColumn(t("history.status")),
            "test": st.column_config.NumberColumn(t("history.test", metric=metric_name(metric)), format="%.3f"),
            "best validation": st.column_config.NumberColumn(
                t("history.best_validation", metric=metric_name(metric)), format="%.3f"
            ),
            "trainable": st.column_config.NumberColumn(t("history.trainable_parameters"), format="localized"),
            "trainable share": st.column_config.TextColumn(t("history.trainable_share")),
            "train seconds": st.column_config.TextColumn(t("history.wall_time")),
            "peak memory MB": st.column_config.NumberColumn(t("history.peak_memory"), format="%.0f MB"),
        },
    )
    named = {method_name(run.peft_method): views[run.id] for run in by_method(records)}  # the table's order
    colours = charts.series_colours(list(named))  # one colour per method on every chart below
    left, right = st.columns(2)
    left.plotly_chart(charts.method_tradeoff(rows, metric, colours), width="stretch", key="compare-tradeoff")
    labels = per_label_f1(records)
    if not labels.empty:
        right.plotly_chart(
            charts.per_label_by_method(labels.rename(columns=method_name), colours),
            width="stretch",
            key="compare-labels",
        )
    loss, scores = charts.compare_curves(named, LOSS_SMOOTHING, metric, colours)
    left, right = st.columns(2)
    left.plotly_chart(scores, width="stretch", key="compare-validation")
    right.plotly_chart(loss, width="stretch", key="compare-loss")
    cancel_remaining(records)
    if polling and not any(run.is_active for run in records):
        st.rerun()  # the whole page, once: it stops polling


with user_errors():
    groups = [name for name in store.groups() if name.startswith(GROUP_PREFIX)]  # not the sweeps
    with st.expander(t("compare.new"), expanded=not groups, icon=":material/add:"):
        launch_form()
    if groups:
        wanted = st.query_params.get("group")
        group = st.selectbox(t("compare.group"), groups, index=groups.index(wanted) if wanted in groups else 0)
        st.query_params["group"] = group
        active = any(run.is_active for run in store.list_runs(group=group))
        # Redrawn every few seconds while a run of the group is queued or running.
        st.fragment(comparison, run_every=3 if active else None)(group, active)
        comparison_handout_button(st, store, group)
    else:
        st.caption(t("compare.none_yet"))
