"""Sweeps: an Optuna search started from the New run form's values, with ranges on chosen fields; the trials
table, the best trial and Optuna's own figures. Every trial is a run (lab.groups.sweep), queued through the
job runner, so it shows on the Live run and Runs pages too.
"""

import contextlib

import streamlit as st

from lab.config import RunConfig, default_config
from lab.errors import LabError
from lab.groups.sweep import (
    PRUNERS,
    SweepSetup,
    best_trial,
    group_of,
    load_study,
    parse_params,
    start_in_background,
    sweep_names,
)
from lab.training.metrics import primary_metric_name
from lab.views.sweep_view import trials_frame
from ui import charts
from ui.common import get_runner, get_store, method_name, page_setup, status_name, task_name, user_errors
from ui.estimates import group_estimate
from ui.i18n import t

# The fields a sweep offers, with the range it starts from (the --param grammar).
SEARCHABLE = {
    "train.learning_rate": "log:1e-5:1e-2",
    "train.head_learning_rate": "log:1e-4:1e-1",
    "peft.r": "choice:4,8,16",
    "peft.alpha": "choice:8,16,32",
    "peft.lora_dropout": "float:0:0.3",
    "train.warmup_ratio": "float:0:0.2",
    "train.weight_decay": "log:1e-4:1e-1",
    "train.train_batch_size": "choice:8,16,32",
    "peft.num_virtual_tokens": "int:5:40",
}

page_setup("pages.sweeps")
st.title(t("pages.sweeps"))
st.caption(t("sweeps.intro"))
store = get_store()


def new_sweep() -> None:
    form = st.session_state.get("form")
    base = RunConfig.from_dict(form) if form else default_config("classification")
    st.caption(
        t(
            "sweeps.base",
            task=task_name(base.task),
            dataset=base.dataset_name,
            model=base.model.name_or_path,
            method=method_name(base.peft.method),
        )
    )
    fields = st.multiselect(t("sweeps.fields"), list(SEARCHABLE), default=["train.learning_rate"])
    ranges = [f"{name}={st.text_input(name, SEARCHABLE[name], key=f'sweep-range-{name}')}" for name in fields]
    left, middle, right = st.columns(3)
    trials = left.number_input(t("sweeps.trials"), min_value=1, max_value=200, value=8)
    metric = middle.text_input(t("sweeps.metric"), primary_metric_name(base.task))
    pruner = right.selectbox(t("sweeps.pruner"), PRUNERS)
    name = st.text_input(t("sweeps.name"), f"{base.task}-{base.dataset_name}-{base.peft.method}")
    # Each trial at the base's budget (a pruned trial stops sooner): an upper bound before the sweep starts.
    with contextlib.suppress(LabError):
        group_estimate([base.validate()] * int(trials), get_runner().slot_count)
    if st.button(t("sweeps.start", trials=trials), type="primary", icon=":material/play_arrow:", disabled=not fields):
        with user_errors():
            setup = SweepSetup(
                name=name.strip(),
                base=base.validate(),
                params=parse_params(ranges, base),
                trials=int(trials),
                metric=metric.strip(),
                pruner=pruner,
                seed=base.train.seed,
            )
            start_in_background(get_runner(), store, setup)
            st.query_params["sweep"] = setup.name
            st.toast(t("sweeps.started", name=setup.name))
            st.rerun()


def show(name: str) -> None:
    study, setup = load_study(store, name)
    frame = trials_frame(study, store)
    done = int(frame["state"].isin(["complete", "pruned"]).sum()) if not frame.empty else 0
    st.progress(
        min(done / setup.trials, 1.0), text=t("sweeps.progress", done=done, total=setup.trials, metric=setup.metric)
    )
    best = best_trial(study)
    if best is not None:
        st.success(
            t(
                "sweeps.best",
                number=best.number,
                metric=setup.metric,
                value=f"{best.value:.4f}",
                params=", ".join(
                    f"{key} = {value:.4g}" if isinstance(value, float) else f"{key} = {value}"
                    for key, value in best.params.items()
                ),
            ),
            icon=":material/trophy:",
        )
    if not frame.empty:
        shown = frame.assign(
            state=frame["state"].map(lambda state: t(f"sweeps.state.{state}")),
            **{"run status": frame["run status"].map(status_name)},
        )
        columns = {
            name: st.column_config.Column(t(f"sweeps.column.{name.replace(' ', '_')}"))
            for name in ("trial", "state", "value", "run", "run status")
        }
        # Rates span decades: three significant digits, not four decimals that round 2.3e-4 to 0.0002.
        columns.update(
            {
                param.key: st.column_config.NumberColumn(param.key, format="%.3g")
                for param in setup.params
                if param.key in frame and frame[param.key].dtype.kind == "f"
            }
        )
        st.dataframe(shown, hide_index=True, width="stretch", column_config=columns)
    completed = frame["state"].eq("complete").sum() if not frame.empty else 0
    if completed >= 1:
        history, parallel = charts.sweep_figures(study, setup.metric)
        left, right = st.columns(2)
        left.plotly_chart(history, width="stretch", key="sweep-history")
        right.plotly_chart(parallel, width="stretch", key="sweep-parallel")
    if completed >= 2 and len(setup.params) >= 1:
        try:
            st.plotly_chart(charts.sweep_importances(study, setup.metric), width="stretch", key="sweep-importance")
        except (RuntimeError, ValueError):  # Optuna needs trials that differ in their parameters
            st.caption(t("sweeps.no_importance"))
    st.caption(t("sweeps.cli", group=group_of(name), name=name))


def visible_sweeps() -> list[str]:
    """The sweeps this person may see: with accounts, a student's are those with a trial of theirs."""
    names = sweep_names(store)
    if store.viewer is None or store.viewer.is_teacher:
        return names
    groups = set(store.groups())
    return [name for name in names if group_of(name) in groups]


with user_errors():
    with st.expander(t("sweeps.new"), icon=":material/add:", expanded=not visible_sweeps()):
        new_sweep()
    names = visible_sweeps()
    if names:
        wanted = st.query_params.get("sweep")
        name = st.selectbox(t("sweeps.sweep"), names, index=names.index(wanted) if wanted in names else 0)
        st.query_params["sweep"] = name
        from optuna.trial import TrialState

        study, _ = load_study(store, name)
        # A trial is RUNNING from its ask to its tell: while one is, the table redraws itself.
        running = bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        st.fragment(show, run_every=3 if running else None)(name)
    else:
        st.caption(t("sweeps.none_yet"))
