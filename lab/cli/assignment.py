"""`python -m lab assignment publish | list | close`: a teacher's assignments from the terminal, as the
class board publishes them.

An assignment is a run config every student starts from, the settings students may change, and a budget
(the most optimizer steps a student's run trains). `publish` builds it from an optional YAML spec, then
the flags:

    config: {task: classification, data: {dataset: imdb, train_subset: 500}}   # or a run config YAML itself
    allowed: [train.learning_rate, peft.r]
    budget: 200

    python -m lab assignment publish "week 3" spec.yaml --set peft.method=lora --allow peft.r --budget 100

Publishing and closing are a teacher's: the command acts as the machine's owner, or as `--as NAME`, and
refuses a student in one line. Anyone may list.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

import yaml

from lab.accounts.assignments import Assignment, assignments, close, publish
from lab.cli.acting import add_as_flag, runs_dir_for, viewer_for
from lab.config import TASKS, RunConfig, default_config
from lab.errors import LabError
from lab.runs.records import Viewer
from lab.runs.store import RunStore

SPEC_KEYS = {"config", "allowed", "budget"}  # a YAML with none of these is a run config itself


def add_assignment_command(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "assignment",
        help="A class's assignments: publish, list, close (what the Class board page shows).",
        description="Publish an assignment (a run config, what students may change, a budget), list them, "
        "or close one (no new runs; its board stays). Publishing and closing are a teacher's.",
    )
    actions = command.add_subparsers(dest="assignment_action", required=True)
    publishing = actions.add_parser("publish", help="Publish an assignment, or a new version of one.")
    publishing.add_argument("name", help="The assignment's name, as students see it.")
    publishing.add_argument(
        "spec",
        nargs="?",
        help="A YAML: either {config: {...}, allowed: [...], budget: N} or a run config "
        "(see `python -m lab config`). Without it: the task's default config.",
    )
    publishing.add_argument(
        "--task",
        choices=TASKS,
        help="Without a spec: the task whose default config to start from (a spec names its own).",
    )
    publishing.add_argument("--dataset", help="The data every student trains on (data.dataset).")
    publishing.add_argument("--model", help="The model every student starts from (model.name_or_path).")
    publishing.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="Set any config field (repeatable)."
    )
    publishing.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="KEY[,KEY]",
        help="A setting students may change, e.g. train.learning_rate (repeatable, or comma-separated); the "
        "experiment's settings only (not data files, devices or trackers): another is refused, naming those allowed.",
    )
    publishing.add_argument(
        "--budget", type=int, help="The most optimizer steps a student's run trains (0: the config's own)."
    )
    listing = actions.add_parser("list", help="The assignments, newest first, with their runs so far.")
    closing = actions.add_parser("close", help="Take no new runs on an assignment; its board stays.")
    closing.add_argument("name")
    for parser in (publishing, listing, closing):
        add_as_flag(parser)
    command.set_defaults(handler=cmd_assignment)


def cmd_assignment(args: argparse.Namespace) -> int:
    runs_dir, viewer = runs_dir_for(args), viewer_for(args)
    if args.assignment_action == "list":
        print_assignments(runs_dir)
        return 0
    check_teacher(viewer, args.assignment_action)
    if args.assignment_action == "close":
        closed = close(runs_dir, args.name)
        print(f"Closed {closed.name!r}: it takes no new runs; its class board stays.")
        return 0
    published = publish(runs_dir, assignment_from_args(args, teacher=viewer.name if viewer else ""))
    budget = f"{published.max_steps} steps" if published.max_steps else "the config's own steps"
    print(
        f"Published {published.name!r}: {published.config.dataset_name} on {published.config.model.name_or_path}, "
        f"budget {budget}, students may change {', '.join(published.allowed) or 'nothing'}."
    )
    return 0


def check_teacher(viewer: Optional[Viewer], action: str) -> None:
    if viewer is not None and not viewer.is_teacher:
        raise LabError(f"Only a teacher may {action} an assignment; {viewer.name} is a student.")


def assignment_from_args(args: argparse.Namespace, teacher: str) -> Assignment:
    if args.spec and args.task:
        raise LabError(f"--task picks a default config when there is no spec; set task: in {args.spec} instead.")
    spec = _read_spec(args.spec) if args.spec else {}
    if spec and not SPEC_KEYS & set(spec):
        spec = {"config": spec}
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise LabError(
            f"{args.spec}: {', '.join(sorted(unknown))} is not a spec key; use {', '.join(sorted(SPEC_KEYS))}."
        )
    base = RunConfig.from_dict(spec["config"]) if "config" in spec else default_config(args.task or "classification")
    flags = [f"data.dataset={args.dataset}"] if args.dataset is not None else []
    flags += [f"model.name_or_path={args.model}"] if args.model is not None else []
    config = base.with_overrides(flags + list(args.set))
    allowed = [str(key) for key in spec.get("allowed", [])]
    allowed += [key.strip() for keys in args.allow for key in keys.split(",") if key.strip()]
    budget = args.budget if args.budget is not None else int(spec.get("budget", 0))
    return Assignment(args.name, config, list(dict.fromkeys(allowed)), budget, teacher=teacher)


def _read_spec(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise LabError(f"Cannot read {path}: {exc.strerror}.") from None
    except yaml.YAMLError as exc:
        raise LabError(f"{path} is not YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise LabError(f"{path} must hold a mapping (config / allowed / budget, or a run config).")
    return data


def print_assignments(runs_dir: Path) -> None:
    published = assignments(runs_dir)
    if not published:
        print("No assignments. A teacher publishes one with: python -m lab assignment publish NAME")
        return
    store = RunStore(runs_dir)
    for assignment in published:
        runs = store.list_runs(group=assignment.group)
        print(
            f"{assignment.name}  [{'closed' if assignment.closed else 'open'}]  "
            f"{assignment.config.dataset_name} · {assignment.config.model.name_or_path} · "
            f"budget {assignment.max_steps or '-'} · may change: {', '.join(assignment.allowed) or '-'} · "
            f"{len(runs)} run{'' if len(runs) == 1 else 's'}"
        )
