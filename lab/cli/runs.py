"""The run-history commands of the CLI: `runs`, `show`, `cancel`, `resume`, `export`, `push`, `delete`,
`handout`.

`add_run_commands(subparsers)` registers them on the main parser's subparsers; each sets
`handler=<function>`, a function taking the parsed arguments and returning the exit code. Mistakes a
user can fix raise LabError, which the CLI prints as one line. The runs directory is
`args.runs_dir` when the main parser defines it, else `LAB_RUNS_DIR`, else `./runs`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Optional

from lab.cli.acting import store_for
from lab.errors import LabError
from lab.events import (
    LABEL_ROW,
    EvalEvent,
    Event,
    LogEvent,
    ProgressEvent,
    ProjectionEvent,
    RankEvent,
    ResultEvent,
    StatusEvent,
    StepEvent,
)
from lab.launch.execute import EXIT_CODES
from lab.launch.worker import cancel_run, continue_in_foreground
from lab.runs.records import RunRecord, inert
from lab.runs.resume import prepare_resume
from lab.runs.store import RunStore


def add_run_commands(subparsers: argparse._SubParsersAction) -> None:
    runs = subparsers.add_parser("runs", help="List the runs, newest first.")
    runs.add_argument("--json", action="store_true", help="Print a JSON list of runs instead of a table.")
    runs.add_argument("--limit", type=int, default=None, help="Show only the newest N runs.")
    runs.add_argument("--group", help="Show only the runs of this group (a comparison's or a sweep's name).")
    runs.set_defaults(handler=cmd_runs)

    show = subparsers.add_parser("show", help="Show one run: status, config, final metrics per label.")
    show.add_argument("run", help="Run id, name, or the start of an id.")
    show.add_argument("--json", action="store_true", help="Print one JSON object (status, metrics, per_label, ...).")
    show.add_argument("--follow", action="store_true", help="Print the run's events as they arrive, until it ends.")
    show.add_argument("--traceback", action="store_true", help="Also print the traceback of a failed run.")
    show.set_defaults(handler=cmd_show)

    cancel = subparsers.add_parser("cancel", help="Stop a queued or running run at its next optimizer step.")
    cancel.add_argument("run", help="Run id, name, or the start of an id.")
    cancel.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="Wait up to this long for the run to stop and print its final status.",
    )
    cancel.set_defaults(handler=cmd_cancel)

    resume = subparsers.add_parser(
        "resume", help="Continue an interrupted, cancelled or failed run from its last checkpoint, in this terminal."
    )
    resume.add_argument("run", help="Run id, name, or the start of an id.")
    resume.set_defaults(handler=cmd_resume)

    export = subparsers.add_parser(
        "export", help="Export a completed run's model: ONNX, adapters merged, checked against torch with onnxruntime."
    )
    export.add_argument("run", help="Run id, name, or the start of an id.")
    export.add_argument(
        "--onnx", required=True, metavar="DIR", help="Folder for model.onnx, the tokenizer and labels.json."
    )
    export.set_defaults(handler=cmd_export)

    push = subparsers.add_parser(
        "push",
        help="Upload a completed run's model or adapter folder, with its model "
        "card, to the Hugging Face hub (token: HF_TOKEN or your login); private unless --public.",
    )
    push.add_argument("run", help="Run id, name, or the start of an id.")
    push.add_argument("repo_id", help="OWNER/NAME of the hub repository (created when it does not exist).")
    visibility = push.add_mutually_exclusive_group()
    visibility.add_argument("--public", action="store_true", help="Create the repository public: anyone can read it.")
    visibility.add_argument("--private", action="store_true", help="Create the repository private (the default).")
    push.set_defaults(handler=cmd_push)

    delete = subparsers.add_parser("delete", help="Delete an ended run: its record, events and folder.")
    delete.add_argument("run", help="Run id, name, or the start of an id.")
    delete.set_defaults(handler=cmd_delete)

    handout = subparsers.add_parser(
        "handout",
        help="Write one self-contained HTML file of a run, or of a lesson or a comparison with --group: its tables, "
        "charts (interactive offline), config and standalone script; it prints cleanly.",
    )
    handout.add_argument("run", nargs="?", help="Run id, name, or the start of an id.")
    handout.add_argument(
        "--group", help="Instead of a run: a lesson's or a comparison's group name (`runs` shows each run's group)."
    )
    handout.add_argument("--out", required=True, metavar="FILE.html", help="Where to write the handout.")
    handout.add_argument("--lang", default="en", help="The handout's language: en (default) or zh.")
    handout.set_defaults(handler=cmd_handout)


# How long a command waits for a store another process holds locked before it says so. A run in this
# terminal (resume, show --follow) waits as long as any worker.
WAIT_FOR_LOCK_SECONDS = 5.0


def open_store(args: argparse.Namespace, patient: bool = False) -> RunStore:
    """The store as the command's account (`--as`) sees it."""
    return store_for(args, busy_timeout=None if patient else WAIT_FOR_LOCK_SECONDS)


