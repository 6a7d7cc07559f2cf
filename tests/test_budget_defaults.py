"""Defaults that depend on the run's budget: a short run picks the short-budget rates the registry records, the
one-click budgets keep the rates their cards were measured with, the pre-flight warns a run shorter than what
a method needs, and the generated small sets keep their test names out of training."""

from __future__ import annotations

import csv

import pytest

from bench.small_sets import ORG_SUFFIXES, TOPICS, write_set
from lab.catalogue import catalogue
from lab.config import DataConfig, ModelConfig, PeftSettings, RunConfig, TrainConfig
from lab.data.readers import read_conll
from lab.groups.one_click import one_click_runs
from lab.methods.registry import METHODS, MethodSpec, ShortBudget
from lab.model.defaults import head_learning_rate_for, learning_rate_for, short_budget_warning
from lab.training.trainer import total_optimizer_steps

SHORT_RUN_STEPS = 45  # 240 sentences, 3 epochs of batch 16


def config_for(task: str, method: str, **train) -> RunConfig:
    return RunConfig(task=task, peft=PeftSettings(method=method), train=TrainConfig(**train))


def one_click_steps(task: str) -> tuple[RunConfig, int]:
    card = next(card for card in one_click_runs(offline=True) if card.config.task == task)
    return card.config, total_optimizer_steps(card.config, card.config.data.train_subset)


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_the_one_click_budgets_keep_the_rates_their_cards_were_measured_with(task):
    card, steps = one_click_steps(task)
    for method, spec in METHODS.items():
        config = config_for(task, method)
        assert learning_rate_for(config, steps) == spec.learning_rates[task], method
        assert head_learning_rate_for(config, steps) == head_learning_rate_for(config), method
    assert short_budget_warning(card, steps) is None


def test_the_ner_card_still_trains_lora_at_5e_3():
    card, steps = one_click_steps("ner")
    assert steps == 225
    assert learning_rate_for(config_for("ner", "lora"), steps) == 5e-3
    assert head_learning_rate_for(config_for("ner", "lora"), steps) == 1e-2


def test_a_short_run_picks_the_short_budget_rates_and_a_long_one_the_usual_ones():
    spec = MethodSpec(
        "example",
        "head",
        learning_rates={"classification": 1e-3, "ner": 5e-3},
        short_budgets={"ner": ShortBudget(below_steps=100, learning_rate=2e-3, head_learning_rate=3e-2)},
    )
    assert (spec.learning_rate("ner", SHORT_RUN_STEPS), spec.head_learning_rate("ner", SHORT_RUN_STEPS)) == (2e-3, 3e-2)
    assert (spec.learning_rate("ner", 100), spec.head_learning_rate("ner", 100)) == (5e-3, 1e-2)
    assert spec.learning_rate("ner") == 5e-3  # steps unknown (a form before the data is read): the usual rate
    assert spec.learning_rate("classification", SHORT_RUN_STEPS) == 1e-3  # no band for this task


def test_the_registry_short_budget_rates_reach_the_resolver():
    for method, spec in METHODS.items():
        for task, band in spec.short_budgets.items():
            assert band.below_steps > SHORT_RUN_STEPS, (method, task)
            config = config_for(task, method)
            expected = band.learning_rate or spec.learning_rates[task]
            assert learning_rate_for(config, SHORT_RUN_STEPS) == expected, (method, task)
            if band.head_learning_rate and method != "head":
                assert head_learning_rate_for(config, SHORT_RUN_STEPS) == max(band.head_learning_rate, expected)


def test_a_short_ner_run_gives_the_head_beside_a_frozen_encoder_a_larger_rate_and_full_fine_tuning_none():
    # Measured on ner-240 (README, "Defaults for small budgets"): 5e-2 lifted every frozen-encoder method and
    # lowered full fine-tuning; the NER card's 225 steps keep 1e-2 (the test above).
    for method in METHODS:
        head_rate = head_learning_rate_for(config_for("ner", method), SHORT_RUN_STEPS)
        assert head_rate == (1e-2 if method == "full" else 5e-2), method
    assert head_learning_rate_for(config_for("classification", "lora"), SHORT_RUN_STEPS) == 1e-2  # not measured


def test_a_rate_the_user_typed_wins_over_every_budget():
    config = config_for("ner", "lora", learning_rate=1e-4, head_learning_rate=2e-3)
    for steps in (None, 10, SHORT_RUN_STEPS, 225, 10_000):
        assert learning_rate_for(config, steps) == 1e-4
        assert head_learning_rate_for(config, steps) == 2e-3


