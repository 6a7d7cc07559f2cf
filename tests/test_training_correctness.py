"""Numbers a student would otherwise learn wrong: gradient accumulation, the pooler, the word-mapping
rule, a run's status, truncation and tag schemes. Each test failed before its fix."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from lab.config import DataConfig, ModelConfig, PeftSettings, RunConfig, TrainConfig
from lab.events import LogEvent, StepEvent
from lab.inference.predict import Predictor
from lab.training.engine import train


class Recorder(list):
    def __call__(self, event):
        self.append(event)

    def of(self, kind):
        return [e for e in self if isinstance(e, kind)]


def config_for(task, model_dir, data_file, method="full", pooling="auto", **train_settings):
    settings = dict(
        learning_rate=1e-2,
        train_batch_size=16,
        max_steps=5,
        logging_steps=1,
        eval_steps=1000,
        warmup_ratio=0.0,
        lr_scheduler="constant",
        max_length=48,
        seed=0,
    )
    settings.update(train_settings)
    return RunConfig(
        task=task,
        data=DataConfig(dataset="", train_file=str(data_file)),
        model=ModelConfig(name_or_path=model_dir, dropout=0.0, pooling=pooling),
        peft=PeftSettings(method=method, r=4, alpha=8, lora_dropout=0.0, num_virtual_tokens=4),
        train=TrainConfig(**settings),
    )


# ---- 1. gradient accumulation -------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["classification", "ner"])
def test_one_batch_of_16_and_two_accumulated_batches_of_8_give_the_same_losses_and_update(
    task, tiny_model_dir, sentiment_csv, ner_conll, tmp_path
):
    """SGD with momentum makes a k-fold gradient error visible in the weights, not only in the log."""
    data = ner_conll if task == "ner" else sentiment_csv
    runs = {}
    for name, batch, accumulation in (("one", 16, 1), ("accumulated", 8, 2)):
        events = Recorder()
        config = config_for(
            task,
            tiny_model_dir,
            data,
            optimizer="sgd",
            group_by_length=False,
            train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
        )
        train(config, tmp_path / name, sink=events)
        model = Predictor(tmp_path / name).model
        runs[name] = ([e.loss for e in events.of(StepEvent)], {k: v.clone() for k, v in model.state_dict().items()})
    (losses_one, weights_one), (losses_acc, weights_acc) = runs["one"], runs["accumulated"]
    assert len(losses_one) == len(losses_acc) == 5
    np.testing.assert_allclose(losses_acc, losses_one, atol=5e-5)
    worst = max((weights_one[k] - weights_acc[k]).abs().max().item() for k in weights_one)
    assert worst < 5e-5, worst


# ---- 2. the pooler ------------------------------------------------------------------------------------
def test_pooling_choices_train_and_count_the_pooler_as_they_say(tiny_model_dir):
    from lab.model.adapting import adapt
    from lab.model.loading import load_model
    from lab.model.parameters import count_parameters

    def build(method, pooling):
        config = config_for("classification", tiny_model_dir, "x.csv", method, pooling)
        model = load_model(config.model, "classification", ["neg", "pos"])
        return adapt(model, config, total_steps=10)

    frozen, _ = build("lora", "pooler")
    trained, _ = build("lora", "pooler-trained")
    mean, _ = build("lora", "mean")
    pooler_size = 32 * 32 + 32  # the tiny BERT's dense pooler
    assert count_parameters(trained).trainable - count_parameters(frozen).trainable == pooler_size
    assert any("pooler" in n and p.requires_grad for n, p in trained.named_parameters())
    assert not any("pooler" in n and p.requires_grad for n, p in frozen.named_parameters())
    assert not any("pooler" in n for n, _ in mean.named_parameters())
    head_trained, _ = build("head", "pooler-trained")
    head_frozen, _ = build("head", "pooler")
    assert count_parameters(head_trained).trainable - count_parameters(head_frozen).trainable == pooler_size


@pytest.mark.parametrize("method", ["full", "lora"])
def test_the_head_learning_rate_moves_the_head_and_only_the_head(method, tiny_model_dir, sentiment_csv, tmp_path):
    """The encoder's (or the adapters') rate near zero: with the head's rate large the head moves, and
    nothing else does; with the head's rate at the same near zero, the head does not move either."""
    from transformers import AutoModelForSequenceClassification

    weights = {}
    for name, head_rate in (("fast head", 5e-2), ("same rate", 1e-9)):
        config = config_for(
            "classification",
            tiny_model_dir,
            sentiment_csv,
            method,
            "pooler",
            learning_rate=1e-9,
            head_learning_rate=head_rate,
            weight_decay=0.0,
        )
        events = Recorder()
        train(config, tmp_path / name, sink=events)
        said = [e.message for e in events.of(LogEvent) if "learning rate 1e-09" in e.message]
        assert ("(head 0.05)" in said[0]) == (head_rate == 5e-2), said
        model = Predictor(tmp_path / name).model
        weights[name] = (model.merge_and_unload() if method == "lora" else model).state_dict()
    before = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2).state_dict()
    moved = {
        name
        for name, weight in weights["fast head"].items()
        if name in before and not name.startswith("classifier.") and (weight - before[name]).abs().max() > 1e-6
    }
    assert not moved, moved
    head_change = (weights["fast head"]["classifier.weight"] - weights["same rate"]["classifier.weight"]).abs().max()
    assert head_change > 1e-3, head_change