# ---- handlers -----------------------------------------------------------------------------------
def cmd_runs(args: argparse.Namespace) -> int:
    runs = open_store(args).list_runs(limit=args.limit, group=args.group)
    if args.json:
        print(json.dumps([run_summary(run) for run in runs], indent=2))
        return 0
    if not runs and args.group:
        print(f"No runs in group {args.group!r}.")
        return 0
    if not runs:
        print("No runs yet. Start one with: python -m lab train CONFIG.yaml")
        return 0
    rows = [
        (
            run.id,
            run.name,
            run.status,
            run.task,
            run.model,
            run.peft_method,
            _when(run.created_at),
            _headline(run.metrics),
        )
        for run in runs
    ]
    print(_table(("id", "name", "status", "task", "model", "peft", "created", "metrics"), rows))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lab.publish.export import export_onnx, test_texts

    store = open_store(args)
    run, model_dir = completed_model_dir(store, args.run)
    result = export_onnx(model_dir, args.onnx, test_texts(store.load_config(run.id)))
    print(
        f"exported {result.path} (dynamic batch and sequence axes; tokenizer and labels.json beside it); "
        f"onnxruntime vs torch on {result.examples} test examples: max abs logit difference "
        f"{result.max_abs_difference:.2e}"
    )
    return 0


def completed_model_dir(store: RunStore, ref: str):
    run = store.find_run(ref)
    model_dir = store.output_dir(run) / "model"
    if run.status != "completed" or not model_dir.is_dir():
        raise LabError(f"Run {run.id} is {run.status} and saved no model.")
    return run, model_dir


