"""The pre-flight estimate on the pages that queue runs: the Home cards, Compare methods, Sweeps.

Each estimate is computed once per config in the background (lab.views.estimates), so a page draws at
once; while one is on its way, its line redraws itself every ESTIMATE_REFRESH_SECONDS until it is in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st

from lab.config import RunConfig
from lab.views.estimates import EstimateCache
from ui.common import wait_for_training_stack
from ui.i18n import duration, t

ESTIMATE_REFRESH_SECONDS = 2.0


@st.cache_resource(show_spinner=False)
def estimate_cache() -> EstimateCache:
    """One per server: every session shares the estimates (they depend on the machine, not the person)."""
    return EstimateCache(prepare=wait_for_training_stack)


@dataclass
class _Drawings:
    """How often a timed line has been drawn. Its first drawing is part of the page's own run: a rerun
    there would cut that run short, and a click on the button below the line would be lost (a button's
    click does not survive st.rerun). Only a redraw by the timer may rerun the page to stop the timer."""

    count: int = 0

    def by_timer(self) -> bool:
        self.count += 1
        return self.count > 1


def card_estimate(config: RunConfig) -> None:
    """A one-click card's time on this machine, in place of a promise made for another machine."""
    pending = estimate_cache().get(config) is None and not estimate_cache().ready(config)
    st.fragment(_card_line, run_every=ESTIMATE_REFRESH_SECONDS if pending else None)(config, pending, _Drawings())


def _card_line(config: RunConfig, was_pending: bool, drawings: _Drawings) -> None:
    cache = estimate_cache()
    found = cache.get(config)
    by_timer = drawings.by_timer()
    if found is not None:
        if was_pending and by_timer:
            st.rerun()  # the whole page once, without the timer
        st.caption(t("home.estimate", time=duration(found.total_seconds), device=found.device))
    elif not cache.ready(config):
        st.caption(t("home.estimating"))


def group_estimate(configs: Sequence[RunConfig], slots: int) -> None:
    """What a comparison or a sweep will take on this machine, before it is queued."""
    pending = estimate_cache().plan(configs, slots).seconds is None
    timer = ESTIMATE_REFRESH_SECONDS if pending else None
    st.fragment(_group_line, run_every=timer)(list(configs), slots, pending, _Drawings())


def _group_line(configs: list[RunConfig], slots: int, was_pending: bool, drawings: _Drawings) -> None:
    planned = estimate_cache().plan(configs, slots)
    by_timer = drawings.by_timer()
    if planned.seconds is None:
        st.caption(t("estimate.waiting", runs=planned.runs))
        return
    if was_pending and by_timer:
        st.rerun()
    if planned.failed == planned.runs:
        return  # no run could be estimated: launching says why
    st.caption(
        t("estimate.group", time=duration(planned.seconds), runs=planned.runs, slots=slots, device=planned.device)
    )
