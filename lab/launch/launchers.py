"""Where a run trains: one decision, taken from the config (as Lightning Fabric's `strategy=` is).

Four launchers train the same stored run, each through `lab.launch.execute.execute_run`:

- `thread`: the engine in a thread of this process (the app's default, and a terminal's own run).
- `process`: `python -m lab train --run-id ID` in a worker process of its own, for crash isolation.
- `torchrun`: that worker through torchrun, one process per device (`train.num_devices` above 1).
- `ray`: a job on a Ray cluster (`train.executor: ray`), followed from a thread of this process.

The config key `train.executor` (`local` or `ray`) says whether this machine or a cluster trains the run;
`choose_launcher` turns it, the device count and how the caller runs local jobs into one launcher.
"""

from __future__ import annotations

import os
from typing import Literal, get_args

from lab.config import RunConfig
from lab.errors import LabError
from lab.launch.execute import TrainFn
from lab.launch.processes import worker_log
from lab.launch.ray_launcher import RayJob
from lab.runs.store import RunStore

Launcher = Literal["thread", "process", "torchrun", "ray"]
LocalLauncher = Literal["thread", "process"]
LOCAL_LAUNCHERS: tuple[str, ...] = get_args(LocalLauncher)


def choose_launcher(config: RunConfig, local: str = "thread", slots: int = 1) -> Launcher:
    """The launcher that trains `config`: Ray when the config names a cluster; torchrun for several
    devices (a thread cannot drive them), unless this process already is one of torchrun's (RANK is set);
    otherwise `local`, how the caller runs a one-device job here (`thread` or `process`). Where the caller
    trains `slots` runs at once (more than one), a one-device run gets a worker process of its own: threads
    of one process share torch's random state and its device, so side by side they would not train as
    each does alone."""
    if local not in LOCAL_LAUNCHERS:
        raise LabError(f"A local launcher is one of {', '.join(LOCAL_LAUNCHERS)}, got {local!r}.")
    if config.train.executor == "ray":
        return "ray"
    if config.train.num_devices > 1 and "RANK" not in os.environ:
        return "torchrun"
    return "process" if local == "process" or slots > 1 else "thread"


def train_in_this_process(launcher: Launcher, store: RunStore, run_id: str, engine: TrainFn) -> TrainFn:
    """What a thread of this process calls to train the run: the engine itself, or for `ray` a RayJob
    that submits the run to the cluster and follows it."""
    if launcher == "ray":
        return RayJob(run_id, worker_log(store, run_id))
    if launcher != "thread":
        raise LabError(f"A {launcher} launcher trains in a worker process, not in this one.")
    return engine