def cmd_push(args: argparse.Namespace) -> int:
    from lab.publish.push import push_folder

    _, model_dir = completed_model_dir(open_store(args), args.run)
    url = push_folder(model_dir, args.repo_id, private=not args.public)
    print(f"pushed {model_dir} to {url} ({'public' if args.public else 'private'})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    store = open_store(args, patient=args.follow)
    run = store.find_run(args.run)
    if args.follow:
        for _, event in store.follow(run.id):
            if line := format_event(event):
                print(line, flush=True)
        run = store.get_run(run.id)
    if args.json:
        print(json.dumps(run_details(store, run), indent=2, default=str))
    elif not args.follow:
        print(describe_run(store, run, with_traceback=args.traceback))
    return EXIT_CODES.get(run.status, 0) if args.follow else 0


def cmd_cancel(args: argparse.Namespace) -> int:
    store = open_store(args)
    run = store.find_run(args.run)
    cancel_run(store, run.id)
    print(f"Asked run {inert(run.id)} to stop; it stops at its next optimizer step.")
    deadline = time.monotonic() + args.wait
    while args.wait > 0 and time.monotonic() < deadline:
        store.recover_orphans()
        run = store.get_run(run.id)
        if not run.is_active:
            print(f"Run {inert(run.id)} is {inert(run.status)}.")
            return 0
        time.sleep(0.5)
    if args.wait > 0:
        print(f"Run {run.id} is still {store.get_run(run.id).status} after {args.wait:g} s.", file=sys.stderr)
        return 1
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    store = open_store(args, patient=True)
    run = store.find_run(args.run)
    checkpoint = prepare_resume(store, run.id)
    print(
        f"Resuming run {run.id} from {checkpoint.name}."
        if checkpoint
        else f"Run {run.id} has no checkpoint yet: starting it over from step 0.",
        file=sys.stderr,
    )
    code = continue_in_foreground(
        store, run.id, sink=lambda event: print(line, file=sys.stderr) if (line := format_event(event)) else None
    )
    run = store.get_run(run.id)
    print(inert(f"Run {run.id} {run.status}" + (f": {run.message}" if run.message else ".")))
    return code


def cmd_delete(args: argparse.Namespace) -> int:
    store = open_store(args)
    run = store.find_run(args.run)
    store.delete_run(run.id)
    print(inert(f"Deleted run {run.id} ({run.name}) and its folder."))
    return 0


def cmd_handout(args: argparse.Namespace) -> int:
    # Imported here, not at the top: plotly and the views load only for this command.
    from lab.views.run_handout import run_handout

    if not args.run and not args.group:
        raise LabError("Name what to write: a run (id, name or the start of an id) or --group NAME.")
    if args.run and args.group:
        raise LabError("Give a run or --group NAME, not both.")
    store = open_store(args)
    if args.group:
        page = group_handout(store, args.group, args.lang)
    else:
        page = run_handout(store, store.find_run(args.run).id, args.lang)
    try:
        with open(args.out, "w", encoding="utf-8") as file:
            file.write(page)
    except OSError as exc:
        raise LabError(f"Cannot write the handout to {args.out}: {exc.strerror or exc}.") from exc
    print(inert(f"wrote {args.out} ({len(page.encode('utf-8')) / 1e6:.1f} MB, plotly.js inside: opens offline)"))
    return 0


def group_handout(store: Any, group: str, language: str) -> str:
    """The handout of a lesson's or a comparison's group; any other group has none."""
    from lab.groups import compare, lessons
    from lab.views.comparison_handout import comparison_handout
    from lab.views.lesson_handout import lesson_handout

    if group.startswith(lessons.GROUP_PREFIX):
        return lesson_handout(store, group, language)
    if group.startswith(compare.GROUP_PREFIX):
        return comparison_handout(store, group, language)
    raise LabError(
        f"{group!r} is neither a lesson nor a comparison: a handout's group name starts with "
        f"{lessons.GROUP_PREFIX.strip()!r} or {compare.GROUP_PREFIX.strip()!r} (`runs` shows each run's group)."
    )


# ---- what gets printed --------------------------------------------------------------------------
def run_summary(run: RunRecord) -> dict[str, Any]:
    """One entry of `runs --json`."""
    keys = (
        "id",
        "name",
        "status",
        "message",
        "task",
        "dataset",
        "model",
        "peft_method",
        "executor",
        "num_devices",
        "created_at",
        "started_at",
        "finished_at",
        "metrics",
        "attempt",
        "group_name",
    )
    return {key: getattr(run, key) for key in keys}


def run_details(store: RunStore, run: RunRecord) -> dict[str, Any]:
    """`show --json`: the whole record, per_label rows normalised, and the config."""
    details = run.to_dict()
    details["per_label"] = [{key: row.get(key) for key in LABEL_ROW} for row in run.per_label]
    details["run_dir"] = str(store.run_dir(run.id))
    try:
        details["config"] = store.load_config(run.id).to_dict()
    except Exception:  # noqa: BLE001 - a missing or edited config must not hide the record
        details["config"] = None
    return details


def describe_run(store: RunStore, run: RunRecord, with_traceback: bool = False) -> str:
    # Each field one inert line: a name or message cannot move the cursor, recolour or fake a line.
    lines = [
        inert(f"Run {run.id}  ({run.name})"),
        inert(f"Status:   {run.status}" + (f": {run.message}" if run.message else "")),
        inert(
            f"Task:     {run.task} on {run.dataset}; model {run.model}; PEFT {run.peft_method}; "
            f"{run.executor} executor, {run.num_devices} device(s), attempt {run.attempt}"
        ),
        f"Created:  {_when(run.created_at)}   started: {_when(run.started_at)}   finished: {_when(run.finished_at)}",
        inert(f"Folder:   {store.run_dir(run.id)}"),
    ]
    if run.output_dir:
        lines.append(inert(f"Output:   {run.output_dir}"))
    if run.metrics:
        lines.append(inert("Metrics:  " + ", ".join(f"{k} {_number(v)}" for k, v in run.metrics.items())))
    if run.per_label:
        rows = [tuple(_number(row.get(key)) for key in LABEL_ROW) for row in run.per_label]
        lines += ["", "Per label (test):", _table(LABEL_ROW, rows)]
    if run.traceback and with_traceback:
        lines += ["", "Traceback:", inert(run.traceback.rstrip(), multiline=True)]
    elif run.traceback:
        lines.append(inert(f"(python -m lab show {run.id} --traceback prints the full traceback)"))
    config_path = store.run_dir(run.id) / "config.yaml"
    if config_path.is_file():
        lines += ["", "Config:", inert(config_path.read_text(encoding="utf-8").rstrip(), multiline=True)]
    return "\n".join(lines)


def format_event(event: Event) -> str:
    """One inert line per event, for following a run in a terminal; none for the per-step progress events
    (the step lines come every `logging_steps`)."""
    return inert(_event_line(event))


def _event_line(event: Event) -> str:
    if isinstance(event, ProgressEvent):
        return ""
    if isinstance(event, StepEvent):
        eta = f"  eta {event.eta_seconds:.0f}s" if event.eta_seconds is not None else ""
        total = f"/{event.max_steps}" if event.max_steps else ""
        return f"step {event.step}{total}  loss {event.loss:.4f}  lr {event.learning_rate:.2e}{eta}"
    if isinstance(event, EvalEvent):
        metrics = ", ".join(f"{k} {_number(v)}" for k, v in event.metrics.items())
        return f"eval {event.split} at step {event.step}: {metrics}"
    if isinstance(event, ResultEvent):
        if event.status != "completed":
            return f"result: {event.status} after {event.wall_seconds:.0f} s, no test metrics"
        return "result: " + ", ".join(f"{k} {_number(v)}" for k, v in event.metrics.items())
    if isinstance(event, StatusEvent):
        return f"status {event.status}" + (f": {event.message}" if event.message else "")
    if isinstance(event, LogEvent):
        return f"{event.level}: {event.message}"
    if isinstance(event, RankEvent):
        return f"adalora ranks at step {event.step}: {sum(event.ranks.values())} in {len(event.ranks)} matrices"
    if isinstance(event, ProjectionEvent):
        return ""  # points for the Live run page's projection
    return str(event.to_dict())


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    cells = [tuple(map(str, header))] + [tuple("" if c is None else inert(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _headline(metrics: dict[str, Any]) -> str:
    # The accuracy / F1 numbers people compare runs by; the details view has the rest.
    keys = [k for k in metrics if "f1" in k or "accuracy" in k][:2]
    return ", ".join(f"{k} {_number(metrics[k])}" for k in keys)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _when(timestamp: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"
