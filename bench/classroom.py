"""`python -m bench.classroom`: a class on one server under load, through real app sessions (figures,
never a test).

A teacher and thirty students have accounts, and the teacher has published an assignment: a tiny random
BERT (lab.model.testing) on the repository's 120-sentence sentiment CSV, a budget of a few optimizer
steps, the learning rate for students to change. `streamlit run app.py` serves the lab on 127.0.0.1, and
one headless Chromium holds a browser context (its own cookies) per student. Each student logs in through
the login form, opens the assignment on the Class board and types their own learning rate; then all
thirty press "Launch my run" at the same moment (asyncio, one click per page at once), and press it
again, `--runs-each` times in all, while LAB_QUEUED_PER_PERSON (`--limit`) lets each have only so many
waiting. The runs train for real, one at a time, in the app's job runner. While the queue drains, the
students close their tabs, and the teacher's class board and an idle student's Home page are opened again
and again in their own contexts, timed from navigation to the page drawn (Streamlit's script state back
to not running).

Printed: logins (time each), launches accepted and refused with each refusal's message, the order runs
started in (round robin: every student's k-th run before anyone's (k+1)-th), page times while the queue
drains (median and worst), the store's integrity_check, and that every accepted run completed and no
refusal left a run behind. Needs chromium (/usr/bin/chromium) and the playwright package. Offline, in a
temporary folder (`--keep DIR` keeps the runs there for a look at the board).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

STUDENT_PASSWORD = "class-pw-2026"
TEACHER_PASSWORD = "teacher-pw-2026"
ASSIGNMENT = "week 3"
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
DRAWN = "[data-testid=stApp][data-test-script-state=notRunning]"
# Every toast and alert the page shows, as it shows them, so a click's answer is read even when it fades.
WATCH = """() => { window.__answers = []; new MutationObserver(records => { for (const record of records)
  for (const node of record.addedNodes) { if (!(node instanceof Element)) continue;
    for (const el of [node, ...node.querySelectorAll('[data-testid=stToast], [data-testid=stAlert]')])
      if (el.matches('[data-testid=stToast], [data-testid=stAlert]')) window.__answers.push(el.innerText); }
}).observe(document.body, {childList: true, subtree: true}); }"""
WAIT_MS = 180_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--runs-each", type=int, default=3, help="Times each student presses Launch.")
    parser.add_argument("--limit", type=int, default=2, help="LAB_QUEUED_PER_PERSON for the benchmark.")
    parser.add_argument("--steps", type=int, default=4, help="The assignment's budget: optimizer steps per run.")
    parser.add_argument("--keep", help="Keep the runs directory here (it must not exist).")
    args = parser.parse_args()
    if not Path(CHROMIUM).is_file():
        print("needs chromium: apt-get install -y chromium")
        return 2
    with tempfile.TemporaryDirectory(prefix="lab-classroom-") as folder:
        runs_dir = Path(args.keep) if args.keep else Path(folder) / "runs"
        os.environ.update(LAB_RUNS_DIR=str(runs_dir), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        names = prepare(runs_dir, Path(folder), args.students, args.steps)
        with serve(runs_dir, args.limit) as base:
            figures = asyncio.run(drive(base, names, args.runs_each))
        return report(runs_dir, names, figures)


def prepare(runs_dir: Path, folder: Path, students: int, steps: int) -> list[str]:
    """Accounts, the tiny model and data, and the published assignment; the students' names."""
    from lab.accounts.assignments import Assignment, publish
    from lab.accounts.book import AccountBook
    from lab.config import RunConfig
    from lab.model.testing import build_tiny_model, fixture_texts
    from lab.runs.store import RunStore

    fixtures = REPO / "tests" / "fixtures"
    config = RunConfig(name="week 3")
    config.data.dataset, config.data.train_file = "", str(fixtures / "sentiment.csv")
    config.data.train_subset, config.data.eval_subset = 0, 0
    config.model.name_or_path = build_tiny_model(folder / "tiny-bert", fixture_texts(fixtures))
    config.train.max_length, config.train.train_batch_size, config.train.logging_steps = 32, 8, 1
    config.tracking.tensorboard = False
    names = [f"student{i:02d}" for i in range(students)]
    book = AccountBook(runs_dir)
    book.add("teacher", "teacher", TEACHER_PASSWORD)
    for name in [*names, "idle"]:
        book.add(name, "student", STUDENT_PASSWORD)
    publish(runs_dir, Assignment(ASSIGNMENT, config, ["train.learning_rate", "peft.r"], steps, "teacher"))
    # The store's file before anyone reads it: a handle that first read "no store yet" fails once
    # ("closed database") when another process creates the file under it.
    with RunStore(runs_dir)._write():
        pass
    return names


