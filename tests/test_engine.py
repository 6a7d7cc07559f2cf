"""The training engine: every PEFT method learns on both fixtures (the offline MiniLM at each method's
default rate beats a fixed held-out threshold), cancel, resume, early stopping, save and predict."""

import json
import threading

import pytest
import torch

from lab.config import PEFT_METHODS, DataConfig, ModelConfig, PeftSettings, RunConfig, TrainConfig
from lab.events import EvalEvent, ResultEvent, StepEvent
from lab.inference.predict import Predictor
from lab.training.engine import train

METHODS = list(PEFT_METHODS)
# Rates for the tiny random BERT, for the tests where what it learns is not the point (cancel, resume,
# saving): it trains in a second where MiniLM takes ten.
RATES = {
    "ner": {
        "full": 3e-3,
        "head": 3e-2,
        "lora": 1e-2,
        "adalora": 1e-2,
        "ia3": 5e-2,
        "prompt": 5e-2,
        "prefix": 2e-2,
        "loha": 1e-2,
        "lokr": 2e-2,
        "adapter": 1e-2,
    },
    "classification": {
        "full": 1e-4,
        "head": 1e-2,
        "lora": 2e-3,
        "adalora": 3e-3,
        "ia3": 1e-2,
        "prompt": 3e-2,
        "prefix": 1e-2,
        "loha": 3e-3,
        "lokr": 1e-2,
        "adapter": 3e-3,
    },
}


def tiny_config(task, model_dir, data_file, method="full", **train):
    settings = dict(
        learning_rate=RATES[task][method],
        train_batch_size=8,
        max_steps=24,
        logging_steps=4,
        eval_steps=24,
        warmup_ratio=0.0,
        lr_scheduler="constant",
        max_length=48,
        seed=0,
    )
    settings.update(train)
    return RunConfig(
        task=task,
        data=DataConfig(dataset="", train_file=str(data_file)),
        model=ModelConfig(name_or_path=model_dir),
        peft=PeftSettings(method=method, r=4, alpha=8, adalora_init_r=8, num_virtual_tokens=4),
        train=TrainConfig(**settings),
    )


class Recorder(list):
    def __call__(self, event):
        self.append(event)

    def of(self, kind):
        return [e for e in self if isinstance(e, kind)]


# What "learns" means: the held-out metric of the trained model beats these, on the fixtures.
LEARNED = {"classification": ("accuracy", 0.70), "ner": ("f1", 0.60)}


@pytest.mark.parametrize("method", METHODS)
def test_each_method_learns_at_its_default_rate(method, sentiment_csv, tmp_path):
    """The offline MiniLM at the default learning rate and pooling of each method, 40 steps of 8."""
    config = tiny_config(
        "classification",
        "minilm",
        sentiment_csv,
        method,
        learning_rate=None,
        max_steps=40,
        eval_steps=40,
        lr_scheduler="linear",
        warmup_ratio=0.06,
    )
    config.data.validation_share = config.data.test_share = 0.2
    result = train(config, tmp_path)
    metric, threshold = LEARNED["classification"]
    assert result.status == "completed"
    assert result.metrics[metric] >= threshold, result.metrics
    assert 0 < result.trainable_params < result.total_params or method == "full"


@pytest.mark.parametrize("method", METHODS)
def test_each_method_learns_to_tag_at_its_default_rate(method, ner_conll, tmp_path):
    events = Recorder()
    config = tiny_config(
        "ner",
        "minilm",
        ner_conll,
        method,
        learning_rate=None,
        max_steps=60,
        eval_steps=60,
        lr_scheduler="linear",
        warmup_ratio=0.06,
    )
    config.data.validation_share, config.data.test_share = 0.2, 0.25
    result = train(config, tmp_path, sink=events)
    metric, threshold = LEARNED["ner"]
    assert result.status == "completed"
    assert result.metrics[metric] >= threshold, result.metrics
    test_eval = [e for e in events.of(EvalEvent) if e.split == "test"]
    assert len(test_eval) == 1 and test_eval[0].per_label
    assert (tmp_path / "model" / "lab_model.json").is_file()


def test_adalora_really_reallocates_ranks_and_zeroes_the_pruned_ones(tiny_model_dir, sentiment_csv, tmp_path):
    from safetensors.torch import load_file

    config = tiny_config("classification", tiny_model_dir, sentiment_csv, "adalora", max_steps=40)
    train(config, tmp_path)
    adapter = json.loads((tmp_path / "model" / "adapter_config.json").read_text())
    # update_and_allocate ran: the budget was redistributed and recorded per module (below init_r=8).
    ranks = {name: sum(mask) for name, mask in (adapter["rank_pattern"] or {}).items()}
    assert ranks, "AdaLoRA never allocated ranks: it trained as plain LoRA"
    assert min(ranks.values()) < 8
    # The pruned singular values are gone from the saved weights: each module keeps exactly the rows
    # its mask keeps (peft drops the zeroed ones when it saves), and they carry the trained values.
    weights = load_file(tmp_path / "model" / "adapter_model.safetensors")
    for name, mask in adapter["rank_pattern"].items():
        singular = weights[f"base_model.model.{name}"]
        assert singular.shape[0] == sum(mask), name
        assert bool((singular != 0).all()), name


