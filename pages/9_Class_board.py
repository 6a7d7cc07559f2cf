"""Class board: a teacher publishes an assignment (a config, what students may change, a budget);
students open it, change what is allowed and launch; the board ranks every student's run on it by the
held-out metric and plots the class's results against a setting, live (lab.accounts.assignments,
lab.views.class_board)."""

import plotly.express as px
import streamlit as st

from lab.accounts.assignments import STUDENT_SETTINGS, Assignment, assignments, close, publish, student_config
from lab.config import default_config
from lab.model.defaults import DEFAULT_LEARNING_RATES
from lab.training.metrics import primary_metric_name
from lab.views.class_board import board_frame
from lab.views.formatting import plain_text
from ui.common import get_runner, get_store, method_name, page_setup, status_name, user_errors
from ui.i18n import metric_name, t
from ui.lr_find import learning_rate_field
from ui.widgets import config_widget, field_label

SUGGESTED = ["train.learning_rate", "peft.method", "peft.r"]

page_setup("pages.class_board")
store = get_store()
viewer = store.viewer
large = st.toggle(t("board.large"), key="board-large", help=t("board.large_help"))
if large:  # the main area only, tables drawn as HTML (st.dataframe's canvas ignores CSS)
    st.html(
        "<style>[data-testid=stMain] :is(p, li, label, input, [data-baseweb=select] div)"
        " {font-size: 1.6rem !important; line-height: 1.4}"
        " [data-testid=stMain] :is(td, th) {font-size: 1.35rem !important; padding: 0.3rem 0.5rem !important}</style>"
    )
st.title(t("pages.class_board"))


def publish_form() -> None:
    name = st.text_input(t("board.name"), key="board-new-name")
    own = store.list_runs(limit=100)
    source = st.selectbox(
        t("board.from_run"),
        [""] + [run.id for run in own],
        format_func=lambda run_id: run_id or t("board.default_config"),
        key="board-new-source",
    )
    config = store.load_config(source) if source else default_config("classification")
    keys = [key for key in config.flat() if key in STUDENT_SETTINGS]
    allowed = st.multiselect(
        t("board.allowed"), keys, default=[key for key in SUGGESTED if key in keys], key="board-new-allowed"
    )
    budget = st.number_input(t("board.budget"), min_value=0, value=200, step=50, key="board-new-budget")
    if st.button(t("board.publish_now"), type="primary", disabled=not name.strip(), key="board-publish"):
        with user_errors():
            published = publish(
                store.runs_dir,
                Assignment(name, config, allowed, int(budget), teacher=viewer.name if viewer else ""),
            )
            st.query_params["assignment"] = published.name
            st.toast(t("board.published", name=published.name))


def setting_label(key: str) -> str:
    """A config key (`train.learning_rate`) as the form names it, in the page's language (the key itself for a
    setting no form names, allowed by an assignment published before students' settings were fixed)."""
    section, _, name = key.rpartition(".")
    return field_label(section, name)


def launch_form(assignment: Assignment) -> None:
    base = assignment.config.flat()
    changes = {}
    for key in assignment.allowed:
        section, _, name = key.rpartition(".")
        widget_key = f"board-set-{assignment.name}-{key}"
        if key == "train.learning_rate":  # empty: the method's own default; or auto: a range test finds it
            method = assignment.config.peft.method
            rate = DEFAULT_LEARNING_RATES[assignment.config.task][method]
            placeholder = t("form.default_rate_for", rate=f"{rate:g}", method=method_name(method))
            value = learning_rate_field(base[key], widget_key, placeholder=placeholder)
        else:
            options: dict = {"format_func": method_name} if key == "peft.method" else {}
            value = config_widget(section, name, base[key], key=widget_key, **options)
        if value != base[key]:
            changes[key] = ",".join(value) if isinstance(value, list) else "" if value is None else str(value)
    if st.button(t("board.launch"), type="primary", icon=":material/play_arrow:", key="board-launch"):
        with user_errors():
            config = student_config(assignment, changes, viewer.name if viewer else "teacher")
            run_id = get_runner().submit(config, group=assignment.group)
            st.toast(t("board.launched", run=run_id))


def board(assignment: Assignment) -> None:
    frame = board_frame(store, assignment)
    metric = primary_metric_name(assignment.config.task)
    if frame.empty:
        st.caption(t("board.no_runs"))
        return
    settings = [key for key in assignment.allowed if key != "peft.method"]  # the method has its own column
    labels = {
        "student": t("board.student"),
        "status": t("history.status"),
        "method": t("history.method"),
        **{key: setting_label(key) for key in settings},
        metric: metric_name(metric),
    }
    shown = frame.drop(columns=["run", "peft.method"], errors="ignore")
    shown = shown.assign(status=frame["status"].map(status_name), method=frame["method"].map(method_name))
    if large:
        st.table(shown.rename(columns=labels).rename_axis("#").reset_index())
    else:
        st.dataframe(shown, hide_index=False, width="stretch", column_config=labels)
    finished = frame.dropna(subset=[metric]).assign(method=frame["method"].map(method_name))
    if not finished.empty:
        choices = ["method", *settings]
        x = st.selectbox(
            t("board.against"),
            choices,
            index=min(1, len(choices) - 1),
            format_func=lambda key: labels[key],
            key="board-x",
        )
        figure = px.scatter(
            finished, x=x, y=metric, color="method", hover_data=["student"], title=t("board.plot"), labels=labels
        )
        figure.update_traces(marker_size=16 if large else 10)
        if large:  # the legend above the plot, one tick per decade: large type needs the width
            figure.update_layout(font_size=22, height=620, legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"})
        if x == "train.learning_rate":
            figure.update_xaxes(type="log", dtick=1 if large else None, exponentformat="none")
        # Streamlit's chart theme sets its own small type: not on a projector
        st.plotly_chart(figure, width="stretch", key="board-plot", theme=None if large else "streamlit")


with user_errors():
    if viewer is None or viewer.is_teacher:
        with st.expander(t("board.publish"), icon=":material/assignment_add:"):
            publish_form()
    published = assignments(store.runs_dir)
    if not published:
        st.info(t("board.none"))
    else:
        names = [item.name for item in published]
        wanted = st.query_params.get("assignment")
        chosen = st.selectbox(t("board.assignment"), names, index=names.index(wanted) if wanted in names else 0)
        st.query_params["assignment"] = chosen
        assignment = published[names.index(chosen)]
        st.caption(
            plain_text(
                t(
                    "board.about",
                    dataset=assignment.config.dataset_name,
                    model=assignment.config.model.name_or_path,
                    budget=assignment.max_steps or "-",
                    allowed=", ".join(map(setting_label, assignment.allowed)) or "-",
                )
            )
        )
        if assignment.closed:
            st.caption(t("board.closed"))
        else:
            with st.expander(
                t("board.try"), icon=":material/tune:", expanded=viewer is not None and not viewer.is_teacher
            ):
                launch_form(assignment)
            if (viewer is None or viewer.is_teacher) and st.button(t("board.close"), key="board-close"):
                close(store.runs_dir, assignment.name)
                st.rerun()
        active = any(run.is_active for run in store.seen_by(None).list_runs(group=assignment.group))
        st.fragment(board, run_every=3 if active else None)(assignment)
