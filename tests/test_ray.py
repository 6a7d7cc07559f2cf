"""The Ray launcher against a real local Ray cluster, kept on loopback.

Ray binds several of its servers to every interface of the machine, whatever `--node-ip-address` says,
and an open Ray job API runs any code. So the tests that need a cluster run only inside a network
namespace whose one interface is loopback (`.ci/run` runs the whole suite in one:
`unshare -n -p -f --mount-proc`); elsewhere they skip, saying so. `.ci/run` starts the head there and
names it in LAB_TEST_RAY_ADDRESS; without it this module starts its own and stops it at the end. Every
run here trains the tiny BERT for real in a Ray job, its events coming back through the job's log into
the store while it trains. The follower's own tests use a stand-in for the cluster's client and run anywhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import write_keyword_csv

from lab.config import RunConfig
from lab.events import EvalEvent, LogEvent, RunResult, StepEvent
from lab.launch.ray_launcher import JOB_FILE, _Follower, connect
from lab.launch.runner import JobRunner
from lab.runs.store import RunStore

REPO = Path(__file__).resolve().parents[1]
ADDRESS_ENV = "LAB_TEST_RAY_ADDRESS"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def only_loopback() -> bool:
    """Whether this process's network namespace has no interface but loopback."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@pytest.fixture(scope="module")