def test_mean_pooling_is_the_mean_of_the_unpadded_token_vectors(tiny_model_dir):
    from transformers import AutoTokenizer

    from lab.model.loading import load_model
    from lab.model.pooling import use_pooling

    model = use_pooling(
        load_model(ModelConfig(name_or_path=tiny_model_dir), "classification", ["neg", "pos"]), "mean"
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = tokenizer(
        ["a short one", "a much longer sentence with many more words in it"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        hidden = model.bert(**batch).last_hidden_state
        pooled = model.bert.pooler(hidden)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    torch.testing.assert_close(pooled, (hidden * mask).sum(1) / mask.sum(1))
    alone = tokenizer(["a short one"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(
            model.bert.pooler(model.bert(**alone).last_hidden_state)[0], pooled[0], atol=1e-5, rtol=1e-4
        )  # padding does not move the mean


@pytest.mark.parametrize(
    "method, pooling", [("lora", "pooler-trained"), ("lora", "mean"), ("full", "mean"), ("head", "pooler-trained")]
)
def test_a_saved_model_predicts_as_it_was_scored(method, pooling, tiny_model_dir, sentiment_csv, tmp_path):
    """The pooler it trained (or the mean pooling it used) comes back with the saved model."""
    from lab.data.splits import load_splits

    config = config_for(
        "classification",
        tiny_model_dir,
        sentiment_csv,
        method,
        pooling,
        max_steps=12,
        train_batch_size=8,
        eval_steps=12,
    )
    result = train(config, tmp_path)
    test = load_splits(config.data, "classification", config.data.split_seed, log=lambda m: None).splits["test"]
    predictions = Predictor(tmp_path).predict(list(test["text"]))
    names = ["neg", "pos"]
    accuracy = np.mean([p.label == names[label] for p, label in zip(predictions, test["label"])])
    assert accuracy == pytest.approx(result.metrics["accuracy"])
    info = Predictor(tmp_path).info
    assert info["pooling"] == pooling


# ---- 3. one word-mapping rule -------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["full", "lora", "prompt", "prefix"])
def test_the_predictor_and_the_scorer_tag_the_same_words_even_when_truncation_cuts_some(
    method, tiny_model_dir, ner_conll, tmp_path
):
    """Scored on every gold word (cut words count as predicted O), so the predictor's tags over the
    test split reproduce the run's own test figures exactly."""
    from lab.data.splits import load_splits
    from lab.training.metrics import entity_metrics

    events = Recorder()
    config = config_for(
        "ner",
        tiny_model_dir,
        ner_conll,
        method,
        max_steps=12,
        train_batch_size=8,
        max_length=12,
        learning_rate=3e-3 if method == "full" else 3e-2,
    )
    result = train(config, tmp_path, sink=events)
    assert any("cut off" in e.message and "predicted O" in e.message for e in events.of(LogEvent))
    loaded = load_splits(config.data, "ner", config.data.split_seed, log=lambda m: None)
    test = loaded.splits["test"]
    gold = [[loaded.label_names[t] for t in tags] for tags in test["tags"]]
    predictions = Predictor(tmp_path).predict([" ".join(words) for words in test["tokens"]])
    assert [len(p.tags) for p in predictions] == [len(tags) for tags in gold]
    assert entity_metrics(gold, [p.tags for p in predictions]) == pytest.approx(result.metrics)


def test_typed_text_splits_punctuation_like_conll_data():
    from lab.data.preprocessing import split_words

    assert split_words("Paris, France.") == ["Paris", ",", "France", "."]
    assert split_words("The U.S. paid $3.5 million (1,000 times) to O'Neil's well-known firm!") == [
        "The",
        "U.S.",
        "paid",
        "$",
        "3.5",
        "million",
        "(",
        "1,000",
        "times",
        ")",
        "to",
        "O'Neil's",
        "well-known",
        "firm",
        "!",
    ]


def test_typed_text_keeps_links_mentions_and_hashtags_whole_like_tweet_data():
    from lab.data.preprocessing import split_words

    assert split_words("@paulwalk loves #photography: http://twitpic.com/2pdvtr.") == [
        "@paulwalk",
        "loves",
        "#photography",
        ":",
        "http://twitpic.com/2pdvtr",
        ".",
    ]


def test_predict_keeps_one_tag_per_whitespace_word_unless_asked_to_split(tiny_model_dir, ner_conll, tmp_path):
    train(config_for("ner", tiny_model_dir, ner_conll, max_steps=2), tmp_path)
    predictor = Predictor(tmp_path)
    (plain,) = predictor.predict(["Maria met Tom in Paris, yesterday."])
    (split,) = predictor.predict(["Maria met Tom in Paris, yesterday."], split_punctuation=True)
    assert plain.words == ["Maria", "met", "Tom", "in", "Paris,", "yesterday."]
    assert split.words == ["Maria", "met", "Tom", "in", "Paris", ",", "yesterday", "."]


# ---- 4. status from what happened ---------------------------------------------------------------------
def test_a_cancel_after_the_last_step_leaves_a_completed_run_with_its_test_report(
    tiny_model_dir, sentiment_csv, tmp_path
):
    stop = threading.Event()

    def sink(event):
        if isinstance(event, StepEvent) and event.step == event.max_steps:
            stop.set()  # arrives while the run evaluates on test and saves

    result = train(
        config_for("classification", tiny_model_dir, sentiment_csv, max_steps=4), tmp_path, sink=sink, should_stop=stop
    )
    assert result.status == "completed"
    assert result.metrics and (tmp_path / "model" / "lab_model.json").is_file()


# ---- 5. smaller defects -------------------------------------------------------------------------------
def test_prompt_tuning_caps_max_length_below_the_position_limit(tiny_model_dir, sentiment_csv, tmp_path):
    """The tiny BERT embeds 512 positions; 4 virtual tokens leave 508 for the text."""
    from lab.data.preprocessing import effective_max_length

    assert effective_max_length(None, 512, position_limit=512, reserved=4) == 508
    events = Recorder()
    config = config_for("classification", tiny_model_dir, sentiment_csv, "prompt", max_steps=1, max_length=512)
    assert train(config, tmp_path, sink=events).status == "completed"
    assert any("cut at 508" in e.message for e in events.of(LogEvent))


def test_byte_level_bpe_tokenizers_get_a_prefix_space_for_pre_split_words(tmp_path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    from lab.model.loading import load_tokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["maria met tom in paris"] * 20, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    bpe.save_model(str(tmp_path))
    RobertaTokenizerFast(
        vocab_file=str(tmp_path / "vocab.json"), merges_file=str(tmp_path / "merges.txt")
    ).save_pretrained(str(tmp_path))
    assert load_tokenizer(ModelConfig(name_or_path=str(tmp_path)), pre_split_words=True).add_prefix_space is True
    assert load_tokenizer(ModelConfig(name_or_path=str(tmp_path))).add_prefix_space is False


def test_bioes_data_is_scored_in_strict_bioes_mode():
    from types import SimpleNamespace

    from lab.training.scoring import EvaluationScorer, WordReference

    names = ["O", "B-PER", "E-PER", "I-PER", "S-PER"]
    reference = {"validation": WordReference(word_ids=[[-1, 0, -1]], gold_tags=[["S-PER"]])}
    predicted = SimpleNamespace(predictions=np.array([[0, 1, 0]]), label_ids=np.array([[-100, 4, -100]]))
    strict = EvaluationScorer("ner", names, "BIOES", reference)(predicted)
    conlleval = EvaluationScorer("ner", names, "IOB2", reference)(predicted)
    assert strict["f1"] == 0.0  # a lone B-PER is no BIOES entity
    assert conlleval["f1"] == 1.0  # conlleval reads it as a one-word PER


def test_a_resumed_adalora_run_loads_its_pruned_checkpoint_and_says_its_allocation_restarts(
    tiny_model_dir, sentiment_csv, tmp_path
):
    """peft saves AdaLoRA checkpoints pruned to their rank pattern (a fresh model could not load them)
    and keeps its importance scores outside: the run resumes, and the log says what restarts."""
    from lab.runs.resume import last_checkpoint

    stop = threading.Event()

    def cancel_after_step_2(event):
        if isinstance(event, StepEvent) and event.step == 2:
            stop.set()

    config = config_for("classification", tiny_model_dir, sentiment_csv, "adalora", max_steps=6, train_batch_size=8)
    config.peft.adalora_init_r = 8
    assert train(config, tmp_path, sink=cancel_after_step_2, should_stop=stop).status == "cancelled"
    events = Recorder()
    checkpoint = last_checkpoint(tmp_path / "checkpoints")
    assert train(config, tmp_path, sink=events, resume_from_checkpoint=str(checkpoint)).status == "completed"
    assert any(
        e.level == "warning" and "AdaLoRA" in e.message and "importance" in e.message for e in events.of(LogEvent)
    )


def test_peak_memory_is_this_runs_own_not_the_long_lived_processes(tiny_model_dir, sentiment_csv, tmp_path):
    """In the app one process trains run after run: a large earlier peak must not be every later run's."""
    import gc
    import resource

    earlier = np.ones(600 * 2**20 // 8)  # 600 MB held and given back before the run, as an earlier run would
    del earlier
    gc.collect()
    lifetime_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    events = Recorder()
    result = train(config_for("classification", tiny_model_dir, sentiment_csv, max_steps=3), tmp_path, sink=events)
    assert 0 < result.peak_memory_mb < lifetime_peak_mb - 400, (result.peak_memory_mb, lifetime_peak_mb)
    step_memory = [e.memory_mb for e in events.of(StepEvent)]
    assert step_memory and all(m and 0 < m <= result.peak_memory_mb + 1 for m in step_memory)