class serve:
    """`streamlit run app.py` on a free port of 127.0.0.1, for the length of a `with`."""

    def __init__(self, runs_dir: Path, limit: int) -> None:
        self.runs_dir, self.limit = runs_dir, limit

    def __enter__(self) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = dict(os.environ, LAB_QUEUED_PER_PERSON=str(self.limit), OMP_NUM_THREADS="1")
        self.log = open(self.runs_dir / "server.log", "wb")  # noqa: SIM115 - closed in __exit__
        command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                   "--server.address", "127.0.0.1", "--server.port", str(port)]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                if urllib.request.urlopen(base + "/_stcore/health", timeout=2).read() == b"ok":
                    return base
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the app did not start; see {self.runs_dir / 'server.log'}")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


async def drive(base: str, names: list[str], runs_each: int) -> dict:
    from playwright.async_api import async_playwright

    from lab.runs.store import RunStore

    store = RunStore(os.environ["LAB_RUNS_DIR"])  # one handle: the coroutines share this thread's connection

    board = f"{base}/Class_board?assignment={ASSIGNMENT.replace(' ', '+')}"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        gate = asyncio.Semaphore(6)  # logins six at a time: the server verifies each password with argon2

        async def student_page(index: int, name: str):
            async with gate:
                page = await (await browser.new_context()).new_page()
                page.set_default_timeout(WAIT_MS)
                seconds = await log_in(page, board, name, STUDENT_PASSWORD)
                await page.get_by_role("button", name="Launch my run").wait_for()
                rate = page.get_by_role("spinbutton", name="Learning rate")
                await rate.fill(f"{10 ** -(2 + index % 3) * (1 + index % 5):g}")
                await rate.press("Tab")
                await page.wait_for_selector(DRAWN)
                await page.evaluate(WATCH)
                return page, seconds

        started = time.perf_counter()
        opened = await asyncio.gather(*(student_page(index, name) for index, name in enumerate(names)))
        login_seconds = [seconds for _, seconds in opened]
        print(f"{len(names)} students logged in and opened the assignment in {time.perf_counter() - started:.0f} s")

        async def press_launch(name: str, page) -> list[str]:
            answers = []
            for _ in range(runs_each):
                answers.append(await launch_once(store, name, page))
            # Then the student closes the tab: thirty open boards, each refreshing every 3 s while runs are
            # active, made each tiny run take about 50 s instead of about 10 (the figures in the README).
            await page.context.close()
            return answers

        watchers = [await teacher_and_idle(browser, base, board, who) for who in ("teacher", "idle")]
        launched = time.perf_counter()
        answers = await asyncio.gather(*(press_launch(name, page) for name, (page, _) in zip(names, opened)))
        print(f"all launches answered {time.perf_counter() - launched:.1f} s after the common click")
        times = await time_pages_while_draining(store, watchers, base, board)
        await browser.close()
    return {"logins": login_seconds, "answers": dict(zip(names, answers)), "times": times}


async def launch_once(store, name: str, page) -> str:
    """Press Launch and wait for the answer: the toast or the refusal on the page, or, should the page miss
    drawing it (a reconnect under load), a new run of this student's in the store."""
    owned = sum(run.owner == name for run in store.list_runs())
    before = await page.evaluate("() => window.__answers.length")
    await page.get_by_role("button", name="Launch my run").click()
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        said = await page.evaluate("() => window.__answers")
        if len(said) > before:
            return max(said[-1].splitlines(), key=len).strip()  # the message, not its icon's name
        runs = [run for run in store.list_runs() if run.owner == name]
        if len(runs) > owned:
            await asyncio.sleep(3)  # the toast may still come
            said = await page.evaluate("() => window.__answers")
            return said[-1].strip() if len(said) > before else f"(no toast seen) Queued run {runs[0].id}."
        await asyncio.sleep(0.5)
    return "(no answer)"


