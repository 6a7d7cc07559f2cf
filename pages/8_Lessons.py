"""Lessons: experiments that each answer one question, with runs that vary one setting and a conclusion
computed from their results as they finish.

A lesson's runs queue through the job runner like any other and form a group in the run store
(lab.groups.lessons), so the lesson survives a reload and its runs show on the Runs page too.
"""

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lab.config import TASKS
from lab.data.builtin import BUILTINS
from lab.errors import LabError
from lab.groups.conclusions import FINDINGS, Finding
from lab.groups.lessons import (
    GROUP_PREFIX,
    LESSONS,
    Lesson,
    expected_seconds,
    group_name,
    lesson_base,
    lesson_conclusion,
    lesson_configs,
    lesson_of_group,
    lesson_runs,
)
from lab.groups.parallel import cancel_group
from lab.runs.records import slugify
from lab.training.metrics import primary_metric_name
from lab.views.formatting import format_share, smooth, thinned
from lab.views.handout import HandoutSection, handout_html, repeat_sections
from lab.views.lesson_view import finding_in_words, length_example, lesson_table, metric_by_value, run_views
from ui import charts
from ui.common import get_runner, get_store, page_setup, status_name, task_name, user_errors, wait_for_training_stack
from ui.i18n import duration, duration_units, language, t

page_setup("pages.lessons")
st.title(t("pages.lessons"))
st.caption(t("lessons.intro"))
store = get_store()
YOUR_DATA = ""  # the dataset choice that stands for the New run form's own file


def title(lesson: Lesson) -> str:
    return t(f"lessons.{lesson.name}.title")


def lesson_list() -> None:
    for lesson in LESSONS.values():
        st.markdown(
            f"**{title(lesson)}** (`{lesson.name}`): {t(f'lessons.{lesson.name}.question')}  \n"
            + t("lessons.planned", time=duration(lesson.planned_seconds), setting=lesson.setting)
        )


@st.cache_data(show_spinner=False, max_entries=32)
def estimated_seconds(configs_yaml: tuple[str, ...]) -> float:
    from lab.config import RunConfig

    wait_for_training_stack()
    return expected_seconds([RunConfig.from_yaml(text) for text in configs_yaml])


# What the Data / New run page's own file brings with it; the lesson keeps its own subsets and budget.
FILE_FIELDS = (
    "train_file",
    "validation_file",
    "test_file",
    "text_column",
    "label_column",
    "tokens_column",
    "tags_column",
)


def chosen_data(task: str, base) -> dict[str, str]:
    """The data fields to set: a built-in of the task, or the file the Data / New run page holds."""
    names = [name for name, spec in BUILTINS.items() if spec.task == task]
    form = st.session_state.get("form") or {}
    own = form.get("data") or {}
    own_file = own.get("train_file") if form.get("task") == task else ""
    options = names + ([YOUR_DATA] if own_file else [])
    dataset = st.selectbox(
        t("field.data.dataset"),
        options,
        index=options.index(base.data.dataset) if base.data.dataset in options else 0,
        format_func=lambda n: BUILTINS[n].title if n else t("lessons.your_data", file=Path(own_file).name),
        key=f"lesson-dataset-{task}",
    )
    if dataset != YOUR_DATA:
        return {"dataset": dataset}
    return {"dataset": "", **{name: own[name] for name in FILE_FIELDS if own.get(name)}}


