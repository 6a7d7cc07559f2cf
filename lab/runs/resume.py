"""Resume: turn an ended run back into a queued one that continues from its last checkpoint."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Optional

from lab.errors import LabError
from lab.events import LogEvent, ProgressEvent, StepEvent
from lab.runs.records import RunRecord
from lab.runs.store import RunStore

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Trainer writes trainer_state.json last: a checkpoint folder without it was cut off mid-save.
_CHECKPOINT_COMPLETE_MARKER = "trainer_state.json"


def last_checkpoint(folder: Path) -> Optional[Path]:
    """The newest complete `checkpoint-<step>` folder (like transformers' get_last_checkpoint, but
    skipping one a kill cut off mid-save)."""
    if not folder.is_dir():
        return None
    steps = [
        (int(m.group(1)), path)
        for path in folder.iterdir()
        if (m := _CHECKPOINT.match(path.name)) and (path / _CHECKPOINT_COMPLETE_MARKER).is_file()
    ]
    return max(steps)[1] if steps else None


def resume_refusal(run: RunRecord, trained: bool, config_path: Path | str = "its config.yaml") -> str:
    """Why `run` cannot be resumed, as one line; '' when it can. `trained`: whether it logged a training
    step. A run that failed before its first step (a bad file, a model that does not load) would fail the
    same way again: its message says what to fix. The Live page offers Resume exactly when this is ''."""
    if run.is_active:
        return f"Run {run.id} is {run.status}; only an interrupted, cancelled or failed run can be resumed."
    if run.status == "completed":
        return (
            f"Run {run.id} already completed. To train again, start a new run from its config: "
            f"python -m lab train {config_path}"
        )
    if run.status == "failed" and not trained:
        return (
            f"Run {run.id} failed before its first training step and would fail the same way again: "
            f"fix what its message says, then start a new run with python -m lab train {config_path}"
        )
    return ""


def trained_a_step(store: RunStore, run_id: str) -> bool:
    return any(isinstance(event, (StepEvent, ProgressEvent)) for _, event in store.events_since(run_id))


def prepare_resume(store: RunStore, run_id: str) -> Optional[Path]:
    """Queue an ended run again in the same record; it continues from its last checkpoint, or starts
    over (and says so) when none was written. Returns the checkpoint, or None."""
    run = store.get_run(run_id)
    trained = run.status != "failed" or trained_a_step(store, run_id)  # only a failed run's history matters
    config_path = store.run_dir(run_id) / "config.yaml"
    refusal = resume_refusal(run, trained, config_path)
    if refusal:
        raise LabError(refusal)
    if not config_path.is_file():  # refused before requeue, which would clear how the run ended
        ended = f"{run.status}: {run.message}" if run.message else run.status
        raise LabError(
            f"Run {run_id} cannot be resumed: its folder {config_path.parent} (with config.yaml) was deleted. "
            f"How it ended stays in its record ({ended})."
        )
    output_dir = store.output_dir(run)
    checkpoints = output_dir / "checkpoints"
    checkpoint = last_checkpoint(checkpoints)
    for partial in checkpoints.glob("checkpoint-*"):  # cut off mid-save: Trainer would trip over them
        if partial.is_dir() and not (partial / _CHECKPOINT_COMPLETE_MARKER).is_file():
            shutil.rmtree(partial, ignore_errors=True)
    (output_dir / "report.json").unlink(missing_ok=True)
    if checkpoint is not None:
        message = (
            f"Resuming from {checkpoint.name} (step {checkpoint.name.split('-')[1]}), with its optimizer "
            f"and scheduler state."
        )
    else:
        message = "No checkpoint was written before the run stopped: starting it over from step 0."
    store.requeue(run_id, str(checkpoint or ""), message)
    store.append_event(run_id, LogEvent(message=message, level="info" if checkpoint else "warning"))
    return checkpoint
