"""A class on one server: accounts (off until the first exists), each person's own runs, and what the
CLI does for a named account. The app's login gate and the fair queue have tests of their own below."""

from __future__ import annotations

import io
import sqlite3
import time

import pandas as pd
import pytest

from lab.accounts.book import MAX_FAILED_LOGINS, AccountBook, LoginRefused
from lab.cli.main import main
from lab.config import RunConfig
from lab.errors import LabError
from lab.runs.records import Viewer
from lab.runs.store import RunStore

TEACHER_PASSWORD, BOB_PASSWORD, CAROL_PASSWORD = "teach-3x4mple", "bob-s3cret-pw", "carol-s3cret-pw"


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture
def book(runs_dir) -> AccountBook:
    book = AccountBook(runs_dir)
    book.add("alice", "teacher", TEACHER_PASSWORD)
    book.add("bob", "student", BOB_PASSWORD)
    book.add("carol", "student", CAROL_PASSWORD)
    return book


def finished_run(store: RunStore, owner: str, name: str) -> str:
    run = store.create_run(RunConfig(name=name), owner=owner)
    model_dir = store.run_dir(run.id) / "model"
    model_dir.mkdir()
    store.finish(run.id, "completed", metrics={"test_accuracy": 0.9})
    return run.id


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ---- accounts ---------------------------------------------------------------------------------------
def test_without_accounts_the_cli_sees_every_run_as_before(runs_dir, capsys):
    store = RunStore(runs_dir)
    run_id = finished_run(store, "", "solo")
    assert not AccountBook(runs_dir).enabled()
    assert not (runs_dir / "accounts.db").exists()  # reading the book created nothing
    code, out, _ = cli(capsys, "runs")
    assert code == 0 and run_id in out
    code, out, _ = cli(capsys, "show", run_id)
    assert code == 0 and "solo" in out


def test_users_add_reads_the_password_from_stdin_and_stores_only_a_hash(runs_dir, capsys, monkeypatch, caplog):
    monkeypatch.setattr("sys.stdin", io.StringIO(TEACHER_PASSWORD + "\n"))
    code, out, _ = cli(capsys, "users", "add", "Alice", "--role", "teacher")
    assert code == 0 and "alice (teacher)" in out and "log in" in out
    code, out, _ = cli(capsys, "users", "list")
    assert "alice" in out and "teacher" in out
    book = AccountBook(runs_dir)
    book.log_in("alice", TEACHER_PASSWORD)
    for path in runs_dir.rglob("*"):
        if path.is_file():
            assert TEACHER_PASSWORD.encode() not in path.read_bytes(), path
    assert TEACHER_PASSWORD not in caplog.text
    (stored,) = sqlite3.connect(runs_dir / "accounts.db").execute("SELECT password_hash FROM users").fetchone()
    assert stored.startswith("$argon2id$")
    assert (runs_dir / "accounts.db").stat().st_mode & 0o077 == 0  # only the lab's user may read it


def test_users_passwd_and_remove(book, runs_dir, capsys, monkeypatch):
    token = book.log_in("bob", BOB_PASSWORD)
    monkeypatch.setattr("sys.stdin", io.StringIO("a-new-password\n"))
    assert cli(capsys, "users", "passwd", "bob")[0] == 0
    assert book.session(token) is None  # the old session ended with the old password
    with pytest.raises(LoginRefused):
        book.log_in("bob", BOB_PASSWORD)
    assert book.log_in("bob", "a-new-password")
    assert cli(capsys, "users", "remove", "bob")[0] == 0
    assert book.get("bob") is None
    code, _, err = cli(capsys, "users", "remove", "bob")
    assert code == 2 and err.count("\n") == 1 and "No user 'bob'" in err


