"""Untrusted inputs, as rows of `python -m bench.reliability`: a YAML alias bomb, a sweep whose every trial
fails, a Parquet bomb, a CSV field of tens of megabytes, and a submit beyond the queue's limit.

Each scenario builds its inputs in `work`, calls what the tests call (tests/test_untrusted_config.py,
tests/test_sweep.py, tests/test_bounded_data.py, tests/test_preprocessing.py, tests/test_jobs.py), and
judges what a user would see. None needs a model: the sweep's trials go through the real engine, which
fails on the missing model before it loads anything, and the queue is filled with the scripted engine.
"""

from __future__ import annotations

import contextlib
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.rows import Row
from lab.errors import one_line

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


@contextlib.contextmanager
def environment(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


# ---- a YAML alias bomb ---------------------------------------------------------------------------------
def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The nested alias bomb of a few hundred bytes that stands for width**levels strings."""
    anchors = ["&a0 [" + ",".join(["lol"] * width) + "]"]
    anchors += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "name: [" + ", ".join(anchors) + "]\n"


def scenario_alias_bomb(work: Path) -> Row:
    from lab.config import RunConfig
    from lab.errors import ConfigError

    bomb = work / "bomb.yaml"
    bomb.write_text(alias_bomb())
    size = bomb.stat().st_size
    message = "(loaded: not refused)"
    tracemalloc.start()
    started = time.perf_counter()
    try:
        RunConfig.load(bomb)
    except ConfigError as exc:
        message = str(exc)
    finally:
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    refused = "expands to more than" in message
    passed = refused and "\n" not in message and len(message) < 300 and seconds < 1.0 and peak < 50 * 2**20
    return Row(
        f"YAML alias bomb ({size} bytes, 9**9 strings) loaded as a RunConfig",
        "refused in one short line in under a second; memory bounded",
        f"{seconds * 1000:.0f} ms, peak {peak / 2**20:.1f} MB of Python memory, {len(message)} chars: "
        f"\"{one_line(message.replace(str(bomb), 'bomb.yaml'), 140)}\"",
        passed,
    )


# ---- a sweep whose trials fail ------------------------------------------------------------------------------
def scenario_failing_sweep(work: Path, trials: int = 10) -> Row:
    import lab.training.engine
    from lab.config import RunConfig
    from lab.errors import LabError
    from lab.groups.sweep import (
        MAX_CONSECUTIVE_FAILURES,
        SweepSetup,
        create_study,
        parse_param,
        run_sweep,
        runner_trial,
    )
    from lab.launch.runner import JobRunner
    from lab.runs.store import RunStore

    model = "/nonexistent/model"
    base = RunConfig.from_dict(
        {
            "task": "classification",
            "data": {"dataset": "", "train_file": str(FIXTURES / "sentiment.csv")},
            "model": {"name_or_path": model},
            "train": {"max_steps": 2, "max_length": 16, "device": "cpu"},
        }
    )
    setup = SweepSetup("missing-model", base, [parse_param("peft.r=int:4:8", base)], trials, "accuracy", pruner="none")
    store = RunStore(work / "failing-sweep")
    runner = JobRunner(store, train_fn=lab.training.engine.train, gpu_ids=[], poll_seconds=0.05)
    error, started = "(the sweep ended without an error)", time.monotonic()
    try:
        run_sweep(store, create_study(store, setup), setup, runner_trial(runner, store, poll_seconds=0.05))
    except LabError as exc:
        error = str(exc)
    finally:
        runner.shutdown(timeout=30)
    seconds = time.monotonic() - started
    head, _, last = error.partition(" (run ")  # the run id is long and says nothing to a reader of the table
    shown = f"{head}: {last.partition('): ')[2]}" if last else error
    statuses = [run.status for run in store.list_runs()]
    stopped = f"last {MAX_CONSECUTIVE_FAILURES} trials failed" in error and model in error and "\n" not in error
    passed = stopped and statuses == ["failed"] * MAX_CONSECUTIVE_FAILURES
    return Row(
        f"Sweep of {trials} trials on a model that does not exist ({model})",
        f"stops after {MAX_CONSECUTIVE_FAILURES} failed trials in a row with the last trial's error",
        f"{len(statuses)} runs ({', '.join(sorted(set(statuses))) or 'none'}) in {seconds:.1f} s: "
        f"\"{one_line(shown, 150)}\"",
        passed,
    )


# ---- a Parquet bomb -----------------------------------------------------------------------------------------
def scenario_parquet_bomb(work: Path, rows: int = 3_000_000) -> Row:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lab.data import budget
    from lab.data.readers import read_classification_file
    from lab.errors import DataError

    path = work / "bomb.parquet"
    texts = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array(["a fine film"]))
    labels = pa.DictionaryArray.from_arrays(pa.array(np.arange(rows, dtype=np.int32) % 2), pa.array(["neg", "pos"]))
    pq.write_table(pa.table({"text": texts, "label": labels}), path, compression="zstd")
    size = path.stat().st_size
    pool = pa.default_memory_pool()
    peak_before, message = pool.max_memory(), "(read: not refused)"
    started = time.perf_counter()
    try:
        read_classification_file(path, "text", "label")
    except DataError as exc:
        message = str(exc)
    seconds = time.perf_counter() - started
    grown = max(0, pool.max_memory() - peak_before)
    cap = f"{budget.MAX_ROWS:,} rows"
    passed = cap in message and str(path) in message and "\n" not in message and seconds < 2.0
    return Row(
        f"Parquet bomb ({size / 1000:.0f} kB, {rows:,} rows) as a training file",
        "refused from its metadata before rows are read, in one line naming the row cap",
        f"{seconds * 1000:.0f} ms, Arrow peak +{grown / 2**20:.1f} MB: "
        f"\"{one_line(message.replace(str(path), 'bomb.parquet'), 130)}\"",
        passed,
    )


# ---- a CSV field of tens of megabytes --------------------------------------------------------------------------
def scenario_huge_text_field(work: Path, repeats: int = 1_400_000, max_length: int = 16) -> Row:
    from lab.config import DataConfig
    from lab.data.preprocessing import tokenize_splits
    from lab.data.splits import load_splits
    from lab.model.testing import build_tiny_tokenizer, fixture_texts

    tokenizer = build_tiny_tokenizer(fixture_texts(FIXTURES))
    huge = "wonderful film " * repeats
    path = work / "huge-field.csv"
    path.write_text((FIXTURES / "sentiment.csv").read_text(encoding="utf-8") + f'"{huge}",pos\n', encoding="utf-8")
    size = path.stat().st_size

    longest = [0]
    original = type(tokenizer).__call__

    def record(this: Any, text: Any, *args: Any, **kwargs: Any) -> Any:
        items = [text] if isinstance(text, str) else list(text)
        flat = [w for item in items for w in ([item] if isinstance(item, str) else item)]
        longest[0] = max([longest[0], *map(len, flat)])
        return original(this, text, *args, **kwargs)

    started = time.monotonic()
    type(tokenizer).__call__ = record  # type: ignore[method-assign]
    try:
        splits = load_splits(DataConfig(dataset="", train_file=str(path)), "classification", 0, log=lambda m: None)
        tokenized = tokenize_splits(splits.splits, tokenizer, "classification", max_length=max_length)
    finally:
        type(tokenizer).__call__ = original  # type: ignore[method-assign]
    seconds = time.monotonic() - started
    found = [
        tokenized[name][index]["input_ids"]
        for name in splits.splits
        for index, text in enumerate(splits.splits[name]["text"])
        if len(text) > 1_000_000
    ]
    whole = tokenizer("wonderful film " * 2_000, truncation=True, max_length=max_length)["input_ids"]
    same = found == [whole]
    lengths = max(len(row["input_ids"]) for name in tokenized for row in tokenized[name])
    passed = same and longest[0] < max_length * 100 and lengths <= max_length and seconds < 60
    return Row(
        f"CSV with one {len(huge) / 1e6:.0f} MB text field ({size / 1e6:.0f} MB file), max_length {max_length}",
        "tokenised only up to what max_length holds: same tokens as the whole text cut; bounded time",
        f"read and tokenised in {seconds:.1f} s; longest text given to the tokenizer {longest[0]:,} chars; "
        f"longest sequence {lengths} tokens; tokens equal the whole text's cut {same}",
        passed,
    )


# ---- a full queue ---------------------------------------------------------------------------------------------
def scenario_queue_full(work: Path, limit: int = 2) -> Row:
    from lab.config import RunConfig
    from lab.errors import LabError
    from lab.launch.runner import QUEUE_LIMIT_ENV, JobRunner
    from lab.launch.scripted import scripted_train
    from lab.runs.store import RunStore

    store = RunStore(work / "queue-full")
    with environment(QUEUE_LIMIT_ENV, str(limit)):
        runner = JobRunner(store, train_fn=scripted_train, gpu_ids=[], poll_seconds=0.05)
    message, recorded = "(accepted: not refused)", -1
    try:
        running = runner.submit(RunConfig(name="steps=100000,sleep=0.02"))
        deadline = time.monotonic() + 30
        while store.get_run(running).status != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        for _ in range(limit):
            runner.submit(RunConfig(name="steps=1"))
        before = len(store.list_runs())
        try:
            runner.submit(RunConfig(name="steps=1"))
        except LabError as exc:
            message = str(exc)
        recorded = len(store.list_runs()) - before
    finally:
        runner.shutdown(timeout=30)
    passed = message.startswith("The queue is full") and QUEUE_LIMIT_ENV in message and recorded == 0
    return Row(
        f"Submit with {limit} runs waiting and {QUEUE_LIMIT_ENV}={limit} (scripted engine)",
        "'queue is full' error naming the setting; no run recorded for the refused submit",
        f"runs recorded by the refused submit: {recorded}; \"{one_line(message, 100)}\"",
        passed,
    )


INPUT_SCENARIOS: dict[str, Callable[[Path], Row]] = {
    "YAML alias bomb": scenario_alias_bomb,
    "sweep whose trials fail": scenario_failing_sweep,
    "Parquet bomb": scenario_parquet_bomb,
    "huge text field": scenario_huge_text_field,
    "queue full": scenario_queue_full,
}


def run_scenario(title: str, work: Path) -> Row:
    return INPUT_SCENARIOS[title](work)
