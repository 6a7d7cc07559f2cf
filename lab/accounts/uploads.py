"""Uploads belong to their owner: with accounts, each uploaded file is kept in a folder of its own for its
owner (`<runs dir>/uploads/<hash>/`, the owner's name in its `.owner`), and a student's run may read,
inside the runs directory, only their own uploads and a published assignment's files: not another
person's upload, nor a file or saved model of another run's folder."""

from __future__ import annotations

from pathlib import Path

from lab.config import RunConfig
from lab.errors import LabError
from lab.runs.records import Viewer

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


def check_own_data_files(config: RunConfig, runs_dir: Path, viewer: Viewer) -> None:
    """Refuse, in one line, a student's run that would read someone else's file or model from the runs
    directory (another run's saved model included); the files of a published assignment are for everyone."""
    if viewer.is_teacher:
        return
    from lab.accounts.assignments import assignments

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
        if inside in path.parents and path not in assigned and upload_owner(path, runs_dir) != viewer.name:
            raise LabError(
                f"{name} is not yours to train on: in the runs directory you may use only your own uploads. "
                "Upload the file yourself.",
                code="not_your_file",
                path=name,
            )