def test_a_short_password_or_a_bad_name_is_refused_in_one_line(runs_dir, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, _, err = cli(capsys, "users", "add", "dave", "--role", "student")
    assert code == 2 and "too short" in err and err.count("\n") == 1
    with pytest.raises(LabError, match="not a user name"):
        AccountBook(runs_dir).add("../etc", "student", "long-enough-pw")


def test_sessions_survive_a_new_handle_and_end_at_logout(book, runs_dir):
    token = book.log_in("Bob ", BOB_PASSWORD)
    account = AccountBook(runs_dir).session(token)  # another server process, or a reload
    assert account is not None and account.name == "bob" and account.role == "student"
    book.log_out(token)
    assert AccountBook(runs_dir).session(token) is None
    assert book.session("made-up-token") is None


def test_failed_logins_are_rate_limited_per_name(book):
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(LoginRefused, match="Wrong user name or password"):
            book.log_in("bob", "guess-guess")
    with pytest.raises(LoginRefused, match="Too many failed logins for 'bob': try again in"):
        book.log_in("bob", BOB_PASSWORD)  # even the right password waits out the window
    assert book.log_in("carol", CAROL_PASSWORD)  # another name is not held up


# ---- each person's own runs ---------------------------------------------------------------------
def test_a_student_sees_only_their_own_and_shared_runs_a_teacher_sees_all(book, runs_dir):
    store = RunStore(runs_dir)
    bobs, carols, teachers = (
        finished_run(store, "bob", "b1"),
        finished_run(store, "carol", "c1"),
        finished_run(store, "", "t1"),
    )
    as_bob = store.seen_by(Viewer("bob", "student"))
    assert {run.id for run in as_bob.list_runs()} == {bobs}
    with pytest.raises(LabError, match="No run with id"):
        as_bob.get_run(carols)
    with pytest.raises(LabError, match="No run"):
        as_bob.find_run("c1")
    with pytest.raises(LabError, match="No run"):
        as_bob.load_config(carols)
    for change in (as_bob.delete_run, as_bob.request_cancel):
        with pytest.raises(LabError, match="No run"):
            change(carols)
    teacher = store.seen_by(Viewer("alice", "teacher"))
    assert {run.id for run in teacher.list_runs()} == {bobs, carols, teachers}
    teacher.share_run(teachers)
    assert as_bob.get_run(teachers).shared
    with pytest.raises(LabError, match="only they or a teacher may change it"):
        as_bob.delete_run(teachers)
    with pytest.raises(LabError, match="Only a teacher"):
        as_bob.share_run(bobs)
    new = as_bob.create_run(RunConfig(name="mine"))
    assert new.owner == "bob"


@pytest.mark.parametrize(
    "command",
    [
        ["show", "{run}"],
        ["show", "{run}", "--json"],
        ["cancel", "{run}"],
        ["resume", "{run}"],
        ["delete", "{run}"],
        ["export", "{run}", "--onnx", "out"],
        ["push", "{run}", "someone/repo"],
    ],
)
def test_the_cli_as_a_student_refuses_another_students_run_in_one_line(book, runs_dir, capsys, command):
    carols = finished_run(RunStore(runs_dir), "carol", "carols-run")
    for ref in (carols, "carols-run", carols[:12]):
        code, out, err = cli(capsys, *[part.format(run=ref) for part in command], "--as", "bob")
        assert code == 2 and not out
        assert err.startswith("error: No run") and err.count("\n") == 1, err
    assert RunStore(runs_dir).get_run(carols).status == "completed"  # nothing touched it


def test_the_cli_acts_as_the_teacher_without_as_and_as_the_named_account_with_it(book, runs_dir, capsys):
    store = RunStore(runs_dir)
    bobs, carols = finished_run(store, "bob", "b1"), finished_run(store, "carol", "c1")
    code, out, _ = cli(capsys, "runs", "--as", "bob")
    assert bobs in out and carols not in out
    code, out, _ = cli(capsys, "runs")
    assert bobs in out and carols in out
    code, out, _ = cli(capsys, "runs", "--as", "alice")
    assert bobs in out and carols in out
    code, _, err = cli(capsys, "delete", bobs, "--as", "bob")
    assert code == 0
    code, _, err = cli(capsys, "runs", "--as", "nobody")
    assert code == 2 and "No user 'nobody'" in err


def test_an_older_store_without_owners_reads_as_the_teachers(runs_dir):
    store = RunStore(runs_dir)
    run_id = finished_run(store, "", "old")
    with sqlite3.connect(runs_dir / "lab.db") as conn:  # the columns an older lab did not have
        conn.execute("ALTER TABLE runs DROP COLUMN owner")
        conn.execute("ALTER TABLE runs DROP COLUMN shared")
        conn.execute("PRAGMA user_version = 3")
    reader = RunStore(runs_dir)
    assert reader.get_run(run_id).owner == ""
    assert reader.seen_by(Viewer("bob", "student")).list_runs() == []
    assert [run.id for run in reader.seen_by(Viewer("alice", "teacher")).list_runs()] == [run_id]
    reader.create_run(RunConfig(name="new"), owner="bob")  # the first write upgrades the store
    assert len(reader.list_runs()) == 2


# ---- the fair queue ---------------------------------------------------------------------------------
def scripted_config(name: str) -> RunConfig:
    config = RunConfig(name=name)
    config.data.dataset = "imdb"
    return config


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def queue_runner(runs_dir):
    from lab.launch.fairness import Quotas
    from lab.launch.runner import JobRunner
    from lab.launch.scripted import scripted_train

    runners = []

    def make(**quotas) -> JobRunner:
        runner = JobRunner(
            RunStore(runs_dir), train_fn=scripted_train, gpu_ids=[], poll_seconds=0.02, quotas=Quotas(**quotas)
        )
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.shutdown(timeout=30)


def hold_the_device(runner) -> str:
    """A run that keeps the one device busy until cancelled, so the others queue up behind it."""
    busy = runner.submit(scripted_config("busy,steps=100000,sleep=0.02"), owner="zed")
    wait_until(lambda: runner.store.get_run(busy).status == "running")
    return busy


def test_the_queue_takes_turns_between_people_and_the_teacher_goes_first(queue_runner):
    runner = queue_runner()
    busy = hold_the_device(runner)
    order = [("bob", "bob-1"), ("bob", "bob-2"), ("bob", "bob-3"), ("carol", "carol-1"), ("dave", "dave-1")]
    ids = {name: runner.submit(scripted_config(f"{name},steps=1"), owner=owner) for owner, name in order}
    ids["teacher-1"] = runner.submit(scripted_config("teacher-1,steps=1"), owner="alice", first=True)
    runner.cancel(busy)
    for run_id in ids.values():
        assert runner.wait(run_id, timeout=30) == "completed"
    runs = {run.name.split(",")[0]: run for run in runner.store.list_runs()}
    started = sorted(ids, key=lambda name: runs[name].started_at)
    assert started == ["teacher-1", "bob-1", "carol-1", "dave-1", "bob-2", "bob-3"]
    assert runs["bob-2"].owner == "bob" and runs["teacher-1"].owner == "alice"


def test_without_accounts_the_queue_is_first_in_first_out(queue_runner):
    runner = queue_runner()
    busy = runner.submit(scripted_config("busy,steps=100000,sleep=0.02"))
    wait_until(lambda: runner.store.get_run(busy).status == "running")
    ids = [runner.submit(scripted_config(f"run-{i},steps=1")) for i in range(4)]
    runner.cancel(busy)
    for run_id in ids:
        runner.wait(run_id, timeout=30)
    runs = {run.id: run for run in runner.store.list_runs()}
    assert sorted(ids, key=lambda run_id: runs[run_id].started_at) == ids


def test_a_person_over_their_queue_quota_is_refused_in_one_line_and_the_teacher_is_not(queue_runner):
    runner = queue_runner(queued=2)
    hold_the_device(runner)
    for _ in range(2):
        runner.submit(scripted_config("bob,steps=1"), owner="bob")
    with pytest.raises(LabError) as refused:
        runner.submit(scripted_config("bob,steps=1"), owner="bob")
    assert str(refused.value).startswith("You have 2 runs waiting, the most one person may queue")
    assert "LAB_QUEUED_PER_PERSON = 2" in str(refused.value) and "\n" not in str(refused.value)
    assert refused.value.code == "queue_person_full"
    runner.submit(scripted_config("carol,steps=1"), owner="carol")  # others still may
    for _ in range(3):
        runner.submit(scripted_config("teacher,steps=1"), owner="alice", first=True)
    assert sum(run.owner == "bob" for run in runner.store.list_runs()) == 2  # the refused run was never recorded


def test_a_person_over_their_disk_quota_is_refused(queue_runner, runs_dir):
    runner = queue_runner(disk_gb=0.001)
    first = runner.submit(scripted_config("bob,steps=1"), owner="bob")
    runner.wait(first, timeout=30)
    (RunStore(runs_dir).run_dir(first) / "model.bin").write_bytes(b"\0" * 1_100_000)
    with pytest.raises(LabError, match=r"Your runs take 0\.00 GB on disk.*LAB_DISK_PER_PERSON_GB = 0\.001.*delete"):
        runner.submit(scripted_config("bob,steps=1"), owner="bob")
    runner.wait(runner.submit(scripted_config("carol,steps=1"), owner="carol"), timeout=30)


def test_a_person_at_their_running_limit_waits_while_others_start():
    from lab.launch.fairness import Quotas, next_in_line

    class Job:
        def __init__(self, owner: str, first: bool = False) -> None:
            self.owner, self.first = owner, first

    queue = [Job("bob"), Job("bob"), Job("carol")]
    assert next_in_line(queue, {"bob": 1}, {}, Quotas(running=1)) == 2
    assert next_in_line(queue[:2], {"bob": 1}, {}, Quotas(running=1)) is None
    assert next_in_line(queue, {"bob": 1}, {}, Quotas()) == 0
    assert next_in_line([Job("bob"), Job("alice", first=True)], {}, {}, Quotas(teacher_first=False)) == 0


def test_a_student_cannot_cancel_or_resume_another_students_run_through_the_app_runner(book, queue_runner):
    from lab.launch.personal import PersonalRunner

    runner = queue_runner()
    carols = runner.submit(scripted_config("carol,steps=100000,sleep=0.02"), owner="carol")
    as_bob = PersonalRunner(runner, Viewer("bob", "student"))
    for act in (as_bob.cancel, as_bob.resume):
        with pytest.raises(LabError, match="No run"):
            act(carols)
    assert runner.store.get_run(carols).is_active
    mine = as_bob.submit(scripted_config("bob,steps=1"))
    assert runner.store.get_run(mine).owner == "bob"
    PersonalRunner(runner, Viewer("alice", "teacher")).cancel(carols)  # a teacher may
    assert runner.wait(carols, timeout=30) == "cancelled"


def test_uploads_belong_to_their_owner(book, queue_runner, runs_dir, sentiment_csv):
    from lab.launch.personal import PersonalRunner
    from lab.views.uploads import save_upload

    data = sentiment_csv.read_bytes()
    bobs_upload = save_upload("reviews.csv", data, runs_dir, owner="bob")
    carols_upload = save_upload("reviews.csv", data, runs_dir, owner="carol")
    assert bobs_upload != carols_upload  # the same file uploaded twice is two people's files
    runner = queue_runner()
    as_carol = PersonalRunner(runner, Viewer("carol", "student"))
    someone_elses = [str(bobs_upload), str(RunStore(runs_dir).create_run(RunConfig(), owner="bob").id)]
    someone_elses[1] = str(RunStore(runs_dir).run_dir(someone_elses[1]) / "config.yaml")
    for path in someone_elses:
        config = scripted_config("carol,steps=1")
        config.data.train_file = path
        with pytest.raises(LabError, match="is not yours to train on") as refused:
            as_carol.submit(config)
        assert refused.value.code == "not_your_file"
    config = scripted_config("carol,steps=1")
    config.data.train_file = str(carols_upload)
    assert runner.wait(as_carol.submit(config), timeout=30) == "completed"
    config.data.train_file = str(bobs_upload)
    PersonalRunner(runner, Viewer("alice", "teacher")).submit(config)  # a teacher may use any file


def test_a_student_trains_on_an_assignments_upload_but_not_on_another_runs_saved_model(
    book, queue_runner, runs_dir, sentiment_csv
):
    from lab.accounts.assignments import Assignment, publish
    from lab.launch.personal import PersonalRunner
    from lab.views.uploads import prune_uploads, save_upload

    teachers_upload = save_upload("week3.csv", sentiment_csv.read_bytes(), runs_dir, owner="alice")
    base = scripted_config("assignment,steps=1")
    base.data.train_file = str(teachers_upload)
    publish(runs_dir, Assignment("Week 3", base, ["peft.r"]))
    runner = queue_runner()
    as_bob = PersonalRunner(runner, Viewer("bob", "student"))
    assert runner.wait(as_bob.submit(base), timeout=30) == "completed"
    assert prune_uploads(runs_dir, now=time.time() + 10 * 86400) == []  # the assignment still names it

    carols_model = RunStore(runs_dir).run_dir(finished_run(RunStore(runs_dir), "carol", "carols")) / "model"
    config = scripted_config("bob,steps=1")
    config.model.name_or_path = str(carols_model)
    with pytest.raises(LabError, match="is not yours to train on"):
        as_bob.submit(config)


# ---- assignments and the class board ------------------------------------------------------------
def test_an_assignment_lets_students_change_only_what_the_teacher_allowed_within_the_budget(runs_dir):
    from lab.accounts.assignments import Assignment, assignments, load, publish, student_config

    base = RunConfig(name="imdb-lora")
    publish(runs_dir, Assignment("Week 3: LoRA rank", base, ["peft.r", "train.learning_rate"], max_steps=40))
    assignment = load(runs_dir, "Week 3: LoRA rank")
    assert [item.name for item in assignments(runs_dir)] == ["Week 3: LoRA rank"]
    config = student_config(assignment, {"peft.r": "16", "train.learning_rate": "0.002"}, "bob")
    assert (config.peft.r, config.train.learning_rate, config.train.max_steps) == (16, 0.002, 40)
    assert config.model.name_or_path == base.model.name_or_path and "bob" in config.name
    with pytest.raises(LabError) as refused:
        student_config(assignment, {"model.name_or_path": "bert-large-uncased"}, "bob")
    assert (
        "does not let you change model.name_or_path" in str(refused.value) and refused.value.code == "assignment_fixed"
    )
    with pytest.raises(LabError, match="not a config key"):
        publish(runs_dir, Assignment("bad", base, ["train.lr"]))


def test_the_class_board_ranks_every_students_run_on_the_assignment(book, runs_dir):
    from lab.accounts.assignments import Assignment, publish
    from lab.views.class_board import board_frame

    assignment = publish(runs_dir, Assignment("rank", RunConfig(), ["peft.r"], teacher="alice"))
    store = RunStore(runs_dir)
    for owner, rank, accuracy in (("bob", "4", 0.71), ("carol", "16", 0.83)):
        config = student_config_for(assignment, owner, rank)
        run = store.create_run(config, group=assignment.group, owner=owner)
        store.finish(run.id, "completed", metrics={"accuracy": accuracy})
    full = student_config_for(assignment, "dave", "8")
    full.peft.method = "full"  # reads no rank: its row leaves the rank blank rather than show an unused 8
    run = store.create_run(full, group=assignment.group, owner="dave")
    store.finish(run.id, "completed", metrics={"accuracy": 0.5})
    store.create_run(RunConfig(name="elsewhere"), owner="bob")  # not on the assignment
    frame = board_frame(store.seen_by(Viewer("bob", "student")), assignment)
    assert frame["student"].tolist() == ["carol", "bob", "dave"]
    assert frame["peft.r"].tolist()[:2] == [16, 4] and pd.isna(frame["peft.r"].tolist()[2])
    assert frame["accuracy"].tolist() == [0.83, 0.71, 0.5]


def student_config_for(assignment, owner: str, rank: str) -> RunConfig:
    from lab.accounts.assignments import student_config

    return student_config(assignment, {"peft.r": rank}, owner)
