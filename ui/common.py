"""Streamlit glue the pages share: one run store and one job runner per server process, showing
user errors as messages, and links between pages.

The library (lab/) never imports streamlit; this package is the app's side of the seam. The job
runner lives in `st.cache_resource`, so every browser tab, reload and page talks to the same
runner, and training threads never touch `st.*` (they only write to the run store).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import streamlit as st

from lab.errors import LabError
from lab.runs.store import RunStore, default_runs_dir
from lab.views.data_view import for_the_page
from ui.auth import current_viewer, require_login
from ui.i18n import language_switch, message, t

HOME_PAGE = "app.py"
DATA_PAGE = "pages/1_Data.py"
NEW_RUN_PAGE = "pages/2_New_run.py"
LIVE_PAGE = "pages/3_Live_run.py"
RUNS_PAGE = "pages/4_Runs.py"
PLAYGROUND_PAGE = "pages/5_Playground.py"
COMPARE_PAGE = "pages/6_Compare.py"
SWEEPS_PAGE = "pages/7_Sweeps.py"
LESSONS_PAGE = "pages/8_Lessons.py"
CLASS_BOARD_PAGE = "pages/9_Class_board.py"

STATUS_COLOURS = {
    "queued": "gray",
    "running": "blue",
    "completed": "green",
    "failed": "red",
    "cancelled": "orange",
    "interrupted": "orange",
    "pruned": "violet",
}


@st.cache_resource(show_spinner=False)
def _store(runs_dir: str) -> RunStore:
    return RunStore(runs_dir)


@st.cache_resource(show_spinner=False)
def _runner(runs_dir: str):
    from lab.launch.runner import JobRunner  # imports torch lazily, on the first page that needs the runner

    return JobRunner(_store(runs_dir))


@st.cache_resource(show_spinner=False)
def _warm_up() -> threading.Thread:
    """Import the training stack (torch, transformers, peft: 10-30 s on a small CPU) in the background
    once per server, so the first launch does not wait for it."""

    def load() -> None:
        import lab.training.engine  # noqa: F401

    thread = threading.Thread(target=load, name="lab-warm-up", daemon=True)
    thread.start()
    return thread


def wait_for_training_stack() -> None:
    """Block until the warm-up import is done. Importing transformers from a page while the warm-up
    thread is half-way through it fails ("module 'transformers' has no attribute ..."): its lazy
    modules are not safe to import from two threads at once. `datasets` counts too: its hashing
    looks up `transformers.PreTrainedTokenizerBase` as soon as "transformers" is in sys.modules."""
    _warm_up().join()


def _runs_dir() -> str:
    # Keyed by folder, so a test (or a restart) pointing LAB_RUNS_DIR elsewhere gets its own store.
    return str(default_runs_dir().resolve())


def get_store() -> RunStore:
    """The run store as the logged-in person sees it (every run while accounts are off)."""
    return _store(_runs_dir()).seen_by(current_viewer())


def upload_owner() -> str:
    """Whose an upload made now is ('' while accounts are off)."""
    viewer = current_viewer()
    return viewer.name if viewer is not None else ""


def get_runner():
    """The process-wide lab.launch.runner.JobRunner, acting for the logged-in person (their runs, their
    quotas) when accounts are on."""
    from lab.launch.personal import PersonalRunner

    runner, viewer = _runner(_runs_dir()), current_viewer()
    return runner if viewer is None else PersonalRunner(runner, viewer)


# Each page and the catalogue key of its name.
NAVIGATION = (
    (HOME_PAGE, "pages.home", ":material/home:"),
    (DATA_PAGE, "pages.data", ":material/dataset:"),
    (NEW_RUN_PAGE, "pages.new_run", ":material/tune:"),
    (LIVE_PAGE, "pages.live_run", ":material/monitoring:"),
    (RUNS_PAGE, "pages.runs", ":material/table_rows:"),
    (COMPARE_PAGE, "pages.compare", ":material/compare:"),
    (SWEEPS_PAGE, "pages.sweeps", ":material/manage_search:"),
    (LESSONS_PAGE, "pages.lessons", ":material/school:"),
    (CLASS_BOARD_PAGE, "pages.class_board", ":material/leaderboard:"),
    (PLAYGROUND_PAGE, "pages.playground", ":material/science:"),
)


def page_setup(page_key: str) -> None:
    """Page config, the language switch and the sidebar menu. The menu is drawn here (config.toml hides
    the automatic one) so page names are translated and the first page reads "Home", not its file name
    "app"; the pages themselves still come from the pages/ folder."""
    # An "About" entry brings back the app menu that toolbarMode "minimal" hides, and with it Streamlit's
    # own light / dark / system theme choice (kept per browser).
    st.set_page_config(
        page_title=f"{t(page_key)} · {t('app.name')}",
        page_icon=":material/science:",
        layout="wide",
        menu_items={"About": t("app.about")},
    )
    _warm_up()
    require_login()
    with st.sidebar:
        st.markdown(f"**{t('app.name')}**")
        for page, label_key, icon in NAVIGATION:
            st.page_link(page, label=t(label_key), icon=icon)
    language_switch()


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a LabError (bad file, unknown model, bad value) as a message; the page goes on."""
    try:
        yield
    except LabError as exc:
        st.error(for_the_page(message(exc)), icon=":material/error:")


def task_name(task: str) -> str:
    return t(f"task.{task}") if task else ""


def method_name(method: str) -> str:
    return t(f"method.{method}.name") if method else ""


def status_name(status: str) -> str:
    return t(f"status.{status}") if status in STATUS_COLOURS else status


def status_badge(status: str) -> str:
    return f":{STATUS_COLOURS[status]}-badge[{status_name(status)}]" if status in STATUS_COLOURS else status


def open_run(run_id: str) -> None:
    """Go to the live view of a run (its id travels in the URL, so a reload finds it again)."""
    st.switch_page(LIVE_PAGE, query_params={"run": run_id})


def launch(config) -> str:
    """Submit a lab.config.RunConfig to the job runner; returns the run id. Raises LabError."""
    return get_runner().submit(config)
