"""lab.training.openmp: the calling thread's idle OpenMP workers are given back and come back when needed.

Each check runs in a fresh interpreter: threads left by other tests would blur the thread counts."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch  # noqa: F401 - loads the libgomp that loaded_libgomp looks for

from lab.training.openmp import loaded_libgomp

PRELUDE = """
import json, os, threading
import torch
from lab.training.openmp import release_openmp_team
torch.set_num_threads(2)
threads = lambda: len(os.listdir("/proc/self/task"))
kernel = lambda: torch.ones(4_000_000).add_(1)  # far above ATen's grain size: runs on the OpenMP team
"""


def _run(script: str) -> dict:
    if loaded_libgomp() is None or (os.cpu_count() or 1) < 2:
        pytest.skip("needs torch on GNU OpenMP (Linux) and two cores")
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_release_frees_the_callers_workers_and_kernels_still_work():
    seen = _run("""
        kernel(); with_team = threads()
        released = release_openmp_team(); after = threads()
        total = float(kernel().sum()); again = threads()
        print(json.dumps(dict(with_team=with_team, released=released, after=after, total=total, again=again)))
    """)
    assert seen["released"]
    assert seen["after"] == seen["with_team"] - 1  # the one worker of a 2-thread team has ended
    assert seen["total"] == 8_000_000.0
    assert seen["again"] == seen["with_team"]  # the next parallel kernel started a new worker


def test_release_leaves_other_threads_teams_alone():
    seen = _run("""
        ready, done = threading.Event(), threading.Event()
        def other(): kernel(); ready.set(); done.wait(30)
        thread = threading.Thread(target=other); thread.start(); ready.wait(30)
        kernel(); before = threads()
        released = release_openmp_team(); after = threads()
        done.set(); thread.join()
        print(json.dumps(dict(before=before, released=released, after=after)))
    """)
    assert seen["released"]
    assert seen["after"] == seen["before"] - 1  # only this thread's worker
