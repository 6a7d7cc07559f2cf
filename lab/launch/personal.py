"""The job runner as one logged-in person uses it: the runs they submit are theirs (and count against
their quotas), and they cancel or resume only runs they may change (lab.runs.records.Viewer)."""

from __future__ import annotations

from typing import Any, Optional

from lab.accounts.uploads import check_own_data_files
from lab.config import RunConfig
from lab.launch.runner import JobRunner
from lab.runs.records import Viewer


class PersonalRunner:
    """What a page of the app holds for a logged-in person instead of the shared `JobRunner`."""

    def __init__(self, runner: JobRunner, viewer: Viewer) -> None:
        self.runner = runner
        self.viewer = viewer
        self.store = runner.store.seen_by(viewer)

    def submit(self, config: RunConfig, local: str = "thread", group: str = "") -> str:
        check_own_data_files(config, self.runner.store, self.viewer)
        return self.runner.submit(config, local, group, owner=self.viewer.name, first=self.viewer.is_teacher)

    def resume(self, run_id: str, local: Optional[str] = None) -> str:
        self.store.check_may_change(self.store.get_run(run_id))
        return self.runner.resume(run_id, local, first=self.viewer.is_teacher)

    def cancel(self, run_id: str) -> None:
        self.store.check_may_change(self.store.get_run(run_id))
        self.runner.cancel(run_id)

    def wait(self, run_id: str, timeout: Optional[float] = None) -> str:
        self.store.get_run(run_id)
        return self.runner.wait(run_id, timeout)

    def __getattr__(self, name: str) -> Any:  # queued(), running(), train_fn: as the shared runner
        return getattr(self.runner, name)
