"""The handout buttons of the Live run, Runs and Compare pages: one HTML file of a run or a comparison
(lab.views.run_handout, lab.views.comparison_handout) in the page's language, made only when clicked."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lab.runs.records import slugify
from ui.common import wait_for_training_stack
from ui.i18n import language, t


def run_handout_button(container: Any, store: Any, run_id: str) -> None:
    from lab.views.run_handout import run_handout

    _button(container, run_handout, store, run_id, f"{run_id}-handout.html", t("handout.download_help"))


def comparison_handout_button(container: Any, store: Any, group: str) -> None:
    from lab.views.comparison_handout import comparison_handout

    help_text = t("handout.download_help_comparison")
    _button(container, comparison_handout, store, group, f"{slugify(group)}-handout.html", help_text)


def _button(container: Any, build: Callable[..., str], store: Any, what: str, file_name: str, help_text: str) -> None:
    # Made on the click, not at each rerun: a handout carries plotly.js (about 5 MB). The click's callable runs
    # outside the page's script, so it gets the language now.
    container.download_button(
        t("handout.download"),
        functools.partial(_made, build, store, what, language()),
        file_name=file_name,
        mime="text/html",
        icon=":material/description:",
        help=help_text,
        on_click="ignore",
        key=f"handout-{file_name}",
    )


def _made(build: Callable[..., str], store: Any, what: str, language_code: str) -> str:
    wait_for_training_stack()  # the standalone script's module imports transformers, which the warm-up may be importing
    return build(store, what, language_code)