def launch_form() -> None:
    name = st.selectbox(
        t("lessons.choose"),
        list(LESSONS),
        index=None,
        format_func=lambda n: title(LESSONS[n]),
        placeholder=t("lessons.choose_placeholder"),
        key="lesson-name",
    )
    if name is None:
        return
    lesson = LESSONS[name]
    st.markdown(t(f"lessons.{name}.question"))
    task = st.radio(
        t("form.task"), TASKS, index=TASKS.index(lesson.task), format_func=task_name, horizontal=True, key="lesson-task"
    )
    base = lesson_base(lesson, task)
    left, right = st.columns(2)
    with left:
        data = chosen_data(task, base)
    model = right.text_input(t("form.model_id"), base.model.name_or_path, key="lesson-model")
    config = base.with_overrides([f"model.name_or_path={model.strip()}"])
    for name, value in data.items():  # set, not parsed: a file's path is any text
        setattr(config.data, name, value)
    configs = lesson_configs(lesson, config)
    values = ", ".join(str(c.flat()[lesson.setting]) for c in configs)
    st.caption(t("lessons.values", setting=lesson.setting, values=values, count=len(configs)))
    with st.spinner(t("lessons.estimating")):
        seconds = estimated_seconds(tuple(c.to_yaml() for c in configs))
    st.caption(t("lessons.expected", time=duration(seconds)))
    if st.button(t("lessons.launch", count=len(configs)), type="primary", icon=":material/play_arrow:"):
        group = group_name(lesson, config)
        runner = get_runner()
        for run_config in configs:
            runner.submit(run_config, group=group)
        st.query_params["group"] = group
        st.toast(t("lessons.queued", count=len(configs)))
        st.rerun()


def metric_word(metric: str) -> str:
    return t(f"lessons.metric.{metric}")


def in_language(finding: Finding) -> str:
    values = dict(finding.values)
    if "metric" in values:
        values["metric"] = metric_word(values["metric"])
    templates = {code: t(f"lessons.finding.{code}") for code in FINDINGS}
    return finding_in_words(Finding(finding.code, values), templates, duration_units())


def metric_chart(lesson: Lesson, runs, metric: str) -> go.Figure:
    """The test metric against the varied value (a log axis for rates, sizes and ranks)."""
    points = metric_by_value(runs)
    figure = go.Figure()
    figure.add_scatter(
        x=points["value"].astype(str) if lesson.setting in CATEGORICAL else points["value"],
        y=points["metric"],
        mode="lines+markers",
        name=metric_word(metric),
    )
    if lesson.setting in LOG_AXIS:
        figure.update_xaxes(type="log")
    elif lesson.setting in CATEGORICAL:
        figure.update_xaxes(type="category")  # "0" and "2" are names here, not a scale
    figure.update_layout(
        title=t("lessons.metric_by_value", metric=metric_word(metric), setting=lesson.setting),
        xaxis_title=lesson.setting,
        yaxis_title=metric_word(metric),
        height=360,
    )
    return figure


CATEGORICAL = ("peft.method", "train.seed", "train.early_stopping_patience")
LOG_AXIS = ("train.learning_rate", "data.train_subset", "peft.r")


def loss_chart(views, colours: dict[str, str]) -> go.Figure:
    """Training loss (smoothed, solid) and validation loss (dashed) of every run: where they part ways."""
    figure = go.Figure()
    for label, view in views.items():
        colour = colours[label]
        steps = view.steps
        if not steps.empty:
            figure.add_scatter(
                x=thinned(steps["step"].tolist()),
                y=thinned(smooth(steps["loss"].tolist(), 0.6)),
                mode="lines",
                name=t("lessons.training_loss", value=label),
                line={"color": colour},
            )
        evaluations = view.evaluations
        if "loss" in evaluations and not evaluations.empty:
            figure.add_scatter(
                x=evaluations["step"].tolist(),
                y=evaluations["loss"].tolist(),
                mode="lines+markers",
                name=t("lessons.validation_loss", value=label),
                line={"color": colour, "dash": "dash"},
            )
    figure.update_layout(
        title=t("lessons.losses"), xaxis_title=t("chart.step"), yaxis_title=t("chart.loss"), height=400
    )
    return figure


