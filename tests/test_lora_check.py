"""LoRA from scratch, checked on a real model (the tiny BERT): the adapted model starts exactly at the base
model, merging changes the logits by float round-off only, and the adapter's size is r (d_in + d_out) per
adapted matrix, as peft counts it; the New run page shows those numbers in both languages."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.config import RunConfig
from lab.errors import ConfigError, ModelError
from lab.model.lora_check import CHECKED_METHODS, check_low_rank

REPO = Path(__file__).resolve().parents[1]


def low_rank_config(model: str, method: str = "lora", task: str = "classification", **peft) -> RunConfig:
    config = RunConfig(task=task)
    config.model.name_or_path, config.peft.method = model, method
    for name, value in peft.items():
        setattr(config.peft, name, value)
    return config


@pytest.mark.parametrize("method", CHECKED_METHODS)
def test_the_adapter_starts_at_zero_and_merges_to_round_off(tiny_model_dir, method):
    check = check_low_rank(low_rank_config(tiny_model_dir, method), num_labels=3)
    assert check.start_difference == 0.0  # exactly: the zero factor adds nothing, not merely little
    assert check.moved_difference > 1e-4  # the steps moved the adapter, so the merge comparison could fail
    assert check.merge_difference < 1e-4
    assert check.matrices and all(m.counted == m.expected for m in check.matrices if m.expected is not None)


def test_the_check_holds_for_token_classification(tiny_model_dir):
    check = check_low_rank(low_rank_config(tiny_model_dir, task="ner"), num_labels=5)
    assert check.start_difference == 0.0 and check.moved_difference > 1e-4 and check.merge_difference < 1e-4


def test_lora_parameters_are_r_times_d_in_plus_d_out_as_peft_counts_them(tiny_model_dir):
    """The tiny BERT: hidden 32, feed-forward 64, 2 layers; query and value are 32 x 32, the feed-forward's
    first matrix 64 x 32 (d_out x d_in), so r = 4 gives 4 (32 + 32) = 256 and 4 (32 + 64) = 384 each."""
    import peft
    from transformers import AutoModelForSequenceClassification

    targets = ["query", "value", "intermediate.dense"]
    check = check_low_rank(low_rank_config(tiny_model_dir, r=4, target_modules=targets), num_labels=2)
    shapes = sorted((m.name, m.d_out, m.d_in, m.counted) for m in check.matrices)
    assert shapes == sorted(
        (f"encoder.layer.{layer}.{name}", d_out, 32, 4 * (32 + d_out))
        for layer in (0, 1)
        for name, d_out in (("attention.self.query", 32), ("attention.self.value", 32), ("intermediate.dense", 64))
    )
    assert check.counted_total == check.expected_total == 2 * (256 + 256 + 384)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    wrapped = peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", r=4, target_modules=targets))
    peft_count = sum(p.numel() for name, p in wrapped.named_parameters() if p.requires_grad and "lora_" in name)
    assert check.counted_total == peft_count


def test_a_model_that_cannot_load_says_so_in_one_line(tmp_path):
    with pytest.raises(ModelError, match="There is no folder"):
        check_low_rank(low_rank_config(str(tmp_path / "no" / "such" / "model")), num_labels=2)


def test_a_method_without_a_low_rank_update_is_refused(tiny_model_dir):
    with pytest.raises(ConfigError, match="not a low-rank method"):
        check_low_rank(low_rank_config(tiny_model_dir, "ia3"), num_labels=2)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_new_run_shows_the_check_for_lora_in_both_languages(tiny_model_dir, language, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from ui import i18n

    words = i18n.catalogue(language)
    # The test's side formats the widgets' options too, outside the page: it must use the page's language.
    monkeypatch.setattr(i18n, "language", lambda: language)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.query_params.update(lang=language)
    at.run()
    # The form as the page keeps it, with the tiny model chosen.
    at.session_state["form"], at.session_state["form-version"] = low_rank_config(tiny_model_dir).to_dict(), 0
    at.switch_page("pages/2_New_run.py").run()
    at.button(key="lora-check").click().run()
    assert not at.exception, [e.value for e in at.exception]
    shown = {metric.label: metric.value for metric in at.metric}
    assert shown[words["lora_check.start_label"]] == "0"
    assert float(shown[words["lora_check.merge_label"]]) < 1e-4
    # The default LoRA (r = 8) on the tiny BERT's query and value: 4 matrices of 8 (32 + 32).
    assert shown[words["lora_check.count_label"]] == "2,048"
    formulas = "\n".join(markdown.value for markdown in at.markdown)
    assert words["lora_check.start_formula.lora"] in formulas and words["lora_check.count_formula.lora"] in formulas
    captions = "\n".join(caption.value for caption in at.caption)
    assert words["lora_check.start_exact"] in captions
