"""Launch: where and how a stored run trains.

`launchers` decides where a run trains (thread, process, torchrun or Ray) from its config; `execute`
takes one queued run from start to its final status; `processes` starts a worker process and caps its
log; `worker` is what a worker process (or torchrun) runs and how a terminal trains or follows a run;
`runner` is the scheduler that runs jobs in the background, one per device at a time, in a bounded
queue, taking turns between people within their quotas (`fairness`); `personal` is the runner as one
person sees it (their runs and uploads only); `slots` says how many runs train at once and which GPUs
each sees; `ray_launcher` submits a run to a Ray cluster and follows it, `ray_worker` runs inside that
job, `ray_train` instead when one run spans nodes (Ray Train workers); `scripted` is a stand-in for the
engine, for testing all of this without a model.

May import: `lab.runs`, `lab.training` and everything below. Never `lab.groups`, `lab.views` or `lab.cli`.
"""
