"""A sweep as the Sweeps page shows it: one row per trial (its state, value, parameters and run)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lab.errors import LabError


def trials_frame(study: Any, store: Any) -> pd.DataFrame:
    """Trial number, Optuna state, value, each searched parameter, and the run (id and status) behind it."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        run_id = trial.user_attrs.get("run_id", "")
        try:
            status = store.get_run(run_id).status if run_id else ""
        except LabError:
            status = "deleted"
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "value": trial.value,
                **trial.params,
                "run": run_id,
                "run status": status,
            }
        )
    return pd.DataFrame(rows)
