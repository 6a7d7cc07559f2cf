"""Runs: the run store, the one seam between every way a run trains and every way it is read.

`store` keeps every run (config, status, events) in SQLite (`schema`) and a folder per run; `records`
is the row readers see and how run ids are made; `owner` tells whether the process that owns a run
is still alive; `sink` buffers a run's events into the store; `resume` turns an ended run back into
a queued one.

May import: the top-level modules. Never `lab.launch` or anything above.
"""
