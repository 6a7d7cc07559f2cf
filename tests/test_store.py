"""The run store: ordered events that any number of readers follow, safe names, truthful statuses,
and a database that concurrent writers (threads and processes) do not corrupt."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab.config import RunConfig
from lab.errors import LabError
from lab.events import EvalEvent, LogEvent, StatusEvent, StepEvent
from lab.runs import connection
from lab.runs.owner import STALE_AFTER_SECONDS, Owner, boot_id, host_id, pid_namespace, process_identity
from lab.runs.sink import StoreSink
from lab.runs.store import RunStore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs")


def make_run(store: RunStore, name: str = "demo") -> str:
    return store.create_run(RunConfig(name=name)).id


def steps(events) -> list[int]:
    return [event.step for _, event in events if isinstance(event, StepEvent)]


def test_create_run_writes_folder_config_and_queued_status(store: RunStore) -> None:
    run = store.create_run(RunConfig(name="My first run", task="ner"))
    folder = store.run_dir(run.id)
    assert run.status == "queued" and run.name == "My first run" and run.task == "ner"
    assert (folder / "checkpoints").is_dir()
    assert RunConfig.load(folder / "config.yaml").task == "ner"
    ((seq, event),) = store.events_since(run.id)
    assert seq == 1 and isinstance(event, StatusEvent) and event.status == "queued"


def test_two_readers_see_the_same_events_and_nothing_is_consumed(store: RunStore) -> None:
    run_id = make_run(store)
    store.append_events(run_id, [StepEvent(step=1, loss=0.9), StepEvent(step=2, loss=0.7)])
    other_process_view = RunStore(store.runs_dir)  # a second tab / the CLI: its own connection
    first, second = store.events_since(run_id), other_process_view.events_since(run_id)
    assert [s for s, _ in first] == [s for s, _ in second] == [1, 2, 3]
    assert first[1][1] == second[1][1] == StepEvent(step=1, loss=0.9, time=first[1][1].time)

    cursor_a, cursor_b = first[-1][0], 1
    store.append_events(run_id, [EvalEvent(step=2, metrics={"accuracy": 0.5}), StepEvent(step=3, loss=0.5)])
    assert steps(store.events_since(run_id, cursor_a)) == [3]
    assert steps(other_process_view.events_since(run_id, cursor_b)) == [1, 2, 3]
    # Reading again from the start still returns everything: readers never consume.
    assert len(store.events_since(run_id)) == len(other_process_view.events_since(run_id)) == 5


def test_events_come_back_typed(store: RunStore) -> None:
    run_id = make_run(store)
    eval_event = EvalEvent(
        step=4,
        metrics={"f1": 0.5},
        per_label=[{"label": "PER", "f1": 0.5}],
        confusion={"labels": ["a"], "matrix": [[1]]},
    )
    store.append_events(run_id, [eval_event, LogEvent(message="hi", level="warning")])
    _, (_, got_eval), (_, got_log) = store.events_since(run_id)
    assert got_eval == eval_event
    assert isinstance(got_log, LogEvent) and got_log.level == "warning"


@pytest.mark.parametrize(
    "name",
    [
        "../../x",
        "../..",
        "/etc/passwd",
        "a/../../b",
        "..\\..\\win",
        "\x00nul",
        "",
        ".hidden",
        "~",
        "x" * 500,
        "ünïcødé/../..",
        "CON",
    ],
)
def test_run_names_cannot_escape_the_runs_dir(tmp_path: Path, name: str) -> None:
    runs_dir = tmp_path / "deep" / "runs"
    store = RunStore(runs_dir)
    before = sorted(p.name for p in tmp_path.iterdir())
    run = store.create_run(RunConfig(name=name))
    folder = store.run_dir(run.id)
    assert folder.parent == runs_dir.resolve() and folder.is_dir()
    assert not folder.name.startswith(".")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["runs"]


@pytest.mark.parametrize("ref", ["../x", "..", "a/b", "/tmp", "x/../../y", ""])
def test_path_like_run_references_are_refused(store: RunStore, ref: str) -> None:
    with pytest.raises(LabError):
        store.run_dir(ref)
    with pytest.raises(LabError):
        store.find_run(ref)


def test_find_run_by_id_name_and_prefix(store: RunStore) -> None:
    a = store.create_run(RunConfig(name="alpha"))
    b = store.create_run(RunConfig(name="beta"))
    store.create_run(RunConfig(name="beta"))
    assert store.find_run(a.id).id == a.id
    assert store.find_run("alpha").id == a.id
    assert store.find_run(b.id[:-2]).id == b.id
    with pytest.raises(LabError, match="matches 2 runs"):
        store.find_run("beta")
    with pytest.raises(LabError, match="No run 'gamma'"):
        store.find_run("gamma")


def test_list_runs_newest_first(store: RunStore) -> None:
    ids = [make_run(store, f"run{i}") for i in range(3)]
    assert [run.id for run in store.list_runs()] == ids[::-1]


def test_first_final_status_wins(store: RunStore) -> None:
    run_id = make_run(store)
    assert store.mark_running(run_id)
    assert not store.mark_running(run_id)  # already claimed
    assert store.finish(run_id, "failed", "Rank 1: out of memory")
    assert not store.finish(run_id, "interrupted", "terminated")
    run = store.get_run(run_id)
    assert (run.status, run.message) == ("failed", "Rank 1: out of memory")
    statuses = [e.status for _, e in store.events_since(run_id) if isinstance(e, StatusEvent)]
    assert statuses == ["queued", "running", "failed"]


def test_finish_keeps_metrics_and_per_label(store: RunStore) -> None:
    run_id = make_run(store)
    per_label = [{"label": "pos", "precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2}]
    store.finish(run_id, "completed", metrics={"accuracy": 0.75}, per_label=per_label, summary={"total_params": 9})
    run = RunStore(store.runs_dir).get_run(run_id)
    assert run.metrics == {"accuracy": 0.75} and run.per_label == per_label and run.summary == {"total_params": 9}


def test_delete_removes_record_events_and_folder(store: RunStore) -> None:
    run_id = make_run(store)
    with pytest.raises(LabError, match="cancel it first"):
        store.delete_run(run_id)
    store.finish(run_id, "cancelled")
    folder = store.run_dir(run_id)
    store.delete_run(run_id)
    assert not folder.exists() and store.events_since(run_id) == []
    with pytest.raises(LabError):
        store.get_run(run_id)


def test_run_of_a_dead_owner_is_interrupted_on_open(store: RunStore) -> None:
    # A process creates a run and exits without running it (a server killed with jobs queued).
    code = (
        "import sys; from lab.runs.store import RunStore; from lab.config import RunConfig;"
        "print(RunStore(sys.argv[1]).create_run(RunConfig(name='orphan')).id)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(store.runs_dir)], capture_output=True, text=True, cwd=REPO, check=True
    )
    orphan_id = done.stdout.strip()
    mine = make_run(store, "mine")
    reopened = RunStore(store.runs_dir)
    orphan = reopened.get_run(orphan_id)
    assert orphan.status == "interrupted" and "stopped without finishing" in orphan.message
    assert reopened.get_run(mine).status == "queued"  # this process is alive: its run is left alone


def identity(pid: int, ticks: str = "1", machine: str = "", boot: str = "", namespace: str = "") -> str:
    return "/".join(("v2", machine or host_id(), boot or boot_id(), namespace or pid_namespace(), str(pid), ticks))


FRESH, STALE = 5.0, STALE_AFTER_SECONDS + 1


@pytest.mark.parametrize(
    "who, heartbeat_age, dead",
    [
        ("me", None, False),  # looked at directly: a missing heartbeat does not matter
        ("my pid, another start time", FRESH, True),  # the pid was reused: not the owner
        ("no such process", FRESH, True),
        ("another boot of this machine", FRESH, True),
        ("another PID namespace, beating", FRESH, False),  # its pid means another process here
        ("another PID namespace, silent", STALE, True),
        ("another machine, beating", FRESH, False),
        ("another machine, silent", STALE, True),
        ("an older lab's identity, beating", FRESH, False),
        ("an older lab's identity, silent", STALE, True),
    ],
)
def test_owner_liveness_by_machine_boot_namespace_and_process_start(who, heartbeat_age, dead) -> None:
    me = Owner.current()
    ticks = me.identity.rsplit("/", 1)[1]
    owners = {
        "me": me,
        "my pid, another start time": Owner(me.host, me.pid, identity(me.pid, ticks + "9")),
        "no such process": Owner(me.host, 2**22 + 12345, identity(2**22 + 12345)),
        "another boot of this machine": Owner(me.host, me.pid, identity(me.pid, ticks, boot="0-old-boot")),
        "another PID namespace, beating": Owner(me.host, 1, identity(1, namespace="4026599999")),
        "another PID namespace, silent": Owner(me.host, 1, identity(1, namespace="4026599999")),
        "another machine, beating": Owner("elsewhere", me.pid, identity(me.pid, machine="other-machine")),
        "another machine, silent": Owner("elsewhere", me.pid, identity(me.pid, machine="other-machine")),
        "an older lab's identity, beating": Owner(socket.gethostname(), 1, f"{boot_id()}:1"),
        "an older lab's identity, silent": Owner(socket.gethostname(), 1, f"{boot_id()}:1"),
    }
    assert owners[who].is_dead(heartbeat_age) is dead
    assert process_identity(os.getpid()) == me.identity


def test_heartbeats_are_timed_by_the_stores_clock_not_the_owners(store: RunStore, monkeypatch) -> None:
    """An owner whose clock is 6 minutes behind, judged by its heartbeat: still alive."""
    import lab.runs.owner as owner

    # Another host as the reader sees it: its process cannot be looked at, only its heartbeat.
    monkeypatch.setattr(owner, "pid_namespace", lambda: "4026599999")
    monkeypatch.setattr(socket, "gethostname", lambda: "other-host")
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 360)
    run_id = make_run(store)
    store.mark_running(run_id)
    store.heartbeat([run_id])
    monkeypatch.undo()
    assert RunStore(store.runs_dir).get_run(run_id).status == "running"


def test_finish_records_the_real_outcome_of_a_run_another_process_marked_interrupted(store: RunStore) -> None:
    run_id = make_run(store)
    store.mark_running(run_id)
    judge = (
        "import sys; from lab.runs.owner import Owner; Owner.is_dead = lambda self, *args: True;"
        "from lab.runs.store import RunStore; RunStore(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", judge, str(store.runs_dir)], cwd=REPO, check=True)
    assert store.get_run(run_id).status == "interrupted"
    assert store.finish(run_id, "completed", "Finished in 3 s.", metrics={"accuracy": 0.9})
    run = store.get_run(run_id)
    assert (run.status, run.metrics) == ("completed", {"accuracy": 0.9})
    statuses = [e.status for _, e in store.events_since(run_id) if isinstance(e, StatusEvent)]
    assert statuses == ["queued", "running", "interrupted", "completed"]


def test_an_owner_that_interrupted_its_own_run_does_not_overwrite_that(store: RunStore) -> None:
    run_id = make_run(store)
    store.mark_running(run_id)
    assert store.finish(run_id, "interrupted", "SIGTERM")
    assert not store.finish(run_id, "failed", "later")
    assert store.get_run(run_id).status == "interrupted"


def test_reading_a_store_an_older_lab_made_leaves_it_as_it_was(tmp_path: Path) -> None:
    import sqlite3

    store = RunStore(tmp_path)
    old = store.create_run(RunConfig(name="older")).id
    store.close()
    with sqlite3.connect(tmp_path / "lab.db") as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN group_name")
        conn.execute("ALTER TABLE runs DROP COLUMN ended_by")
        conn.execute("PRAGMA user_version = 1")
    reader = RunStore(tmp_path)
    assert [run.id for run in reader.list_runs()] == [old] and reader.get_run(old).group_name == ""
    assert reader.groups() == [] and reader.find_run("older").id == old
    reader.close()
    with sqlite3.connect(tmp_path / "lab.db") as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        assert "group_name" not in columns and conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_a_runs_folder_without_a_store_reads_as_empty_and_stays_empty(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    assert store.list_runs() == [] and store.groups() == []
    assert not (tmp_path / "runs" / "lab.db").exists()
    make_run(store)  # the first write makes it
    assert len(RunStore(tmp_path / "runs").list_runs()) == 1


def test_the_store_is_backed_up_on_writes_at_most_once_per_interval(store: RunStore, monkeypatch) -> None:
    backup = store.db_path.with_name("lab.db.backup")
    make_run(store)
    deadline = time.monotonic() + 10
    while not backup.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    first = backup.stat().st_mtime_ns
    make_run(store)
    time.sleep(0.3)
    assert backup.stat().st_mtime_ns == first  # within the interval: no second copy
    monkeypatch.setattr(connection, "BACKUP_EVERY_SECONDS", 0.0)
    store.backup_now()
    assert store.db_path.with_name("lab.db.backup.1").exists()  # the previous copy is kept
    restored = RunStore(store.runs_dir / "restored")
    restored.close()
    (store.runs_dir / "restored" / "lab.db").write_bytes(backup.read_bytes())
    assert len(RunStore(store.runs_dir / "restored").list_runs()) == 2


def test_a_full_disk_at_the_end_of_a_run_is_recorded_once_space_is_freed(store: RunStore, monkeypatch) -> None:
    import lab.launch.execute as execute
    from bench.store_faults import injected_full_disk
    from lab.launch.execute import execute_run
    from lab.launch.scripted import scripted_train

    monkeypatch.setattr(execute, "FINAL_WRITE_RETRY_SECONDS", 0.05)
    run_id = store.create_run(RunConfig(name="steps=3")).id
    with injected_full_disk() as full:

        def train(*args, **kwargs):
            scripted_train(*args, **kwargs)
            full.set()  # the disk fills while the model is saved
            threading.Timer(1.5, full.clear).start()  # the user frees space a little later
            raise OSError(28, "No space left on device", "model.safetensors")

        assert execute_run(store, run_id, train, threading.Event()) == "failed"
    run = RunStore(store.runs_dir).get_run(run_id)
    assert run.status == "failed" and run.message.startswith("The disk is full (model.safetensors)")


def test_sink_buffers_step_events_and_flushes_urgent_ones_at_once(store: RunStore) -> None:
    run_id = make_run(store)
    sink = StoreSink(store, run_id, flush_seconds=30.0)
    started = time.perf_counter()
    for step in range(1, 2001):
        sink(StepEvent(step=step, loss=1.0 / step))
    emit_seconds = time.perf_counter() - started
    assert emit_seconds < 0.5  # no SQLite round trip per step
    assert steps(store.events_since(run_id)) == []  # buffered, not written yet
    sink(EvalEvent(step=2000, metrics={"accuracy": 1.0}))
    deadline = time.monotonic() + 5
    while len(store.events_since(run_id)) < 2002 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert steps(store.events_since(run_id)) == list(range(1, 2001))
    sink(StepEvent(step=2001))
    sink.close()
    assert steps(store.events_since(run_id))[-1] == 2001


def test_concurrent_thread_writers_keep_every_event_in_order(store: RunStore) -> None:
    run_ids = [make_run(store, "a"), make_run(store, "b")]
    writers, per_writer = 4, 60

    def write(writer: int) -> None:
        for i in range(per_writer):
            events = [LogEvent(message=f"{writer}:{i}:{j}") for j in range(1 + i % 3)]
            store.append_events(run_ids[writer % 2], events)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _check_writes(store, run_ids, writers, per_writer)


def test_concurrent_process_writers_do_not_corrupt_the_store(store: RunStore) -> None:
    run_ids = [make_run(store, "a"), make_run(store, "b")]
    writers, per_writer = 3, 60
    code = (
        "import sys; from lab.runs.store import RunStore; from lab.events import LogEvent\n"
        "store = RunStore(sys.argv[1]); writer = int(sys.argv[2]); run_ids = sys.argv[3:]\n"
        f"for i in range({per_writer}):\n"
        "    store.append_events(run_ids[writer % 2],"
        " [LogEvent(message=f'{writer}:{i}:{j}') for j in range(1 + i % 3)])\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code, str(store.runs_dir), str(w), *run_ids], cwd=REPO)
        for w in range(writers)
    ]
    # This process writes at the same time, through its own connection.
    for i in range(per_writer):
        store.append_events(run_ids[0], [LogEvent(message=f"main:{i}")])
    assert [p.wait(timeout=60) for p in processes] == [0] * writers
    assert store.integrity_check() == "ok"
    _check_writes(store, run_ids, writers, per_writer, extra={run_ids[0]: per_writer})


def _check_writes(
    store: RunStore, run_ids: list[str], writers: int, per_writer: int, extra: dict[str, int] | None = None
) -> None:
    expected_batch = sum(1 + i % 3 for i in range(per_writer))
    for index, run_id in enumerate(run_ids):
        events = store.events_since(run_id)
        n_writers = len([w for w in range(writers) if w % 2 == index])
        assert [seq for seq, _ in events] == list(range(1, len(events) + 1))  # no gaps, no duplicates
        logs = [e.message for _, e in events if isinstance(e, LogEvent)]
        assert len(logs) == n_writers * expected_batch + (extra or {}).get(run_id, 0)
        for writer in range(index, writers, 2):
            mine = [tuple(map(int, m.split(":")[1:])) for m in logs if m.startswith(f"{writer}:")]
            assert mine == sorted(mine) and len(mine) == expected_batch  # each writer's order kept


# ---- the run commands of the CLI ----------------------------------------------------------------
def cli(store: RunStore, *argv: str) -> int:
    import argparse

    from lab.cli.runs import add_run_commands

    parser = argparse.ArgumentParser(prog="lab")
    add_run_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.runs_dir = str(store.runs_dir)
    return args.handler(args)


def test_cli_runs_and_show_print_json_for_scripts(store: RunStore, capsys) -> None:
    import json

    old = make_run(store, "older")
    per_label = [{"label": "pos", "precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2, "extra": 1}]
    store.finish(old, "completed", metrics={"accuracy": 0.75}, per_label=per_label)
    new = make_run(store, "newer")
    assert cli(store, "runs", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["name"], r["status"]) for r in listed] == [
        (new, "newer", "queued"),
        (old, "older", "completed"),
    ]
    assert cli(store, "show", "older", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "completed" and shown["metrics"] == {"accuracy": 0.75}
    assert shown["per_label"] == [{"label": "pos", "precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2}]
    assert shown["config"]["name"] == "older"
    assert cli(store, "runs") == 0 and cli(store, "show", old) == 0
    text = capsys.readouterr().out
    assert "newer" in text and "accuracy 0.7500" in text and "Per label" in text


def test_cli_cancel_delete_and_their_mistakes(store: RunStore, capsys) -> None:
    run_id = make_run(store, "victim")
    assert cli(store, "cancel", run_id) == 0
    assert store.get_run(run_id).cancel_requested
    store.finish(run_id, "cancelled")
    with pytest.raises(LabError, match="nothing to cancel"):
        cli(store, "cancel", run_id)
    with pytest.raises(LabError, match="No run 'nope'"):
        cli(store, "show", "nope")
    assert cli(store, "delete", "victim") == 0
    assert store.list_runs() == []
    assert "Deleted run" in capsys.readouterr().out


def test_cli_errors_are_one_line_on_stderr(store: RunStore, monkeypatch, capsys) -> None:
    from lab.cli.main import main

    monkeypatch.setenv("LAB_RUNS_DIR", str(store.runs_dir))
    assert main(["show", "../../etc"]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "No run" in err


def test_a_run_whose_last_events_cannot_be_written_still_ends_with_the_stores_error(
    store: RunStore, monkeypatch
) -> None:
    """SQLite busy past its timeout or full while the sink writes the last events: the run must not
    stay `running` while its owner lives; it fails and says the store could not be written."""
    import sqlite3

    from lab.launch.execute import execute_run
    from lab.launch.scripted import scripted_train

    def refuse(self, run_id, events):
        raise sqlite3.OperationalError("database or disk is full")

    run_id = store.create_run(RunConfig(name="steps=3")).id
    monkeypatch.setattr(RunStore, "append_events", refuse)
    assert execute_run(store, run_id, scripted_train, threading.Event()) == "failed"
    run = RunStore(store.runs_dir).get_run(run_id)
    assert run.status == "failed"
    assert run.message.startswith("The disk is full: free some space")


def test_a_yaml_config_with_a_train_file_flag_records_the_file_as_the_dataset(
    store: RunStore, tmp_path: Path, sentiment_csv: Path
) -> None:
    from lab.cli.flags import config_from_args
    from lab.cli.main import build_parser

    yaml_path = tmp_path / "imdb.yaml"
    RunConfig().save(yaml_path)  # dataset: imdb
    args = build_parser().parse_args(["train", str(yaml_path), "--train-file", str(sentiment_csv)])
    config = config_from_args(args)
    assert config.data.dataset == "" and config.data.train_file == str(sentiment_csv)
    assert store.create_run(config).dataset == "sentiment.csv"
    both = RunConfig()
    both.data.train_file = str(sentiment_csv)  # a config naming both trains on the file: say so
    assert store.create_run(both).dataset == "sentiment.csv"


def test_a_store_made_before_groups_gains_the_column_and_keeps_its_runs(tmp_path):
    """Version 1 stores had no group_name: opening one adds it, and old runs read as ungrouped."""
    import sqlite3

    from lab.config import RunConfig

    store = RunStore(tmp_path)
    old = store.create_run(RunConfig(name="before groups"))
    store.close()
    with sqlite3.connect(tmp_path / "lab.db") as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN group_name")
    store = RunStore(tmp_path)
    assert store.get_run(old.id).group_name == ""
    grouped = store.create_run(RunConfig(name="in a group"), group="compare x")
    assert [run.id for run in store.list_runs(group="compare x")] == [grouped.id]
    assert store.groups() == ["compare x"] and len(store.list_runs()) == 2


def test_a_read_survives_the_store_file_appearing_in_the_middle_of_it(tmp_path: Path, monkeypatch) -> None:
    """Another process creates the store just after this handle opened its empty stand-in: the read in
    flight must finish on the connection it started with (it failed with "Cannot operate on a closed
    database", seen when 30 students' first launches raced the store's creation)."""
    reader = RunStore(tmp_path)
    reader.close()
    readable_runs = connection.readable_runs

    def another_process_creates_the_store(conn):
        monkeypatch.setattr(connection, "readable_runs", readable_runs)
        make_run(RunStore(tmp_path), "written-meanwhile")
        return readable_runs(conn)

    monkeypatch.setattr(connection, "readable_runs", another_process_creates_the_store)
    with pytest.raises(LabError, match="No run with id 'nope'"):
        reader.get_run("nope")
    assert [run.name for run in reader.list_runs()] == ["written-meanwhile"]
