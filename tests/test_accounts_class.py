"""A class on one server, the teacher's and the student's side: assignments from the CLI (publish, list,
close; a student refused), and a student training on from their own earlier run's saved model (another
person's still refused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.accounts.assignments import load, student_config
from lab.accounts.book import AccountBook
from lab.cli.main import main
from lab.config import RunConfig
from lab.errors import LabError
from lab.runs.records import Viewer
from lab.runs.store import RunStore


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture
def book(runs_dir) -> AccountBook:
    book = AccountBook(runs_dir)
    book.add("alice", "teacher", "teach-3x4mple")
    book.add("bob", "student", "bob-s3cret-pw")
    book.add("carol", "student", "carol-s3cret-pw")
    return book


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ---- assignments from the CLI -----------------------------------------------------------------------
def test_a_teacher_publishes_lists_and_closes_an_assignment_from_the_cli(book, runs_dir, tmp_path, capsys):
    spec = tmp_path / "week3.yaml"
    spec.write_text(
        "config:\n  task: classification\n  data: {dataset: rotten_tomatoes, train_subset: 300}\n"
        "allowed: [train.learning_rate]\nbudget: 200\n",
        encoding="utf-8",
    )
    code, out, err = cli(
        capsys, "assignment", "publish", "Week 3", str(spec), "--set", "peft.method=lora", "--allow", "peft.r",
        "--budget", "60", "--as", "alice",
    )  # fmt: skip
    assert code == 0 and not err and "Published 'Week 3'" in out and "budget 60 steps" in out
    assignment = load(runs_dir, "Week 3")
    assert assignment.allowed == ["train.learning_rate", "peft.r"] and assignment.max_steps == 60
    assert (assignment.config.data.dataset, assignment.config.data.train_subset) == ("rotten_tomatoes", 300)
    assert assignment.config.peft.method == "lora" and assignment.teacher == "alice"
    assert student_config(assignment, {"peft.r": "4"}, "bob").train.max_steps == 60

    code, out, _ = cli(capsys, "assignment", "list", "--as", "bob")  # students may look
    assert code == 0 and "Week 3  [open]" in out and "rotten_tomatoes" in out and "0 runs" in out

    code, out, _ = cli(capsys, "assignment", "close", "Week 3")  # the machine's owner is the teacher
    assert code == 0 and "takes no new runs" in out
    assert "Week 3  [closed]" in cli(capsys, "assignment", "list")[1]
    with pytest.raises(LabError, match="closed: it takes no new runs") as refused:
        student_config(load(runs_dir, "Week 3"), {"peft.r": "4"}, "bob")
    assert refused.value.code == "assignment_closed"


def test_a_run_config_yaml_and_flags_make_an_assignment_too(book, runs_dir, tmp_path, capsys):
    config = tmp_path / "ner.yaml"
    RunConfig(task="ner").save(config)
    code, out, err = cli(
        capsys, "assignment", "publish", "ner", str(config), "--dataset", "wnut16", "--allow", "peft.method,peft.r"
    )
    assert code == 0 and not err, err
    assignment = load(runs_dir, "ner")
    assert assignment.config.task == "ner" and assignment.config.data.dataset == "wnut16"
    assert assignment.allowed == ["peft.method", "peft.r"] and assignment.max_steps == 0


@pytest.mark.parametrize("action", [["publish", "sneaky"], ["close", "Week 3"]])
def test_a_student_may_not_publish_or_close_an_assignment(book, runs_dir, capsys, action):
    assert cli(capsys, "assignment", "publish", "Week 3")[0] == 0
    code, out, err = cli(capsys, "assignment", *action, "--as", "bob")
    assert code == 2 and not out
    assert err == f"error: Only a teacher may {action[0]} an assignment; bob is a student.\n"
    assert not load(runs_dir, "Week 3").closed and [a.name for a in _published(runs_dir)] == ["Week 3"]


def test_a_bad_spec_is_refused_in_one_line(book, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("config: {}\nallowed: [train.lr]\n", encoding="utf-8")
    code, _, err = cli(capsys, "assignment", "publish", "x", str(spec))
    assert code == 2 and err.count("\n") == 1 and "train.lr is not a config key" in err
    spec.write_text("allowed: []\nbudgett: 3\n", encoding="utf-8")
    code, _, err = cli(capsys, "assignment", "publish", "x", str(spec))
    assert code == 2 and err.count("\n") == 1 and "budgett is not a spec key" in err


def _published(runs_dir):
    from lab.accounts.assignments import assignments

    return assignments(runs_dir)


# ---- training on from one's own saved model -----------------------------------------------------------
def finished_run_with_a_model(store: RunStore, owner: str) -> str:
    run = store.create_run(RunConfig(name=f"{owner}-first"), owner=owner)
    (store.run_dir(run.id) / "model").mkdir()
    store.finish(run.id, "completed", metrics={"accuracy": 0.8})
    return run.id


def test_a_student_trains_on_from_their_own_runs_saved_model_but_not_from_someone_elses(book, runs_dir):
    from lab.accounts.uploads import check_own_data_files

    store = RunStore(runs_dir)
    bobs, carols = finished_run_with_a_model(store, "bob"), finished_run_with_a_model(store, "carol")
    teachers = finished_run_with_a_model(store, "alice")
    bob = Viewer("bob", "student")
    config = RunConfig(name="bob-second")
    config.model.name_or_path = str(store.run_dir(bobs) / "model")
    check_own_data_files(config, store, bob)  # his own: allowed
    for someone_else in (carols, teachers):
        config.model.name_or_path = str(store.run_dir(someone_else) / "model")
        with pytest.raises(LabError, match="is not yours to train on") as refused:
            check_own_data_files(config, store, bob)
        assert refused.value.code == "not_your_file" and "\n" not in str(refused.value)
    config.model.name_or_path = str(runs_dir / "no-such-run" / "model")
    with pytest.raises(LabError, match="is not yours to train on"):
        check_own_data_files(config, store, bob)


def test_the_app_runner_lets_a_student_start_from_their_own_model(book, runs_dir):
    from lab.launch.personal import PersonalRunner
    from lab.launch.runner import JobRunner
    from lab.launch.scripted import scripted_train

    store = RunStore(runs_dir)
    bobs = finished_run_with_a_model(store, "bob")
    runner = JobRunner(store, train_fn=scripted_train, gpu_ids=[], poll_seconds=0.02)
    try:
        config = RunConfig(name="bob-second,steps=1")
        config.data.dataset = "imdb"
        config.model.name_or_path = str(store.run_dir(bobs) / "model")
        as_bob = PersonalRunner(runner, Viewer("bob", "student"))
        assert runner.wait(as_bob.submit(config), timeout=30) == "completed"
        with pytest.raises(LabError, match="is not yours to train on"):
            PersonalRunner(runner, Viewer("carol", "student")).submit(config)
    finally:
        runner.shutdown(timeout=30)


# ---- what students may change ---------------------------------------------------------------------------
def test_publishing_refuses_a_setting_students_should_not_change_naming_the_ones_they_may(book, capsys):
    code, out, err = cli(capsys, "assignment", "publish", "x", "--allow", "train.device")
    assert code == 2 and not out and err.count("\n") == 1
    assert "train.device" in err and "train.learning_rate" in err and "peft.r" in err


def test_every_setting_a_student_may_change_has_a_label_in_both_languages():
    from lab.accounts.assignments import STUDENT_SETTINGS
    from lab.catalogue import catalogue
    from lab.config import config_field

    for language in ("en", "zh"):
        words = catalogue(language)
        for key in STUDENT_SETTINGS:
            section, _, name = key.rpartition(".")
            assert words.get(config_field(section, name).label_key), (language, key)


def test_a_spec_and_task_together_are_refused_rather_than_the_task_ignored(book, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("config: {task: classification}\n", encoding="utf-8")
    code, out, err = cli(capsys, "assignment", "publish", "x", str(spec), "--task", "ner")
    assert code == 2 and not out and err.count("\n") == 1 and "--task" in err


def test_without_a_spec_the_task_picks_the_default_config(book, runs_dir, capsys):
    assert cli(capsys, "assignment", "publish", "tags", "--task", "ner")[0] == 0
    assert load(runs_dir, "tags").config.task == "ner"


# ---- the class board page ---------------------------------------------------------------------------------
def open_board(monkeypatch, session: str):
    """The Class board as a browser logged in with `session` opens it."""
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    import ui.auth

    monkeypatch.setattr(ui.auth, "request_cookies", lambda: {ui.auth.SESSION_COOKIE: session})
    monkeypatch.setattr(ui.auth, "client_address", lambda: "local")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/9_Class_board.py")
    return at.run()


def test_the_class_board_names_a_setting_without_a_label_by_its_key_and_offers_auto_rates(book, runs_dir, monkeypatch):
    import yaml

    from lab.accounts.assignments import Assignment, publish

    config = RunConfig()
    config.train.learning_rate = "auto"
    publish(runs_dir, Assignment("week 5", config, ["train.learning_rate"], max_steps=40, teacher="alice"))
    (older,) = (runs_dir / "assignments").glob("*.yaml")  # as published before students' settings were fixed
    stored = yaml.safe_load(older.read_text(encoding="utf-8"))
    older.write_text(yaml.safe_dump({**stored, "allowed": ["train.learning_rate", "train.device"]}), encoding="utf-8")
    bob = open_board(monkeypatch, book.log_in("bob", "bob-s3cret-pw"))
    assert not bob.exception, bob.exception
    assert any(r"Learning rate\, train\.device" in caption.value for caption in bob.caption)
    assert bob.checkbox(key="board-set-week 5-train.learning_rate-auto").value  # auto stays auto
    teacher = open_board(monkeypatch, book.log_in("alice", "teach-3x4mple"))
    offered = teacher.multiselect(key="board-new-allowed").options
    assert "train.learning_rate" in offered and "train.device" not in offered and "task" not in offered


def test_the_cli_docstring_and_the_architecture_name_every_command():
    import argparse

    import lab.cli
    from lab.cli.main import build_parser

    (commands,) = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    architecture = (Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    cli_line = architecture[architecture.index("lab/cli/ ") : architecture.index("\nui/ ")]
    listed_in_docstring = set(lab.cli.__doc__.split("`")[1].replace("|", " ").split())
    listed_in_architecture = set(cli_line.replace("|", " ").split())
    assert set(commands.choices) <= listed_in_docstring & listed_in_architecture