def test_cancel_stops_within_one_step(tiny_model_dir, sentiment_csv, tmp_path):
    stop = threading.Event()
    events = Recorder()

    def sink(event):
        events(event)
        if isinstance(event, StepEvent) and event.step >= 3:
            stop.set()

    config = tiny_config("classification", tiny_model_dir, sentiment_csv, max_steps=200, logging_steps=1)
    result = train(config, tmp_path, sink=sink, should_stop=stop)
    assert result.status == "cancelled"
    assert result.completed_steps == 4  # the flag was set after step 3's log; step 4 was the last
    assert not events.of(ResultEvent)[0].metrics  # no test evaluation for a cancelled run
    assert (tmp_path / "checkpoints" / "checkpoint-4").is_dir()  # resumable from where it stopped


def test_saved_classifier_gets_new_reviews_right(sentiment_csv, tmp_path):
    config = tiny_config("classification", "minilm", sentiment_csv, "lora", learning_rate=None, max_steps=40)
    train(config, tmp_path)
    predictions = Predictor(tmp_path).predict(
        ["I loved it, a wonderful and moving film.", "An awful, dull and boring evening."]
    )
    assert [p.label for p in predictions] == ["pos", "neg"]
    assert abs(sum(predictions[0].probabilities.values()) - 1) < 1e-5


def test_resume_continues_the_loss_learning_rate_and_optimizer_state(tiny_model_dir, sentiment_csv, tmp_path):
    """Cancelled after step 4 and resumed from its checkpoint, a run logs the same steps 5-8 and ends
    with the same weights as the same run left alone (AdamW's moments came back with it)."""
    settings = dict(max_steps=8, logging_steps=1, eval_steps=4, lr_scheduler="linear", warmup_ratio=0.25)
    straight = Recorder()
    train(
        tiny_config("classification", tiny_model_dir, sentiment_csv, "lora", **settings),
        tmp_path / "straight",
        sink=straight,
    )

    stop, first = threading.Event(), Recorder()

    def cancel_after_step_4(event):
        first(event)
        if isinstance(event, StepEvent) and event.step == 4:
            stop.set()

    config = tiny_config("classification", tiny_model_dir, sentiment_csv, "lora", **settings)
    assert train(config, tmp_path / "resumed", sink=cancel_after_step_4, should_stop=stop).status == "cancelled"
    second = Recorder()
    checkpoint = tmp_path / "resumed" / "checkpoints" / "checkpoint-4"
    assert (
        train(config, tmp_path / "resumed", sink=second, resume_from_checkpoint=str(checkpoint)).status == "completed"
    )

    def curve(events):
        return {e.step: (e.loss, e.learning_rate) for e in events.of(StepEvent)}

    assert sorted(curve(second)) == [5, 6, 7, 8]
    for step, (loss, rate) in curve(second).items():
        assert loss == pytest.approx(curve(straight)[step][0], abs=1e-5)
        assert rate == pytest.approx(curve(straight)[step][1], rel=1e-6)
    from safetensors.torch import load_file

    weights = [load_file(tmp_path / name / "model" / "adapter_model.safetensors") for name in ("straight", "resumed")]
    assert weights[0].keys() == weights[1].keys()
    assert max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0]) < 1e-5