async def log_in(page, url: str, name: str, password: str) -> float:
    await page.goto(url)
    await page.get_by_label("User name").fill(name)
    await page.get_by_role("textbox", name="Password").fill(password)
    started = time.perf_counter()
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_text("Logged in as").wait_for()
    return time.perf_counter() - started


async def teacher_and_idle(browser, base: str, board: str, who: str):
    page = await (await browser.new_context()).new_page()
    page.set_default_timeout(WAIT_MS)
    password = TEACHER_PASSWORD if who == "teacher" else STUDENT_PASSWORD
    await log_in(page, board if who == "teacher" else base, who, password)
    return who, page


async def time_pages_while_draining(store, watchers, base: str, board: str) -> dict[str, list[float]]:
    """Open the teacher's board and the idle student's Home page again and again until no run is waiting
    or running; each figure is navigation to the page drawn (the board: its leaderboard on screen)."""
    times: dict[str, list[float]] = {who: [] for who, _ in watchers}

    async def load(who: str, page) -> None:
        started = time.perf_counter()
        await page.goto(board if who == "teacher" else base)
        await page.get_by_text("Logged in as").wait_for()
        if who == "teacher":
            await page.locator("[data-testid=stDataFrame]").first.wait_for()
        await page.wait_for_selector(DRAWN)
        times[who].append(time.perf_counter() - started)

    while any(run.is_active for run in store.list_runs()):
        await asyncio.gather(*(load(who, page) for who, page in watchers))
    return times


def report(runs_dir: Path, names: list[str], figures: dict) -> int:
    from lab.runs.store import RunStore

    logins = figures["logins"]
    print(
        f"logins: {len(logins)} through the login form, median {statistics.median(logins):.2f} s, "
        f"worst {max(logins):.2f} s (argon2 verifies each)"
    )
    answers: dict[str, list[str]] = figures["answers"]
    queued = {name: re.findall(r"Queued run (\S+)\.", " ".join(said)) for name, said in answers.items()}
    refusals = [text for said in answers.values() for text in said if "Queued run" not in text]
    # A toast drawn again on a rerun can be read twice: each run id counts once.
    accepted = list(dict.fromkeys(run_id for ids in queued.values() for run_id in ids))
    print(
        f"launches: {sum(map(len, answers.values()))} pressed, {len(accepted)} runs accepted, {len(refusals)} refusals "
        "read on the page (a press whose answer the page did not draw in time reads '(no answer)')"
    )
    for text in sorted(set(refusals)):
        print(f"  refused x{refusals.count(text)}: {text}")

    store = RunStore(runs_dir)
    runs = {run.id: run for run in store.list_runs()}
    lost = [run_id for run_id in accepted if run_id not in runs or runs[run_id].status != "completed"]
    strays = sorted(set(runs) - set(accepted))  # a run recorded although its launch said otherwise
    order = [runs[run_id] for run_id in sorted(accepted, key=lambda run_id: runs[run_id].started_at or 0)]
    fair = round_robin(order)
    print(f"start order round robin (every student's k-th run before anyone's (k+1)-th): {fair}")
    print("first 12 starts: " + ", ".join(run.owner for run in order[:12]))
    for who, label in (("teacher", "the teacher's class board"), ("idle", "an idle student's Home page")):
        seconds = figures["times"][who]
        if seconds:
            print(
                f"{label}: {len(seconds)} loads while the queue drained, median {statistics.median(seconds):.2f} s, "
                f"worst {max(seconds):.2f} s"
            )
    print(f"integrity_check: {store.integrity_check()}; accepted runs lost or not completed: {len(lost)}; "
          f"runs without an accepted launch: {len(strays)}")  # fmt: skip
    return 0 if fair and not lost and not strays and store.integrity_check() == "ok" else 1


def round_robin(order) -> bool:
    """Whether, in start order, no one's (k+1)-th run started while another person's k-th was waiting."""
    rank, served = {}, {}
    for run in order:
        served[run.owner] = served.get(run.owner, 0) + 1
        rank[run.id] = served[run.owner]
    return not any(
        rank[later.id] < rank[run.id] and later.created_at < run.started_at
        for position, run in enumerate(order)
        for later in order[position + 1 :]
    )


if __name__ == "__main__":
    raise SystemExit(main())
