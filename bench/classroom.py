"""`python -m bench.classroom`: a class on one server under load (figures, never a test).

Thirty students and a teacher have accounts, and the teacher has published an assignment. Each student
logs in through the app's login form and opens the class board (real Streamlit sessions, `AppTest`, one
after another: AppTest sessions do not run side by side); then all thirty launch at the same moment from
thirty threads, each with their own learning rate, through what the board's Launch button calls
(`student_config`, `PersonalRunner.submit`), each asking for more runs than the per-person queue limit
allows. The runs train with the scripted stand-in engine (lab.launch.scripted: five short steps, no
model), so the queue drains in seconds on one slot. Meanwhile the teacher's class board and an idle
student's Home page are opened again and again (real app sessions) and timed.

Printed: logins (time each), runs accepted and refused (every refusal one line naming the limit), the
order runs started in (each student's first run before anyone's second), page times while the queue
drains (median and worst), and at the end the store's integrity_check and that no accepted run is lost.
Runs offline in a temporary folder. `--students N`, `--runs-each K`, `--limit L` change the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

STUDENT_PASSWORD = "class-pw-2026"
TEACHER_PASSWORD = "teacher-pw-2026"
REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--runs-each", type=int, default=3, help="Runs each student tries to launch.")
    parser.add_argument("--limit", type=int, default=1, help="LAB_QUEUED_PER_PERSON for the benchmark.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lab-classroom-") as folder:
        os.environ["LAB_RUNS_DIR"] = str(Path(folder) / "runs")
        os.environ["HF_HUB_OFFLINE"] = "1"
        return run(Path(folder) / "runs", args.students, args.runs_each, args.limit)


def run(runs_dir: Path, students: int, runs_each: int, limit: int) -> int:
    from streamlit.testing.v1 import AppTest

    from lab.accounts.assignments import Assignment, publish, student_config
    from lab.accounts.book import AccountBook
    from lab.config import RunConfig
    from lab.errors import LabError
    from lab.launch.fairness import Quotas
    from lab.launch.personal import PersonalRunner
    from lab.launch.runner import JobRunner
    from lab.launch.scripted import scripted_train
    from lab.runs.records import Viewer
    from lab.runs.store import RunStore

    names = [f"student{i:02d}" for i in range(students)]
    book = AccountBook(runs_dir)
    book.add("teacher", "teacher", TEACHER_PASSWORD)
    for name in names:
        book.add(name, "student", STUDENT_PASSWORD)
    assignment = publish(runs_dir, Assignment("week 3", RunConfig(), ["train.learning_rate"], 40, "teacher"))

    def page(path: str, **query: str) -> tuple[AppTest, float]:
        started = time.perf_counter()
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
        at.query_params.update(query)
        if path != "app.py":
            at.run()
            at.switch_page(path)
        at.run()
        return at, time.perf_counter() - started

    page("app.py")  # the first session pays the imports; not a figure
    login_seconds = []
    for name in names:
        at, _ = page("app.py")
        started = time.perf_counter()
        at.text_input(key="auth-name").input(name)
        at.text_input(key="auth-password").input(STUDENT_PASSWORD)
        (submit,) = [button for button in at.button if button.proto.is_form_submitter]
        submit.click().run()
        login_seconds.append(time.perf_counter() - started)
        assert not at.exception and at.title[0].value != "Log in", f"{name} could not log in"
        at.switch_page("pages/9_Class_board.py").run()
        assert not at.exception and at.text_input(key="board-set-week 3-train.learning_rate"), f"{name}: no assignment"
    print(
        f"logins: {students} through the login form, median {statistics.median(login_seconds):.2f} s, "
        f"worst {max(login_seconds):.2f} s (argon2 verifies each)"
    )

    store = RunStore(runs_dir)
    runner = JobRunner(store, train_fn=scripted_train, gpu_ids=[], poll_seconds=0.02, quotas=Quotas(queued=limit))
    busy = runner.submit(RunConfig(name="warm-up,steps=100,sleep=0.02"), owner="teacher", first=True)
    accepted: dict[str, list[str]] = {name: [] for name in names}
    refusals: list[str] = []
    lock, gate = threading.Lock(), threading.Barrier(students)

    def student(name: str) -> None:
        personal = PersonalRunner(runner, Viewer(name, "student"))
        gate.wait()  # everyone presses Launch at the same moment
        for index in range(runs_each):
            try:
                rate = str(10 ** -(2 + (names.index(name) + index) % 3))
                run_id = personal.submit(student_config(assignment, {"train.learning_rate": rate}, name))
                with lock:
                    accepted[name].append(run_id)
            except LabError as exc:  # a refusal is a figure here
                with lock:
                    refusals.append(str(exc))

    threads = [threading.Thread(target=student, args=(name,)) for name in names]
    launched = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(map(len, accepted.values()))
    one_line = all("\n" not in text for text in refusals)
    kinds = {
        "over the person's limit": sum("LAB_QUEUED_PER_PERSON" in text for text in refusals),
        "queue full": sum("LAB_QUEUE_LIMIT" in text for text in refusals),
    }
    print(
        f"launches: {students * runs_each} asked at once, {total} accepted, {len(refusals)} refused "
        f"({', '.join(f'{count} {kind}' for kind, count in kinds.items())}; each one line: {one_line})"
    )
    for text in sorted(set(refusals)):
        print(f"  refusal: {text}")

    teacher_token, idle_token = book.log_in("teacher", TEACHER_PASSWORD), book.log_in(names[-1], STUDENT_PASSWORD)
    teacher_times, idle_times = [], []
    every_id = [run_id for ids in accepted.values() for run_id in ids]
    while any(store.get_run(run_id).is_active for run_id in every_id) or store.get_run(busy).is_active:
        teacher_times.append(page("pages/9_Class_board.py", session=teacher_token)[1])
        idle_times.append(page("app.py", session=idle_token)[1])
    drained = time.perf_counter() - launched
    runner.shutdown(timeout=30)

    runs = {run.id: run for run in store.list_runs()}
    lost = [run_id for run_id in every_id if runs.get(run_id) is None or runs[run_id].status != "completed"]
    order = sorted(every_id, key=lambda run_id: runs[run_id].started_at or 0)
    first_round = {runs[run_id].owner for run_id in order[:students]}
    print(
        f"queue drained in {drained:.0f} s; first {students} starts were {len(first_round)} different students "
        f"(fair: {len(first_round) == students})"
    )
    for who, times in (("teacher's class board", teacher_times), ("an idle student's Home page", idle_times)):
        print(
            f"{who}: {len(times)} loads while draining, median {statistics.median(times):.2f} s, "
            f"worst {max(times):.2f} s"
        )
    print(f"integrity_check: {store.integrity_check()}; accepted runs lost or not completed: {len(lost)}")
    return 0 if not lost and len(first_round) == students and one_line else 1


if __name__ == "__main__":
    raise SystemExit(main())
