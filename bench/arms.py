"""The ways of training the same model on the same examples for the same number of optimizer steps.

- `textbook`: the loop most tutorials print: pad every example to max_length, fp32, torch AdamW,
  shuffled batches, no gradient clipping.
- `trainer`: a bare `transformers.Trainer` with its default arguments and dynamic padding (the
  default collator; Hugging Face's token-classification collator for NER). Set only what the run
  needs: batch size, steps, learning rate, seed, device, no checkpoints, no progress bar.
- `lab` (the CLI path): `lab.launch.worker.run_in_foreground`, the lab's engine with its defaults, events
  written to a run store.
- `app`: the same run submitted to a `JobRunner` (training in its background thread, as the app
  does) while this thread reads the run's events once a second and builds the live view, as the
  Live run page does.

Each arm runs inside a `StepMeter` and a `PeakMemory`, which measure all of them the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from bench.meter import Measurement, PeakMemory, StepMeter, release_memory
from bench.workloads import LEARNING_RATE, PreparedWorkload, Settings

# Seconds between two reads of the run store by the app's Live run page (pages/3_Live_run.py).
APP_REFRESH_SECONDS = 1.0


@dataclass
class ArmResult:
    arm: str
    measurement: Measurement
    peak_memory_mb: Optional[float]
    wall_seconds: float  # the whole arm: model load, (lab: data load,) steps, (lab: evaluation and saving)


def run_arm(arm: str, prepared: PreparedWorkload, settings: Settings, workdir: Path) -> ArmResult:
    """Run one arm once and measure it."""
    train_fn = ARMS[arm]
    saved_tf32 = _tf32_flags()
    started = time.perf_counter()
    with (
        PeakMemory(settings.device) as memory,
        StepMeter(settings.warmup_steps, settings.total_steps, settings.device) as meter,
    ):
        train_fn(prepared, settings, workdir)
    wall = time.perf_counter() - started
    _restore_tf32(saved_tf32)  # the lab turns TF32 on for the process; the next arm must not inherit it
    result = ArmResult(arm, meter.measurement(), memory.peak_mb, wall)
    del meter  # it holds the arm's model: let it go before the next arm's memory is measured
    release_memory(settings.device)
    return result


# ---- textbook -----------------------------------------------------------------------------------
def train_textbook(prepared: PreparedWorkload, settings: Settings, workdir: Path) -> None:
    from torch.utils.data import DataLoader
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding, get_scheduler, set_seed

    from lab.data.preprocessing import MODEL_INPUTS
    from lab.model.adapting import apply_peft
    from lab.model.loading import load_model

    config, device = prepared.config, settings.device
    set_seed(settings.seed)
    model = load_model(config.model, config.task, prepared.label_names, pad_token_id=prepared.tokenizer.pad_token_id)
    model = apply_peft(model, config.peft, config.task, settings.total_steps).to(device)
    # What tutorials do: pad everything to max_length.
    pad = dict(padding="max_length", max_length=config.train.max_length)
    collator = (
        DataCollatorForTokenClassification(prepared.tokenizer, **pad)
        if config.task == "ner"
        else DataCollatorWithPadding(prepared.tokenizer, **pad)
    )
    columns = [name for name in MODEL_INPUTS if name in prepared.train.column_names]
    loader = DataLoader(
        prepared.train.select_columns(columns),
        batch_size=config.train.train_batch_size,
        shuffle=True,
        collate_fn=collator,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=settings.total_steps)
    model.train()
    completed_steps = 0
    while completed_steps < settings.total_steps:
        for batch in loader:
            batch = {name: tensor.to(device) for name, tensor in batch.items()}
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            completed_steps += 1
            if completed_steps == settings.total_steps:
                break


# ---- bare Trainer -------------------------------------------------------------------------------
def train_bare_trainer(prepared: PreparedWorkload, settings: Settings, workdir: Path) -> None:
    from transformers import DataCollatorForTokenClassification, PrinterCallback, Trainer, TrainingArguments, set_seed

    from lab.model.adapting import apply_peft
    from lab.model.loading import load_model

    config = prepared.config
    set_seed(settings.seed)
    model = load_model(config.model, config.task, prepared.label_names, pad_token_id=prepared.tokenizer.pad_token_id)
    model = apply_peft(model, config.peft, config.task, settings.total_steps)
    args = TrainingArguments(
        output_dir=str(workdir / "bare-trainer"),
        per_device_train_batch_size=config.train.train_batch_size,
        max_steps=settings.total_steps,
        learning_rate=LEARNING_RATE,
        seed=settings.seed,
        use_cpu=settings.device == "cpu",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    collator = DataCollatorForTokenClassification(prepared.tokenizer) if config.task == "ner" else None
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=prepared.train,
        processing_class=prepared.tokenizer,
        data_collator=collator,
    )
    trainer.remove_callback(PrinterCallback)  # it would print the final metrics into our table
    trainer.train()


# ---- the lab: CLI path and app path ---------------------------------------------------------------
def train_lab_cli(prepared: PreparedWorkload, settings: Settings, workdir: Path) -> None:
    from lab.launch.worker import run_in_foreground
    from lab.runs.store import RunStore

    store = RunStore(workdir / "runs")
    _, code = run_in_foreground(prepared.config, store=store)
    if code != 0:
        raise RuntimeError(f"The lab arm ended with exit code {code}: {_last_message(store)}")


def train_lab_app(prepared: PreparedWorkload, settings: Settings, workdir: Path) -> None:
    from lab.launch.runner import JobRunner
    from lab.runs.store import RunStore
    from lab.views.run_view import run_view

    store = RunStore(workdir / "runs")
    runner = JobRunner(store)
    try:
        run_id = runner.submit(prepared.config)
        while store.get_run(run_id).is_active:
            run_view(event for _, event in store.events_since(run_id))  # what the page renders from
            time.sleep(APP_REFRESH_SECONDS)
        status = store.get_run(run_id).status
    finally:
        runner.shutdown(cancel=True)
    if status != "completed":
        raise RuntimeError(f"The app arm ended {status}: {_last_message(store)}")


def _last_message(store) -> str:
    runs = store.list_runs(limit=1)
    return runs[0].message if runs else ""


ARMS: dict[str, Callable[[PreparedWorkload, Settings, Path], None]] = {
    "textbook": train_textbook,
    "trainer": train_bare_trainer,
    "lab": train_lab_cli,
    "app": train_lab_app,
}
ARM_TITLES = {"textbook": "textbook loop", "trainer": "bare Trainer", "lab": "lab (CLI)", "app": "lab (app)"}


def _tf32_flags() -> tuple[str, Any]:
    # torch >= 2.9 has one switch that transformers sets for tf32=True; older torch has two flags.
    if hasattr(torch.backends, "fp32_precision"):
        return "fp32_precision", torch.backends.fp32_precision
    return "allow_tf32", (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)


def _restore_tf32(saved: tuple[str, Any]) -> None:
    kind, value = saved
    if kind == "fp32_precision":
        torch.backends.fp32_precision = value
    else:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = value