def test_early_stopping_stops_at_the_expected_evaluation_and_keeps_the_best_model(
    tiny_model_dir, sentiment_csv, tmp_path, monkeypatch
):
    """Validation accuracy scripted to 0.5, 0.9, 0.8, 0.7, ...: with patience 2 the run stops after the
    fourth evaluation (step 8) and saves the weights of the best one (step 4)."""
    from safetensors.torch import load_file

    from lab.training import scoring

    scripted = iter([0.5, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    real_call = scoring.EvaluationScorer.__call__

    def scripted_call(self, prediction):
        metrics = real_call(self, prediction)
        if self.split == "validation":
            metrics["accuracy"] = self.last_metrics["accuracy"] = next(scripted)
        return metrics

    monkeypatch.setattr(scoring.EvaluationScorer, "__call__", scripted_call)
    events = Recorder()
    config = tiny_config(
        "classification",
        tiny_model_dir,
        sentiment_csv,
        "lora",
        max_steps=18,
        eval_steps=2,
        early_stopping_patience=2,
        save_total_limit=5,
    )
    result = train(config, tmp_path, sink=events)
    assert result.status == "completed" and result.completed_steps == 8
    assert [e.step for e in events.of(EvalEvent) if e.split == "validation"] == [2, 4, 6, 8]
    saved = load_file(tmp_path / "model" / "adapter_model.safetensors")
    best = load_file(tmp_path / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors")
    last = load_file(tmp_path / "checkpoints" / "checkpoint-8" / "adapter_model.safetensors")
    assert all(torch.equal(saved[k], best[k]) for k in saved)
    assert not all(torch.equal(saved[k], last[k]) for k in saved)


def test_a_merged_lora_copy_reloads_and_predicts_like_the_adapter(tiny_model_dir, sentiment_csv, tmp_path):
    config = tiny_config("classification", tiny_model_dir, sentiment_csv, "lora", max_steps=12)
    config.peft.merge_adapter = True
    train(config, tmp_path)
    texts = ["a great and moving film", "dull, boring and awful", "the plot was fine"]
    adapter = Predictor(tmp_path / "model").predict(texts)
    merged = Predictor(tmp_path / "model" / "merged").predict(texts)
    for a, m in zip(adapter, merged):
        assert a.label == m.label
        assert a.probabilities == pytest.approx(m.probabilities, abs=1e-5)


@pytest.mark.parametrize("method", ["full", "prompt"])
def test_saved_tagger_gives_one_tag_per_word(method, tiny_model_dir, ner_conll, tmp_path):
    train(tiny_config("ner", tiny_model_dir, ner_conll, method), tmp_path)
    words = ["yesterday", "Maria", "travelled", "to", "Lisbon", "with", "a", "verylongunseenword"]
    (prediction,) = Predictor(tmp_path).predict([" ".join(words)])
    assert prediction.words == words
    assert len(prediction.tags) == len(words)
    assert all(tag == "O" or tag[:2] in ("B-", "I-") for tag in prediction.tags)


def test_same_seed_same_numbers(tiny_model_dir, sentiment_csv, tmp_path):
    runs = []
    for name in ("a", "b"):
        events = Recorder()
        train(
            tiny_config("classification", tiny_model_dir, sentiment_csv, "lora", max_steps=8),
            tmp_path / name,
            sink=events,
        )
        runs.append([round(e.loss, 6) for e in events.of(StepEvent)])
    assert runs[0] == runs[1]


def test_evaluating_more_often_does_not_change_what_is_learned(tiny_model_dir, sentiment_csv, tmp_path):
    # Each evaluation's data loader drew its seed from the global RNG that dropout uses next: a run evaluated
    # every 2 steps trained on other dropout masks than the same run evaluated once.
    runs = []
    for every in (2, 8):
        events = Recorder()
        config = tiny_config("classification", tiny_model_dir, sentiment_csv, "lora", max_steps=8, logging_steps=1)
        config.train.eval_steps = every
        train(config, tmp_path / str(every), sink=events)
        runs.append([round(e.loss, 6) for e in events.of(StepEvent)])
    assert len(runs[0]) == 8 and runs[0] == runs[1]


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_all_linear_adapts_every_encoder_layer_and_keeps_the_head_trained(task, tiny_model_dir):
    from lab.model.adapting import apply_peft
    from lab.model.loading import load_model

    labels = ["O", "B-PER", "I-PER"] if task == "ner" else ["neg", "pos"]
    model = apply_peft(
        load_model(ModelConfig(name_or_path=tiny_model_dir), task, labels),
        PeftSettings(method="lora", target_modules=["all-linear"]),
        task,
        total_steps=10,
    )
    adapted = {name.rsplit(".lora_A", 1)[0] for name, _ in model.named_parameters() if ".lora_A." in name}
    assert any(name.endswith("attention.self.query") for name in adapted)
    assert any(name.endswith("intermediate.dense") for name in adapted)  # feed-forward too, not only attention
    assert not any("classifier" in name for name in adapted)
    assert any("classifier" in name and param.requires_grad for name, param in model.named_parameters())


def test_prefix_tuning_is_refused_with_one_line_where_the_encoder_takes_no_past_key_values(tiny_model_dir, monkeypatch):
    """transformers 5.24 renamed BERT's `past_key_values` to `cache`; peft 0.21 then fails mid-run."""
    import transformers

    from lab.errors import ModelError
    from lab.model.adapting import apply_peft
    from lab.model.loading import load_model

    def forward_of_a_newer_bert(self, input_ids=None, attention_mask=None, cache=None, **kwargs):
        raise AssertionError("never called: the method is refused before training")

    monkeypatch.setattr(transformers.BertModel, "forward", forward_of_a_newer_bert)
    model = load_model(ModelConfig(name_or_path=tiny_model_dir), "classification", ["neg", "pos"])
    with pytest.raises(ModelError) as refused:
        apply_peft(model, PeftSettings(method="prefix"), "classification", total_steps=10)
    message = str(refused.value)
    assert "\n" not in message
    assert f"transformers {transformers.__version__}" in message and "peft " in message
    assert "requirements.txt" in message