def lesson_group(group: str, polling: bool) -> None:
    lesson = lesson_of_group(group)
    runs = lesson_runs(store, lesson, group) if lesson else []
    if lesson is None or not runs:
        st.info(t("lessons.empty"))
        return
    metric = primary_metric_name(runs[0].record.task)
    st.markdown(f"#### {title(lesson)}\n{t(f'lessons.{lesson.name}.question')}")
    done = sum(not run.record.is_active for run in runs)
    st.progress(done / len(runs), text=t("lessons.progress", done=done, total=len(runs)))
    st.markdown(f"**{t('lessons.conclusion')}**")
    st.markdown("\n".join(f"- {in_language(finding)}" for finding in lesson_conclusion(lesson, runs)))
    table = lesson_table(runs)
    shown = table.assign(
        value=table["value"].astype(str),
        status=table["status"].map(status_name),
        **{
            "train seconds": table["train seconds"].map(duration),
            "trainable share": table["trainable share"].map(format_share),
        },
    )
    st.dataframe(
        shown.drop(columns=["run"]),
        hide_index=True,
        width="stretch",
        column_config={
            "value": st.column_config.TextColumn(lesson.setting),
            "status": st.column_config.TextColumn(t("history.status")),
            "test": st.column_config.NumberColumn(t("history.test", metric=metric_word(metric)), format="%.3f"),
            "best validation": st.column_config.NumberColumn(
                t("history.best_validation", metric=metric_word(metric)), format="%.3f"
            ),
            "trainable": st.column_config.NumberColumn(t("history.trainable_parameters"), format="localized"),
            "trainable share": st.column_config.TextColumn(t("history.trainable_share")),
            "train seconds": st.column_config.TextColumn(t("history.wall_time")),
        },
    )
    by_value, losses, scores = lesson_figures(lesson, runs, metric)
    left, right = st.columns(2)
    left.plotly_chart(by_value, width="stretch", key="lesson-metric")
    right.plotly_chart(losses, width="stretch", key="lesson-losses")
    st.plotly_chart(scores, width="stretch", key="lesson-validation")
    if lesson.setting == "train.max_length" and runs[0].record.task == "ner":
        sentence_lengths(store.load_config(runs[0].record.id).to_yaml(), lesson_lengths(runs))
    cancel_remaining(runs)
    if polling and not any(run.record.is_active for run in runs):
        st.rerun()  # the whole page, once: it stops polling


def lesson_figures(lesson: Lesson, runs, metric: str) -> tuple[go.Figure, go.Figure, go.Figure]:
    """The metric against the value, the training and validation losses, the validation metric by step."""
    views = run_views(store, runs)
    colours = charts.series_colours(list(views))
    _, scores = charts.compare_curves(views, 0.6, metric, colours)
    return metric_chart(lesson, runs, metric), loss_chart(views, colours), scores


def lesson_lengths(runs) -> tuple[int, ...]:
    return tuple(int(run.outcome.value) for run in runs)


def handout(group: str) -> None:
    """Prepare the lesson as one HTML file (charts, tables, conclusion, config, script), then offer it."""
    if st.button(t("lessons.handout"), icon=":material/description:", help=t("lessons.handout_help")):
        st.session_state["lesson-handout"] = (group, language(), handout_file(group))
    prepared = st.session_state.get("lesson-handout")
    if prepared and prepared[:2] == (group, language()):
        st.download_button(
            t("lessons.handout_download"),
            prepared[2],
            file_name=f"{slugify(group)}.html",
            mime="text/html",
            icon=":material/download:",
        )


