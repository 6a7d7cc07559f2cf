"""Run the whole comparison: every workload, every arm, `repeats` times, in this one process."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import torch

from bench.arms import APP_REFRESH_SECONDS, ArmResult, run_arm
from bench.report import app_summary, workload_summary
from bench.workloads import WORKLOADS, Settings, prepare, resolve_model, scratch_dir

ARM_ORDER = ("textbook", "trainer", "lab")


def run_benchmark(
    settings: Settings,
    workload_names: Sequence[str] = ("ner", "imdb"),
    app_workload: Optional[str] = "ner",
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Measure every arm of every workload; `app_workload` also runs the app path next to the CLI path.

    Arms of one workload take turns within each repeat (textbook, trainer, lab, app, then again), so
    a burst of load from another program on a shared machine hits all of them alike.
    """
    quiet_libraries()
    results: dict[str, Any] = {"settings": describe_settings(settings), "workloads": {}}
    with scratch_dir() as scratch:
        workdir = Path(scratch)
        model_path = resolve_model(settings.model, workdir)
        for name in workload_names:
            workload = WORKLOADS[name]
            prepared = prepare(workload, settings, model_path)
            arms = ARM_ORDER + (("app",) if name == app_workload else ())
            measured: dict[str, list[ArmResult]] = {arm: [] for arm in arms}
            for repeat in range(settings.repeats):
                for arm in arms:
                    result = run_arm(arm, prepared, settings, workdir / f"{name}-{arm}-{repeat}")
                    measured[arm].append(result)
                    log(
                        f"{name} {arm} {repeat + 1}/{settings.repeats}: "
                        f"{result.measurement.real_tokens_per_second:,.0f} real tokens/s, "
                        f"{result.measurement.seconds:.1f} s timed, {result.wall_seconds:.1f} s wall"
                    )
            results["workloads"][name] = workload_summary(workload, settings, measured)
            if "app" in measured:
                detail = app_summary(workload, settings, measured)
                results["app_vs_cli"] = detail["ratio"]
                results["app_vs_cli_detail"] = detail
    return results


def quiet_libraries() -> None:
    """Keep load reports and tokenisation progress bars out of the table (the engine does the same)."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def describe_settings(settings: Settings) -> dict[str, Any]:
    import transformers

    device_name = (
        torch.cuda.get_device_name() if settings.device == "cuda" else platform.processor() or platform.machine()
    )
    return {
        "model": settings.model,
        "device": settings.device,
        "device_name": device_name,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "warmup_steps": settings.warmup_steps,
        "timed_steps": settings.timed_steps,
        "repeats": settings.repeats,
        "seed": settings.seed,
        "peft": settings.peft,
        "compile": settings.compile,
        "peak_tflops": settings.peak_tflops or None,
        "app_refresh_seconds": APP_REFRESH_SECONDS,
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
