"""Runs: the run store and the jobs that write into it.

`store` keeps every run (config, status, events) in SQLite (`schema`) and a folder per run; `records` is the
row readers see and how run ids are made; `owner` tells whether the process that owns a run is
still alive; `sink` buffers a run's events into the store; `execute` takes one queued run from start
to its final status; `resume` turns an ended run back into a queued one; `worker` is what a worker
process (or torchrun) runs and how a terminal follows it; `runner` is the scheduler that runs jobs in
threads or processes, one per device at a time; `one_click` holds the Home page's one-click budgets;
`compare` makes the group of runs that compares PEFT methods; `sweep` drives an Optuna study whose
trials are runs; `scripted` is a stand-in for the
engine, for testing all of this without training a model.

May import: `lab.training`, `lab.data` and the top-level modules. Never `lab.views` or `lab.cli`.
"""
