"""Runs: the run store, the one seam between every way a run trains and every way it is read.

`store` keeps every run (config, status, events) in SQLite (`schema`) and a folder per run, built on
`connection` (opening the file: reads that never write, one-line errors, backups), `event_log` (a
run's ordered events) and `liveness` (heartbeats, runs of dead owners); `compaction` thins the events
of ended runs; `records` is the row readers see and how run ids are made; `owner` tells whether the
process that owns a run is still alive; `sink` buffers a run's events into the store; `resume` turns
an ended run back into a queued one.

May import: the top-level modules. Never `lab.launch` or anything above.
"""
