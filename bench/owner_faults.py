"""Owners a reader cannot look at, as rows of `python -m bench.reliability` (through bench/store_faults.py):
a live owner in another PID namespace with the same hostname, an owner whose clock is 6 minutes behind,
and a live run another process wrongly marked interrupted. The namespace is real (`unshare -p`) as root,
else named in the owner's identity.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench.rows import Row

REPO = Path(__file__).resolve().parents[1]


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# An owner process that claims a run and lives on; `patch` stages where it runs as a reader sees it.
OWNER = """
import sys, time
sys.path.insert(0, {repo!r})
{patch}
from lab.config import RunConfig
from lab.runs.store import RunStore
store = RunStore(sys.argv[1])
run_id = store.create_run(RunConfig(name="owned elsewhere")).id
store.mark_running(run_id)
print(run_id, flush=True)
time.sleep(120)
"""
OTHER_NAMESPACE = "import lab.runs.owner as owner; owner.pid_namespace = lambda: '4026599999'"
# A host whose clock is behind, as a reader sees it: another hostname (so its process cannot be looked at)
# and time.time() 6 minutes late.
CLOCK_BEHIND = (
    "import socket; socket.gethostname = lambda: 'other-host'; _real = time.time; time.time = lambda: _real() - 360"
)


def _start_owner(runs_dir: Path, patch: str, prefix: list[str]) -> tuple[subprocess.Popen[str], str]:
    code = OWNER.format(repo=str(REPO), patch=patch)
    owner = subprocess.Popen([*prefix, sys.executable, "-c", code, str(runs_dir)], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    return owner, owner.stdout.readline().strip()


def _unshare_prefix() -> list[str]:
    if not _as_root() or shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "-p", "-f", "--mount-proc", "true"], capture_output=True)
    return ["unshare", "-p", "-f", "--kill-child", "--mount-proc"] if probe.returncode == 0 else []


def scenario_owner_in_another_pid_namespace(work: Path) -> Row:
    from lab.runs.store import RunStore

    runs_dir = work / "namespace"
    RunStore(runs_dir).close()
    prefix = _unshare_prefix()
    owner, run_id = _start_owner(runs_dir, "" if prefix else OTHER_NAMESPACE, prefix)
    try:
        seen = RunStore(runs_dir).list_runs()[0].status
        with sqlite3.connect(runs_dir / "lab.db") as conn:  # its heartbeat, 400 s old by the store's clock
            conn.execute("UPDATE runs SET heartbeat_at = heartbeat_at - 400 WHERE id = ?", (run_id,))
        stale = RunStore(runs_dir).get_run(run_id).status
    finally:
        owner.kill()
        owner.wait()
    where = "unshare -p (its pid is 1 there)" if prefix else "an identity naming another PID namespace"
    return Row(
        f"Live owner in another PID namespace, same hostname ({where})",
        "its run stays running while it beats; interrupted once its heartbeat is 5 minutes old",
        f"while alive: {seen}; heartbeat 400 s old: {stale}",
        seen == "running" and stale == "interrupted",
    )


def scenario_owner_clock_behind(work: Path) -> Row:
    from lab.runs.store import RunStore

    runs_dir = work / "clock"
    RunStore(runs_dir).close()
    owner, run_id = _start_owner(runs_dir, f"{OTHER_NAMESPACE}\n{CLOCK_BEHIND}", [])
    try:
        seen = RunStore(runs_dir).get_run(run_id).status
    finally:
        owner.kill()
        owner.wait()
    return Row(
        "Owner whose clock is 6 minutes behind (judged by its heartbeat)",
        "its run stays running: heartbeats are timed by the store's clock",
        f"while alive: {seen}",
        seen == "running",
    )


def scenario_finish_after_a_false_interrupt(work: Path) -> Row:
    from lab.config import RunConfig
    from lab.runs.store import RunStore

    runs_dir = work / "false-interrupt"
    store = RunStore(runs_dir)
    run_id = store.create_run(RunConfig(name="mine")).id
    store.mark_running(run_id)
    judge = (
        "import sys; sys.path.insert(0, sys.argv[2]); from lab.runs.owner import Owner;"
        "Owner.is_dead = lambda self, *args: True; from lab.runs.store import RunStore; RunStore(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", judge, str(runs_dir), str(REPO)], check=True)
    marked = store.get_run(run_id).status
    recorded = store.finish(run_id, "completed", "Finished in 3 s.", metrics={"accuracy": 0.9})
    run = store.get_run(run_id)
    passed = marked == "interrupted" and recorded and run.status == "completed" and run.metrics == {"accuracy": 0.9}
    return Row(
        "Another process wrongly marks a live run interrupted",
        "the owner's finish still records the real outcome and metrics",
        f"marked {marked}; then the owner's finish: {run.status} {run.metrics}",
        passed,
    )


OWNER_SCENARIOS: dict[str, Callable[[Path], Row]] = {
    "owner in another PID namespace": scenario_owner_in_another_pid_namespace,
    "owner's clock behind": scenario_owner_clock_behind,
    "finish after a false interrupt": scenario_finish_after_a_false_interrupt,
}
