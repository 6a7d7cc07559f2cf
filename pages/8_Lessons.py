"""Lessons: experiments that each answer one question, with runs that vary one setting and a conclusion
computed from their results as they finish.

A lesson's runs queue through the job runner like any other and form a group in the run store
(lab.groups.lessons), so the lesson survives a reload and its runs show on the Runs page too.
"""

from pathlib import Path

import streamlit as st

from lab.config import TASKS
from lab.data.builtin import BUILTINS
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
from lab.views.formatting import format_share
from lab.views.handout import catalogue_words
from lab.views.lesson_handout import lesson_handout
from lab.views.lesson_view import findings_in_words, length_example, lesson_figures, lesson_table, run_views
from ui.common import get_runner, get_store, page_setup, status_name, task_name, user_errors, wait_for_training_stack
from ui.i18n import duration, language, metric_name, t

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
    words = catalogue_words(language())  # the page's catalogue, as the handout and the CLI read it
    findings = findings_in_words(lesson_conclusion(store, lesson, runs), words)
    st.markdown("\n".join(f"- {sentence}" for sentence in findings))
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
            "test": st.column_config.NumberColumn(t("history.test", metric=metric_name(metric)), format="%.3f"),
            "best validation": st.column_config.NumberColumn(
                t("history.best_validation", metric=metric_name(metric)), format="%.3f"
            ),
            "trainable": st.column_config.NumberColumn(t("history.trainable_parameters"), format="localized"),
            "trainable share": st.column_config.TextColumn(t("history.trainable_share")),
            "train seconds": st.column_config.TextColumn(t("history.wall_time")),
        },
    )
    by_value, losses, scores = lesson_figures(lesson, runs, run_views(store, runs), words)
    for figure in (by_value, losses, scores):  # a zoom survives the redraw while the lesson's runs train
        figure.update_layout(uirevision=group)
    left, right = st.columns(2)
    left.plotly_chart(by_value, width="stretch", key="lesson-metric")
    right.plotly_chart(losses, width="stretch", key="lesson-losses")
    st.plotly_chart(scores, width="stretch", key="lesson-validation")
    if lesson.setting == "train.max_length" and runs[0].record.task == "ner":
        sentence_lengths(store.load_config(runs[0].record.id).to_yaml(), lesson_lengths(runs))
    cancel_remaining(runs)
    if polling and not any(run.record.is_active for run in runs):
        st.rerun()  # the whole page, once: it stops polling


def lesson_lengths(runs) -> tuple[int, ...]:
    return tuple(int(run.outcome.value) for run in runs)


def handout(group: str) -> None:
    """Prepare the lesson as one HTML file (charts, tables, conclusion, config, script), then offer it."""
    if st.button(t("lessons.handout"), icon=":material/description:", help=t("lessons.handout_help")):
        wait_for_training_stack()  # the script's module imports transformers, which the warm-up may be importing
        st.session_state["lesson-handout"] = (group, language(), lesson_handout(store, group, language()))
    prepared = st.session_state.get("lesson-handout")
    if prepared and prepared[:2] == (group, language()):
        st.download_button(
            t("lessons.handout_download"),
            prepared[2],
            file_name=f"{slugify(group)}.html",
            mime="text/html",
            icon=":material/download:",
        )


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
