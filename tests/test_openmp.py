"""lab.openmp: the calling thread's idle OpenMP workers are given back and come back when needed."""
import os
import threading

import pytest
import torch

from lab.openmp import loaded_libgomp, release_openmp_team


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _parallel_kernel() -> torch.Tensor:
    return torch.ones(4_000_000).add_(1)  # far above ATen's grain size: runs on the OpenMP team


@pytest.fixture
def two_threads():
    if loaded_libgomp() is None or (os.cpu_count() or 1) < 2:
        pytest.skip("needs torch on GNU OpenMP (Linux) and two cores")
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_release_frees_the_callers_workers_and_kernels_still_work(two_threads):
    _parallel_kernel()
    with_team = _threads()
    assert release_openmp_team()
    assert _threads() == with_team - 1  # the one worker of a 2-thread team has ended
    assert float(_parallel_kernel().sum()) == 8_000_000.0
    assert _threads() == with_team  # the next parallel kernel started a new worker


def test_release_leaves_other_threads_teams_alone(two_threads):
    ready, done = threading.Event(), threading.Event()

    def other_thread():
        _parallel_kernel()
        ready.set()
        done.wait(10)

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        ready.wait(10)
        _parallel_kernel()
        before = _threads()
        assert release_openmp_team()
        assert _threads() == before - 1  # only this thread's worker
    finally:
        done.set()
        thread.join()