def handout_file(group: str) -> str:
    lesson = lesson_of_group(group)
    runs = lesson_runs(store, lesson, group) if lesson else []
    if lesson is None or not runs:
        raise LabError(f"The lesson {group!r} has no runs.")
    metric = primary_metric_name(runs[0].record.task)
    config = store.load_config(runs[0].record.id)
    table = lesson_table(runs)
    shown = pd.DataFrame(
        {
            lesson.setting: table["value"].astype(str),
            t("history.status"): table["status"].map(status_name),
            t("history.test", metric=metric_word(metric)): table["test"].map(
                lambda x: "–" if pd.isna(x) else f"{x:.3f}"
            ),
            t("history.best_validation", metric=metric_word(metric)): table["best validation"].map(
                lambda x: "–" if pd.isna(x) else f"{x:.3f}"
            ),
            t("history.trainable_parameters"): table["trainable"].map(lambda x: "–" if pd.isna(x) else f"{x:,.0f}"),
            t("history.trainable_share"): table["trainable share"].map(format_share),
            t("history.wall_time"): table["train seconds"].map(duration),
        }
    )
    sections = [
        HandoutSection(t("lessons.conclusion"), bullets=[in_language(f) for f in lesson_conclusion(lesson, runs)]),
        HandoutSection(t("lessons.handout_runs"), table=shown, figures=lesson_figures(lesson, runs, metric)),
    ]
    if lesson.setting == "train.max_length" and runs[0].record.task == "ner":
        kept = length_table(config.to_yaml(), lesson_lengths(runs)).rename(columns=str)
        sections.append(HandoutSection(t("lessons.alignment"), paragraphs=[t("lessons.alignment_caption")], table=kept))
    values = ",".join(str(run.outcome.value) for run in runs)
    command = f"python -m lab lesson run {lesson.name} lesson.yaml --values {values}"
    sections += repeat_sections(
        config,
        t("lessons.handout_config"),
        t("lessons.handout_script"),
        config_note=t("lessons.handout_config_note"),
        command=command,
        command_heading=t("lessons.handout_command"),
        command_note=t("lessons.handout_command_note"),
    )
    subtitle = f"{t(f'lessons.{lesson.name}.question')} · {config.dataset_name} · {config.model.name_or_path}"
    return handout_html(title(lesson), language(), sections, subtitle=subtitle)


@st.cache_data(show_spinner=False, max_entries=8)
def length_table(config_yaml: str, lengths: tuple[int, ...]):
    from lab.config import RunConfig

    wait_for_training_stack()
    return length_example(RunConfig.from_yaml(config_yaml), lengths)


def sentence_lengths(config_yaml: str, lengths: tuple[int, ...]) -> None:
    """One test sentence at each max_length: which words keep a piece, and which are cut (tagged O)."""
    st.markdown(f"**{t('lessons.alignment')}**")
    st.caption(t("lessons.alignment_caption"))
    table = length_table(config_yaml, lengths)
    st.dataframe(
        table.rename(columns=str),
        hide_index=True,
        column_config={
            "word": st.column_config.TextColumn(t("data.column.word")),
            "tag": st.column_config.TextColumn(t("data.column.label")),
            **{str(length): st.column_config.CheckboxColumn(t("lessons.kept_at", length=length)) for length in lengths},
        },
    )


def cancel_remaining(runs) -> None:
    active = [run.record for run in runs if run.record.is_active]
    if active and st.button(t("compare.cancel", count=len(active)), icon=":material/stop:"):
        with user_errors():
            cancel_group(get_runner(), get_store(), active[0].group_name)
            st.rerun()


with user_errors():
    groups = [name for name in store.groups() if name.startswith(GROUP_PREFIX)]
    with st.expander(t("lessons.all"), expanded=not groups, icon=":material/school:"):
        lesson_list()
    with st.expander(t("lessons.new"), expanded=not groups, icon=":material/add:"):
        launch_form()
    if groups:
        wanted = st.query_params.get("group")
        group = st.selectbox(t("lessons.group"), groups, index=groups.index(wanted) if wanted in groups else 0)
        st.query_params["group"] = group
        active = any(run.is_active for run in store.list_runs(group=group))
        # Redrawn every few seconds while a run of the lesson is queued or running.
        st.fragment(lesson_group, run_every=3 if active else None)(group, active)
        handout(group)
    else:
        st.caption(t("lessons.none_yet"))
