""" "Check it on this model" under a low-rank method's explainer on the New run page: LoRA from scratch
(lab.model.lora_check) measured on the form's model and settings, each result beside its formula."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lab.config import RunConfig, settings_needing_consent
from lab.errors import LabError
from lab.model.lora_check import CHECKED_METHODS, LowRankCheck
from lab.views.data_view import for_the_page, label_count
from ui.common import wait_for_training_stack
from ui.i18n import message, t
from ui.widgets import code_span, consented

CHECKED = "lora-check-checked"  # session_state: the settings checked so far, shown again on each rerun
ROUND_OFF = 1e-4  # float32 logits of a merged model agree with the unmerged ones far closer than this


@st.cache_data(show_spinner=False, max_entries=16)
def _check(settings_yaml: str, num_labels: int) -> LowRankCheck:
    wait_for_training_stack()
    from lab.model.lora_check import check_low_rank

    return check_low_rank(RunConfig.from_yaml(settings_yaml), num_labels)


def lora_check_section(config: RunConfig) -> None:
    """A button that checks the chosen low-rank method on the chosen model; nothing for other methods.
    Once checked, the same settings show their (cached) results on every rerun."""
    if config.peft.method not in CHECKED_METHODS:
        return
    with st.expander(t("lora_check.title"), icon=":material/science:"):
        st.caption(t("lora_check.caption"))
        if not consented(settings_needing_consent(config)):
            st.info(
                t("lora_check.waits_for_consent", model=code_span(config.model.name_or_path)), icon=":material/lock:"
            )
            return
        # What the check reads: the task, the model and the method's settings (the data only for its label count).
        settings_yaml = RunConfig(task=config.task, model=config.model, peft=config.peft).to_yaml()
        checked = st.session_state.setdefault(CHECKED, set())
        if st.button(t("lora_check.run"), key="lora-check", icon=":material/play_arrow:"):
            checked.add(settings_yaml)
        if settings_yaml not in checked:
            return
        try:
            with st.spinner(t("lora_check.running")):
                result = _check(settings_yaml, label_count(config.data, config.task))
        except LabError as exc:  # a model that does not load, targets it lacks, an unreadable train file
            st.error(for_the_page(message(exc)), icon=":material/error:")
            return
        except Exception as exc:  # noqa: BLE001 - the check is advice; a library surprise must not break the form
            st.warning(t("lora_check.failed", reason=f"{type(exc).__name__}: {exc}"), icon=":material/warning:")
            return
        show_check(result)


def difference(value: float) -> str:
    """A logit difference: '0' only when it is exactly zero, so round-off never reads as zero; small ones
    in scientific notation (2.4e-07), the rest with three digits (2.87)."""
    if value == 0:
        return "0"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3g}"


def show_check(result: LowRankCheck) -> None:
    """The three results of a lab.model.lora_check.LowRankCheck, each with its formula beside it."""
    method = result.method
    start_words = "lora_check.start_exact" if result.start_difference == 0 else "lora_check.start_not_exact"
    merge_words = "lora_check.merge_round_off" if result.merge_difference < ROUND_OFF else "lora_check.merge_differs"
    rows = (
        (
            t("lora_check.start_label"),
            difference(result.start_difference),
            t(f"lora_check.start_formula.{method}"),
            t(start_words),
        ),
        (
            t("lora_check.merge_label"),
            difference(result.merge_difference),
            t(f"lora_check.merge_formula.{method}"),
            t(merge_words, steps=result.optimizer_steps, moved=difference(result.moved_difference)),
        ),
    )
    for label, value, formula, verdict in rows:
        left, right = st.columns([1, 2], vertical_alignment="center")
        left.metric(label, value)
        right.markdown(formula)
        right.caption(verdict)
    expected = result.expected_total
    left, right = st.columns([1, 2], vertical_alignment="center")
    left.metric(
        t("lora_check.count_label"),
        f"{result.counted_total:,}",
        t("lora_check.count_formula_total", total=f"{expected:,}") if expected is not None else None,
        delta_color="off",
        delta_arrow="off",
    )
    right.markdown(t(f"lora_check.count_formula.{method}"))
    right.caption(t("lora_check.count_says", matrices=len(result.matrices), rank=result.rank, alpha=result.alpha))
    table = pd.DataFrame(
        {
            t("lora_check.matrix"): [matrix.name for matrix in result.matrices],
            t("lora_check.shape"): [f"{matrix.d_out} × {matrix.d_in}" for matrix in result.matrices],
            t("lora_check.counted"): [f"{matrix.counted:,}" for matrix in result.matrices],
            t("lora_check.by_formula"): [
                "–" if matrix.expected is None else f"{matrix.expected:,}" for matrix in result.matrices
            ],
        }
    )
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption(t("lora_check.took", seconds=f"{result.seconds:.1f}", tokens=result.example_tokens))
