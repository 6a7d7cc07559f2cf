"""Benchmarks of the lab. `python -m bench`: the lab's training against the textbook loop and a
bare Trainer, and the app against the CLI, on the same model, examples, seed and number of
optimizer steps (see bench/README.md); `bench.run.run_benchmark` does the same from Python.
"""