def ray_address():
    if not only_loopback():
        pytest.skip(
            "Ray listens on every interface: these tests run inside a loopback-only network namespace, "
            "as .ci/run runs them (unshare -n -p -f --mount-proc)"
        )
    if os.environ.get(ADDRESS_ENV):
        yield os.environ[ADDRESS_ENV]
        return
    dashboard = _free_port()
    ports = {
        "--port": _free_port(),
        "--dashboard-port": dashboard,
        "--dashboard-agent-listen-port": _free_port(),
        "--dashboard-agent-grpc-port": _free_port(),
        "--metrics-export-port": _free_port(),
        "--ray-client-server-port": _free_port(),
    }
    command = [
        "ray",
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        "--num-cpus=2",
        "--disable-usage-stats",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    head = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 90
    while True:
        try:
            connect(address).list_jobs()
            break
        except Exception:
            if time.monotonic() > deadline or head.poll() is not None:
                head.kill()
                pytest.fail(f"the local Ray head did not come up at {address}")
            time.sleep(0.5)
    yield address
    os.killpg(head.pid, signal.SIGTERM)  # --block: the head's processes are this one's group
    try:
        head.wait(5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture
def runner(store):
    runner = JobRunner(store, gpu_ids=[])
    yield runner
    runner.shutdown(timeout=60)


def ray_config(model: str, train_file: Path, address: str, method: str = "full", **train) -> RunConfig:
    settings = {
        "max_steps": 30,
        "eval_steps": 10,
        "logging_steps": 1,
        "train_batch_size": 8,
        "max_length": 32,
        "device": "cpu",
        "executor": "ray",
        "ray_address": address,
        **train,
    }
    return RunConfig.from_dict(
        {
            "task": "classification",
            "name": "on ray",
            "data": {"dataset": "", "train_file": str(train_file)},
            "model": {"name_or_path": model},
            "peft": {"method": method},
            "train": settings,
        }
    )


@pytest.fixture(scope="module")
def keyword_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray-data") / "keyword.csv"
    write_keyword_csv(path, seed=3)
    return path


def events(store: RunStore, run_id: str, kind: type) -> list:
    return [event for _, event in store.events_since(run_id) if isinstance(event, kind)]


def wait_until(condition, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_ray_run_streams_its_events_live_and_its_model_predicts(runner, store, ray_address, keyword_csv):
    run_id = runner.submit(ray_config("minilm", keyword_csv, ray_address, "lora", max_steps=40, eval_steps=20))
    assert store.get_run(run_id).executor == "ray"
    # Steps reach the store while the job still trains: the host follows the log, not the finished job.
    wait_until(lambda: events(store, run_id, StepEvent) or not store.get_run(run_id).is_active, what="a step")
    assert store.get_run(run_id).status == "running"
    assert runner.wait(run_id, timeout=240) == "completed", store.get_run(run_id).message
    run = store.get_run(run_id)
    assert run.metrics["accuracy"] >= 0.9  # the keyword decides the label: a trained model finds it
    assert [e.step for e in events(store, run_id, EvalEvent) if e.split == "validation"] == [20, 40]
    assert any("Submitted as Ray job" in e.message for e in events(store, run_id, LogEvent))
    job = json.loads((store.run_dir(run_id) / JOB_FILE).read_text())
    assert connect(ray_address).get_job_info(job["job_id"]).metadata["lab_run_id"] == run_id
    assert "Training run" in (store.run_dir(run_id) / "worker.log").read_text()  # the job's own log, kept

    from lab.inference.predict import Predictor

    predictor = Predictor(store.output_dir(run))  # what the Playground loads
    texts = ["the film was wonderful every night", "the film was long every night"]
    assert [p.label for p in predictor.predict(texts)] == ["pos", "neg"]


def test_cancelling_a_ray_run_stops_its_job(runner, store, ray_address, tiny_model_dir, keyword_csv):
    run_id = runner.submit(
        ray_config(tiny_model_dir, keyword_csv, ray_address, max_steps=100000, eval_steps=0, epochs=1000)
    )
    wait_until(lambda: events(store, run_id, StepEvent), what="a step")
    runner.cancel(run_id)
    assert runner.wait(run_id, timeout=60) == "cancelled"
    job_id = json.loads((store.run_dir(run_id) / JOB_FILE).read_text())["job_id"]
    assert str(connect(ray_address).get_job_status(job_id).value) in ("STOPPED", "SUCCEEDED")
    assert "Cancel" in store.get_run(run_id).message


def test_a_killed_ray_job_is_interrupted_and_resumes_from_its_checkpoint(
    runner, store, ray_address, tiny_model_dir, keyword_csv
):
    config = ray_config(tiny_model_dir, keyword_csv, ray_address, max_steps=400, eval_steps=20, save_total_limit=2)
    run_id = runner.submit(config)
    checkpoints = store.run_dir(run_id) / "checkpoints"
    wait_until(
        lambda: checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*/trainer_state.json")), what="a checkpoint"
    )
    log_text = (store.run_dir(run_id) / "worker.log").read_text()
    pid = int(log_text.split(" in process ")[1].split()[0])
    os.kill(pid, signal.SIGKILL)  # what an out-of-memory killer or a lost node does to the job
    assert runner.wait(run_id, timeout=60) == "interrupted"
    assert "resume it with python -m lab resume" in store.get_run(run_id).message
    killed_at = max(e.step for e in events(store, run_id, StepEvent))

    runner.resume(run_id)
    assert runner.wait(run_id, timeout=300) == "completed", store.get_run(run_id).message
    run = store.get_run(run_id)
    assert run.attempt == 2 and run.resume_from
    resumed_from = int(Path(run.resume_from).name.split("-")[1])
    assert 0 < resumed_from <= killed_at
    assert max(e.step for e in events(store, run_id, StepEvent)) == 400


def test_the_cli_follows_a_ray_run_to_its_end(tmp_path, ray_address, tiny_model_dir, keyword_csv):
    config_path = tmp_path / "run.yaml"
    ray_config(tiny_model_dir, keyword_csv, ray_address, max_steps=20, eval_steps=10).save(config_path)
    env = dict(os.environ, LAB_RUNS_DIR=str(tmp_path / "runs"), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "lab", "train", str(config_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = RunStore(tmp_path / "runs").list_runs()
    assert run.status == "completed" and run.executor == "ray"
    assert "Submitted as Ray job" in done.stdout + done.stderr


def test_an_unreachable_cluster_fails_the_run_with_what_to_check(runner, store, tiny_model_dir, keyword_csv):
    run_id = runner.submit(ray_config(tiny_model_dir, keyword_csv, f"http://127.0.0.1:{_free_port()}"))
    assert runner.wait(run_id, timeout=60) == "failed"
    message = store.get_run(run_id).message
    assert message.startswith("Could not reach the Ray cluster at http://127.0.0.1:") and "ray status" in message


def test_a_bad_file_fails_the_ray_run_with_the_workers_own_message(
    runner, store, ray_address, tiny_model_dir, tmp_path
):
    bad = tmp_path / "no_label.csv"
    bad.write_text("text,stars\n" + "".join(f"film {i},{i % 2}\n" for i in range(40)))
    run_id = runner.submit(ray_config(tiny_model_dir, bad, ray_address))
    assert runner.wait(run_id, timeout=120) == "failed"
    run = store.get_run(run_id)
    assert "label" in run.message and "Ray job" not in run.message, run.message  # the lab's words, from the job
    assert "Traceback" in run.traceback  # the job's own traceback, kept for the Live page's details


# ---- two nodes: a head and a worker node, one CPU each, on 127.0.0.1 -----------------------------------
@dataclasses.dataclass
class TwoNodes:
    address: str  # the job API
    cluster: object  # ray.cluster_utils.Cluster
    node_ports: object  # () -> the ports a new node takes


@pytest.fixture(scope="module")
def two_node_cluster():
    """A cluster of two Ray nodes on this machine (Ray's cluster_utils)."""
    if not only_loopback():
        pytest.skip("Ray listens on every interface: two-node tests run inside a loopback-only network namespace")
    from ray.cluster_utils import Cluster

    def ports() -> dict:  # each node's own servers, beside .ci/run's head in the same namespace
        names = ("dashboard_agent_listen_port", "runtime_env_agent_port", "metrics_agent_port", "metrics_export_port")
        return {name: _free_port() for name in names} | {"node_ip_address": "127.0.0.1"}

    from ray._private.utils import read_ray_address, write_ray_address

    ci_head = read_ray_address()  # the cluster writes its own address where `ray` looks for one; put it back
    dashboard = _free_port()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "gcs_server_port": _free_port(),
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": dashboard,
            "ray_client_server_port": _free_port(),
            **ports(),
        },
    )
    try:
        cluster.add_node(num_cpus=1, **ports())
        cluster.wait_for_nodes()
        address = f"http://127.0.0.1:{dashboard}"
        wait_until(lambda: _answers(address), timeout=90, what="the two-node cluster's job API")
        yield TwoNodes(address, cluster, ports)
    finally:
        cluster.shutdown()
        if ci_head:
            write_ray_address(ci_head)


@pytest.fixture
def two_nodes(two_node_cluster) -> str:
    return two_node_cluster.address


def _answers(address: str) -> bool:
    try:
        connect(address).list_jobs()
        return True
    except Exception:
        return False


def test_a_comparison_with_two_slots_runs_as_two_jobs_at_once_one_on_each_node(
    two_nodes, tiny_model_dir, keyword_csv, tmp_path, capsys, monkeypatch
):
    from lab.cli.main import main

    ray_config(tiny_model_dir, keyword_csv, two_nodes, max_steps=12, eval_steps=6).save(tmp_path / "base.yaml")
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    argv = ["compare", str(tmp_path / "base.yaml"), "--methods", "full,lora", "--parallel", "2", "--name", "nodes"]
    assert main(argv) == 0, capsys.readouterr()
    print(capsys.readouterr().out)  # each run's start and end, for the record
    store = RunStore(tmp_path / "runs")
    first, second = store.list_runs(group="compare nodes")
    assert first.status == second.status == "completed" and first.executor == second.executor == "ray"
    assert first.started_at < second.finished_at and second.started_at < first.finished_at  # side by side
    jobs = [json.loads((store.run_dir(run.id) / JOB_FILE).read_text())["job_id"] for run in (first, second)]
    nodes = {connect(two_nodes).get_job_info(job).driver_node_id for job in jobs}
    assert len(nodes) == 2  # one CPU per node: Ray placed one job on each


def curve(store: RunStore, run_id: str) -> list[float]:
    return [event.loss for event in events(store, run_id, StepEvent)]


def data_parallel_config(model: str, data: Path, address: str, workers: int, **train) -> RunConfig:
    # The same global batch of 8 either way; unshuffled by length so both see the same batches in order.
    settings = dict(max_steps=12, eval_steps=6, logging_steps=1, group_by_length=False, warmup_ratio=0.0)
    settings |= dict(num_workers=workers, train_batch_size=8 // workers) | train
    return ray_config(model, data, address, **settings)


def test_a_two_worker_run_on_two_nodes_follows_the_one_worker_loss_curve(
    runner, store, two_nodes, tiny_model_dir, keyword_csv
):
    runs = {}
    for workers in (2, 1):
        runs[workers] = runner.submit(data_parallel_config(tiny_model_dir, keyword_csv, two_nodes, workers))
        assert runner.wait(runs[workers], timeout=300) == "completed", store.get_run(runs[workers]).message
    assert "with Ray Train: 2 workers" in (store.run_dir(runs[2]) / "worker.log").read_text()
    two, one = curve(store, runs[2]), curve(store, runs[1])
    assert len(two) == len(one) == 12
    # Measured here: the curves differ by at most 0.007 (dropout draws differ per worker), on losses near 0.69.
    assert max(abs(a - b) for a, b in zip(two, one)) < 0.03, (two, one)
    assert [e.step for e in events(store, runs[2], EvalEvent) if e.split == "validation"] == [6, 12]


def train_workers_alive(address: str) -> list:
    from ray.util.state import list_actors

    return [actor for actor in list_actors(address=address) if actor.state == "ALIVE" and "Worker" in actor.class_name]


def test_cancelling_a_two_worker_run_stops_it_on_both_nodes(runner, store, two_nodes, tiny_model_dir, keyword_csv):
    config = data_parallel_config(tiny_model_dir, keyword_csv, two_nodes, 2, max_steps=100000, eval_steps=0)
    run_id = runner.submit(config)
    wait_until(lambda: events(store, run_id, StepEvent), timeout=240, what="a step")
    runner.cancel(run_id)
    assert runner.wait(run_id, timeout=90) == "cancelled", store.get_run(run_id).message
    # Ray Train's workers went with the job: both nodes' CPUs are free for the next run.
    wait_until(lambda: not train_workers_alive(two_nodes), timeout=60, what="the Ray Train workers to end")


def test_losing_a_node_mid_run_leaves_the_run_interrupted_and_resume_finishes_it(
    runner, store, two_node_cluster, tiny_model_dir, keyword_csv
):
    config = data_parallel_config(
        tiny_model_dir, keyword_csv, two_node_cluster.address, 2, max_steps=300, eval_steps=10, save_total_limit=2
    )
    run_id = runner.submit(config)
    checkpoints = store.run_dir(run_id) / "checkpoints"
    wait_until(lambda: any(checkpoints.glob("checkpoint-*/trainer_state.json")), timeout=240, what="a checkpoint")
    cluster = two_node_cluster.cluster
    (worker_node,) = cluster.worker_nodes
    cluster.remove_node(worker_node, allow_graceful=False)  # the node and its worker die at once
    try:
        assert runner.wait(run_id, timeout=120) == "interrupted", store.get_run(run_id).message
        assert "resume it with python -m lab resume" in store.get_run(run_id).message
    finally:
        cluster.add_node(num_cpus=1, **two_node_cluster.node_ports())
        cluster.wait_for_nodes()
    runner.resume(run_id)
    assert runner.wait(run_id, timeout=300) == "completed", store.get_run(run_id).message
    run = store.get_run(run_id)
    assert run.attempt == 2 and run.resume_from
    assert max(e.step for e in events(store, run_id, StepEvent)) == 300


class _JobThatWillNotStop:
    """A cluster's client whose job of an earlier attempt keeps running, or whose cluster goes away."""

    def __init__(self, vanishes: bool = False) -> None:
        self.vanishes, self.stop_requests, self.asked = vanishes, 0, 0

    def get_job_status(self, job_id):
        self.asked += 1
        if self.vanishes and self.asked > 1:
            raise ConnectionError("the cluster went away")
        return type("Status", (), {"value": "RUNNING"})()

    def stop_job(self, job_id):
        self.stop_requests += 1


def test_a_resume_refuses_to_start_beside_an_earlier_job_that_will_not_stop(tmp_path, monkeypatch):
    from lab.errors import LabError
    from lab.launch import ray_launcher

    monkeypatch.setattr(ray_launcher, "PREVIOUS_JOB_STOP_SECONDS", 1)
    (tmp_path / JOB_FILE).write_text(json.dumps({"address": "http://x:8265", "job_id": "raysubmit_old"}))
    stubborn = _JobThatWillNotStop()
    with pytest.raises(LabError, match="ray job stop raysubmit_old"):
        ray_launcher._stop_previous_job(stubborn, tmp_path)
    assert stubborn.stop_requests == 1
    vanishing = _JobThatWillNotStop(vanishes=True)
    ray_launcher._stop_previous_job(vanishing, tmp_path)  # the submit that follows says the cluster is gone
    assert vanishing.stop_requests == 1


# ---- Ray stays on loopback ---------------------------------------------------------------------------
def listening_sockets() -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int, str]]:
    """(address, port, command line of its process) of every TCP socket listening in this namespace."""
    owners = {}
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            target = os.readlink(fd)
            if target.startswith("socket:["):
                owners[target[8:-1]] = (fd.parents[1] / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # a process or descriptor that went away meanwhile
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            address_hex, port_hex = fields[1].split(":")
            # The kernel prints the address as 32-bit words in host (little-endian) order.
            raw = b"".join(bytes.fromhex(address_hex[i : i + 8])[::-1] for i in range(0, len(address_hex), 8))
            address = ipaddress.ip_address(raw)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            found.append((address, int(port_hex, 16), owners.get(fields[9], "?")))
    return found


def test_no_process_of_the_test_cluster_listens_beyond_loopback(ray_address):
    ray_sockets = [entry for entry in listening_sockets() if "ray" in entry[2]]
    dashboard_port = int(ray_address.rsplit(":", 1)[1])
    assert dashboard_port in [port for _, port, _ in ray_sockets], ray_sockets  # the cluster is seen
    beyond = [entry for entry in ray_sockets if not entry[0].is_loopback]
    assert not beyond, f"Ray listens beyond loopback: {beyond}"


# ---- the follower, with a stand-in for the cluster's client ---------------------------------------------
class _JobClient:
    """One job's client: its log comes through the tail stream in `chunks` (cut anywhere), its status
    turns SUCCEEDED after a few polls; a whole-log read is counted. `drop_after`: the first stream drops
    after that many chunks, as a dashboard restart drops it."""

    def __init__(self, chunks: list[str], drop_after: int | None = None) -> None:
        self.chunks, self.drop_after = chunks, drop_after
        self.whole_log_reads, self.tails, self.polls = 0, 0, 0

    def get_job_status(self, job_id):
        self.polls += 1
        return type("Status", (), {"value": "SUCCEEDED" if self.polls > 5 else "RUNNING"})()

    async def tail_job_logs(self, job_id):
        self.tails += 1
        for number, chunk in enumerate(self.chunks):
            if self.tails == 1 and number == self.drop_after:
                raise RuntimeError("WebSocket connection closed unexpectedly")
            await asyncio.sleep(0.01)
            yield chunk

    def get_job_logs(self, job_id):
        self.whole_log_reads += 1
        return "".join(self.chunks)


def job_log_chunks() -> list[str]:
    step = json.dumps(StepEvent(step=1, max_steps=2, loss=0.5).to_dict())
    result = json.dumps(dataclasses.asdict(RunResult(status="completed", completed_steps=2)))
    text = (
        "Training run r1 in process 42.\n"
        f"@lab-event {step}\n"
        '@lab-event {"not": "an event"}\n'
        "@lab-event [1, 2]\n"
        f"@lab-result {result}\n"
    )
    return [text[i : i + 17] for i in range(0, len(text), 17)]  # lines arrive cut anywhere


@pytest.mark.parametrize("drop_after", [None, 3])
def test_the_follower_takes_each_line_of_the_log_once_and_keeps_stray_json_as_log(tmp_path, drop_after):
    (tmp_path / "report.json").write_text("{}")
    client, received = _JobClient(job_log_chunks(), drop_after), []
    follower = _Follower(client, "raysubmit_1", received.append, tmp_path / "worker.log", poll_seconds=0.05)
    result = follower.follow(threading.Event(), "r1", tmp_path)
    assert result.status == "completed" and result.completed_steps == 2
    assert [(type(event), event.step) for event in received] == [(StepEvent, 1)]
    assert (tmp_path / "worker.log").read_text().splitlines() == [
        "Training run r1 in process 42.",
        '@lab-event {"not": "an event"}',
        "@lab-event [1, 2]",
    ]
    if drop_after is None:
        assert client.whole_log_reads == 0 and client.tails == 1  # never the whole log again