def test_the_preflight_warns_a_run_shorter_than_the_method_needs_with_the_figure():
    measured = [(task, method, spec) for method, spec in METHODS.items() for task in spec.steps_needed]
    assert measured, "no method records the steps it needs"
    for task, method, spec in measured:
        needed = spec.steps_needed[task]
        config = config_for(task, method)
        warning = short_budget_warning(config, needed - 1)
        assert warning is not None and warning.code == "short_budget"
        assert f"needs about {needed} steps here; this run has {needed - 1}" in warning
        assert warning.lower().startswith(catalogue("en")[f"method.{method}.name"].lower())
        assert warning.params["needed"] == str(needed) and warning.params["steps"] == str(needed - 1)
        assert short_budget_warning(config, needed) is None


def test_the_warning_names_the_method_and_task_in_the_pages_language(monkeypatch):
    from ui import i18n

    warning = short_budget_warning(config_for("ner", "head"), 10)
    assert warning is not None
    assert warning.startswith("Head only on named entities (NER) needs about")  # the catalogue's English words
    assert i18n.message(warning) == warning  # an English page shows the library's sentence
    monkeypatch.setattr(i18n, "language", lambda: "zh")
    chinese = i18n.message(warning)
    assert "仅训练分类头" in chinese and "命名实体识别" in chinese and "10" in chinese
    assert not any(word in chinese for word in ("Head", "head", "NER)", "named")), chinese


def test_the_estimate_carries_the_warning_for_a_short_run(tiny_model_dir, ner_conll):
    from lab.training.estimate import estimate

    method, spec = next((m, s) for m, s in METHODS.items() if "ner" in s.steps_needed)
    config = RunConfig(
        task="ner",
        data=DataConfig(dataset="", train_file=str(ner_conll)),
        model=ModelConfig(name_or_path=tiny_model_dir),
        peft=PeftSettings(method=method),
        train=TrainConfig(train_batch_size=8, epochs=1.0, max_length=48),
    )
    result = estimate(config)
    assert result.total_steps < spec.steps_needed["ner"]
    assert result.budget_warning is not None and f"this run has {result.total_steps}" in result.budget_warning
    assert "Warning" not in result.describe() or result.warning  # the budget warning travels on its own


# ---- the generated small sets -------------------------------------------------------------------
def entity_words(path) -> tuple[set[str], set[str]]:
    """The entities of a CoNLL file as strings, and the words inside them (shared organisation suffixes aside)."""
    examples = read_conll(path)
    entities, words = set(), set()
    for tokens, tags in zip(examples.inputs, examples.labels):
        current: list[str] = []
        for token, tag in [*zip(tokens, tags), ("", "O")]:
            if tag.startswith("B-") or tag == "O":
                if current:
                    entities.add(" ".join(current))
                current = [token] if tag.startswith("B-") else []
            else:
                current.append(token)
        words |= {token for token, tag in zip(tokens, tags) if tag != "O" and token not in ORG_SUFFIXES}
    return entities, words


def test_the_ner_sets_test_names_never_occur_in_training(tmp_path):
    small = write_set("ner-240", tmp_path)
    train_entities, train_words = entity_words(small.files["train"])
    assert len(read_conll(small.files["train"]).inputs) == 240
    for split in ("validation", "test"):
        entities, words = entity_words(small.files[split])
        assert entities and not entities & train_entities, split
        assert not words & train_words, split
    assert {"PER", "LOC", "ORG"} <= {tag[2:] for tags in read_conll(small.files["test"]).labels for tag in tags}


def test_the_topic_sets_test_words_never_occur_in_training(tmp_path):
    small = write_set("topics-240", tmp_path)
    rows = {split: list(csv.DictReader(path.open())) for split, path in small.files.items()}
    assert len(rows["train"]) == 240 and {row["label"] for row in rows["test"]} == set(TOPICS)
    for label, (training_words, evaluation_words) in TOPICS.items():
        assert not set(training_words) & set(evaluation_words)
        train_texts = " ".join(row["text"] for row in rows["train"])
        assert not any(f" {word} " in train_texts for word in evaluation_words), label


def test_the_sets_are_the_same_for_the_same_seed(tmp_path):
    first, second = write_set("ner-1000", tmp_path / "a"), write_set("ner-1000", tmp_path / "b")
    assert first.files["test"].read_text() == second.files["test"].read_text()
    assert len(read_conll(first.files["train"]).inputs) == 1000
