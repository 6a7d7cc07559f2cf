"""Who a CLI command acts as: `--as NAME` on every command that creates or reads runs; without it the
CLI is the machine owner's tool and acts as the teacher (it sees every run)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from lab.accounts.book import AccountBook, cli_viewer
from lab.runs.records import Viewer
from lab.runs.store import RunStore, default_runs_dir

# The commands that create or read runs, and so take --as.
ACTING_COMMANDS = (
    "train",
    "compare",
    "sweep",
    "lesson",
    "runs",
    "show",
    "cancel",
    "resume",
    "export",
    "push",
    "delete",
    "handout",
)


def add_as_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as",
        dest="as_user",
        metavar="NAME",
        help="Act as this account (`python -m lab users list`): see and change only what NAME may, and own "
        "the runs made. Without it the command acts as the teacher.",
    )


def runs_dir_for(args: argparse.Namespace) -> Path:
    """The runs folder the command works in: `--runs-dir`, else the default."""
    return Path(getattr(args, "runs_dir", None) or default_runs_dir())


def viewer_for(args: argparse.Namespace) -> Optional[Viewer]:
    """The account the command acts as (`--as NAME`); None for the teacher acting without an account."""
    return cli_viewer(AccountBook(runs_dir_for(args)), getattr(args, "as_user", None))


def store_for(args: argparse.Namespace, busy_timeout: Optional[float] = None) -> RunStore:
    """The run store as the command's account sees it."""
    runs_dir = runs_dir_for(args)
    store = RunStore(runs_dir) if busy_timeout is None else RunStore(runs_dir, busy_timeout=busy_timeout)
    return store.seen_by(viewer_for(args))
