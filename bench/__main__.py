"""`python -m bench`: the lab against the textbook loop and a bare Trainer, and the app against the CLI.

Prints a table (progress goes to stderr) and, with --json PATH, writes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

# OpenMP (libgomp) worker threads spin 300,000 times before they sleep, unless the process holds more
# OpenMP threads than cores, when they spin 100. With another program busy on the CPU, spinning
# made a MiniLM step up to 10x slower, and a thread that trains after another one (the app path)
# got the short spin and looked 10x faster than the same run on the main thread. 1,000 for every
# thread (the job runner keeps one OpenMP team alive at a time: lab.training.openmp) treats all arms alike.
# On a quiet machine it costs a little: a bare MiniLM training step took 0.37 s with the default
# spin and 0.39-0.40 s with 1,000.
# It must be set before torch loads; a value you set wins.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

# Quick / full presets: (warm-up steps, timed steps, repeats).
QUICK = (1, 8, 1)
FULL = (2, 27, 3)


def build_parser() -> argparse.ArgumentParser:
    from lab.config import PEFT_METHODS  # importing lab also decides offline mode before transformers loads

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"A short run: {QUICK[0]} warm-up + {QUICK[1]} timed steps, {QUICK[2]} repeat "
        f"(default {FULL[0]} + {FULL[1]}, {FULL[2]} repeats).",
    )
    parser.add_argument(
        "--model",
        default="minilm",
        help="minilm (offline all-MiniLM-L6-v2, default), bert-base-random (a randomly "
        "initialised bert-base for speed alone), a hub id or a local folder.",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"))
    parser.add_argument("--workloads", default="ner,imdb", help="Comma-separated: ner, imdb.")
    parser.add_argument("--steps", type=int, help="Timed optimizer steps per arm (after warm-up).")
    parser.add_argument("--warmup", type=int, help="Warm-up optimizer steps per arm, not timed (at least 1).")
    parser.add_argument("--repeats", type=int, help="Runs of every arm; figures are medians.")
    parser.add_argument("--ner-batch-size", type=int, help="Default 16.")
    parser.add_argument("--imdb-batch-size", type=int, help="Default 8.")
    parser.add_argument(
        "--peft", default="full", choices=PEFT_METHODS, help="PEFT method for every arm (default full fine-tuning)."
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile in the lab arms (GPU).")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=0.0,
        help="The device's dense peak in TFLOP/s (H100 SXM bf16: 989) to report MFU.",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores).")
    parser.add_argument("--no-app", action="store_true", help="Skip the app-vs-CLI comparison.")
    parser.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="The lab arms write no TensorBoard files (to measure what the tracker costs).",
    )
    parser.add_argument("--json", type=Path, help="Write the results as JSON to this file.")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from bench.report import format_table
    from bench.run import run_benchmark
    from bench.workloads import WORKLOADS, Settings
    from lab.errors import LabError
    from lab.model.device import pick_device

    warmup, steps, repeats = QUICK if args.quick else FULL
    names = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown or not names:
        raise SystemExit(f"--workloads takes {', '.join(WORKLOADS)}; got {args.workloads!r}.")
    sizes = tuple((name, size) for name, size in (("ner", args.ner_batch_size), ("imdb", args.imdb_batch_size)) if size)
    settings = Settings(
        model=args.model,
        device=args.device,
        warmup_steps=_given(args.warmup, warmup),
        timed_steps=_given(args.steps, steps),
        repeats=_given(args.repeats, repeats),
        peft=args.peft,
        compile=args.compile,
        peak_tflops=args.peak_tflops,
        batch_sizes=sizes,
        tensorboard=not args.no_tensorboard,
    )
    if settings.warmup_steps < 1 or settings.timed_steps < 1 or settings.repeats < 1:
        raise SystemExit("--warmup, --steps and --repeats must be at least 1.")
    try:
        pick_device(args.device)
    except LabError as exc:
        raise SystemExit(str(exc)) from None
    torch.set_num_threads(args.threads)
    results = run_benchmark(
        settings, names, app_workload=None if args.no_app else "ner" if "ner" in names else names[0]
    )
    print(format_table(results, settings))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
        print(f"\nResults written to {args.json}")
    return 0


def _given(value: Optional[int], default: int) -> int:
    return default if value is None else value


if __name__ == "__main__":
    sys.exit(main())
