"""Uploads belong to their owner: with accounts, each uploaded file is kept in a folder of its own for its
owner (`<runs dir>/uploads/<hash>/`, the owner's name in its `.owner`), and a student's run may read,
inside the runs directory, only their own uploads, the folders of their own runs (to train on from an
earlier run's saved model) and a published assignment's files: not another person's upload, nor a file
or saved model of another person's run."""

from __future__ import annotations

from pathlib import Path

from lab.config import RunConfig
from lab.errors import LabError
from lab.runs.records import Viewer
from lab.runs.store import RunStore

UPLOADS_FOLDER = "uploads"
OWNER_FILE = ".owner"  # beside an uploaded file: the account that uploaded it


def upload_owner(path: Path, runs_dir: Path) -> str:
    """Who uploaded the file at `path` ('' when it is no upload, or was uploaded before accounts)."""
    uploads = (runs_dir / UPLOADS_FOLDER).resolve()
    folder = path.resolve().parent
    if folder.parent != uploads:
        return ""
    try:
        return (folder / OWNER_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def run_folder_owner(path: Path, store: RunStore) -> str | None:
    """Whose run's folder `path` is in (None: in no run's folder, or a run that is gone)."""
    inside = store.runs_dir.resolve()
    if inside not in path.parents:
        return None
    run_id = path.relative_to(inside).parts[0]
    try:
        return store.seen_by(None).get_run(run_id).owner
    except LabError:
        return None


def check_own_data_files(config: RunConfig, store: RunStore, viewer: Viewer) -> None:
    """Refuse, in one line, a student's run that would read someone else's file or model from the runs
    directory (another person's run's saved model included); the files of a published assignment are for
    everyone."""
    if viewer.is_teacher:
        return
    from lab.accounts.assignments import assignments

    runs_dir = store.runs_dir
    inside = runs_dir.resolve()
    assigned = {
        Path(name).expanduser().resolve()
        for assignment in assignments(runs_dir)
        for name in (
            assignment.config.data.train_file,
            assignment.config.data.validation_file,
            assignment.config.data.test_file,
        )
        if name
    }
    data = (config.data.train_file, config.data.validation_file, config.data.test_file)
    for name in (*data, config.model.name_or_path):
        if not name:
            continue
        path = Path(name).expanduser().resolve()
        if inside not in path.parents or path in assigned or upload_owner(path, runs_dir) == viewer.name:
            continue
        if run_folder_owner(path, store) != viewer.name:
            raise LabError(
                f"{name} is not yours to train on: in the runs directory you may use only your own uploads "
                "and your own runs' models. Upload the file yourself.",
                code="not_your_file",
                path=name,
            )
