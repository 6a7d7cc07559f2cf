"""Launch: where and how a stored run trains.

`execute` takes one queued run from start to its final status; `worker` is what a worker process
(or torchrun) runs and how a terminal follows it; `runner` is the scheduler that runs jobs in
threads or processes, one per device at a time; `ray_executor` and `ray_worker` run a job on a Ray
cluster; `scripted` is a stand-in for the engine, for testing all of this without a model.

May import: `lab.runs`, `lab.training` and everything below. Never `lab.groups`, `lab.views` or `lab.cli`.
"""
