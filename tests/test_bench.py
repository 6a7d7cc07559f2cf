"""The benchmark's arms on the tiny BERT (a couple of steps each), and the pre-flight estimate.

Speed itself is never asserted here: the benchmark measures it (python -m bench). These tests check
that every arm trains the same number of steps and examples, that padding is counted the way each
arm pads, and the shape of the JSON results.
"""

import dataclasses
import json
import math

import pytest

from bench.run import run_benchmark
from bench.workloads import WORKLOADS, Settings
from lab.config import DataConfig, ModelConfig, PeftSettings, RunConfig, TrainConfig
from lab.training.estimate import Estimate, estimate, padding_share

TIMED_STEPS = 2


@pytest.fixture(scope="module")
def results(tiny_model_dir):
    import torch

    settings = Settings(model=tiny_model_dir, warmup_steps=1, timed_steps=TIMED_STEPS, repeats=1)
    # The tiny model's ops are too small to share between threads: one thread is several times
    # faster when other programs load the machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_benchmark(settings, ("ner", "imdb"), app_workload="ner", log=lambda line: None)
    finally:
        torch.set_num_threads(threads)


def test_results_have_the_documented_shape(results):
    json.dumps(results)  # the --json file is plain JSON
    for name in ("ner", "imdb"):
        workload = results["workloads"][name]
        assert set(workload["arms"]) == {"textbook", "trainer", "lab"}
        for key in ("lab_vs_textbook", "lab_vs_trainer"):
            assert workload[key] > 0
    assert results["app_vs_cli"] > 0
    assert results["app_vs_cli_detail"]["workload"] == "ner"
    assert results["settings"]["timed_steps"] == TIMED_STEPS


@pytest.mark.parametrize("name", ["ner", "imdb"])
def test_every_arm_times_the_same_steps_and_examples(results, name):
    workload = results["workloads"][name]
    batch = WORKLOADS[name].batch_size
    for arm, figures in workload["arms"].items():
        assert figures["timed_steps"] == TIMED_STEPS, arm
        assert figures["examples"] == TIMED_STEPS * batch, arm
        assert figures["real_tokens"] > 0 and figures["real_tokens_per_second"] > 0, arm


@pytest.mark.parametrize("name", ["ner", "imdb"])
def test_textbook_pads_to_max_length_and_the_others_pad_per_batch(results, name):
    arms = results["workloads"][name]["arms"]
    textbook = arms["textbook"]
    positions = TIMED_STEPS * WORKLOADS[name].batch_size * WORKLOADS[name].max_length
    assert textbook["positions"] == positions
    assert textbook["padding_share"] == pytest.approx(1 - textbook["real_tokens"] / positions)
    for arm in ("trainer", "lab"):  # dynamic padding: never longer than max_length
        assert arms[arm]["real_tokens"] <= arms[arm]["positions"] <= positions
        assert arms[arm]["padding_share"] == pytest.approx(1 - arms[arm]["real_tokens"] / arms[arm]["positions"])
    if name == "ner":  # tweets are far shorter than 128 tokens
        assert arms["trainer"]["positions"] < positions and arms["lab"]["positions"] < positions


# ---- pre-flight estimate ------------------------------------------------------------------------
def ner_config(model_dir, data_file, **train):
    settings = dict(train_batch_size=8, epochs=2.0, max_length=48)
    settings.update(train)
    return RunConfig(
        task="ner",
        data=DataConfig(dataset="", train_file=str(data_file)),
        model=ModelConfig(name_or_path=model_dir),
        peft=PeftSettings(method="full"),
        train=TrainConfig(**settings),
    )


def test_estimate_counts_the_run_and_the_model(tiny_model_dir, ner_conll):
    from lab.data.splits import load_splits
    from lab.model.adapting import apply_peft
    from lab.model.loading import load_model
    from lab.model.parameters import count_parameters

    config = ner_config(tiny_model_dir, ner_conll)
    result = estimate(config)
    loaded = load_splits(config.data, "ner", config.data.split_seed, log=lambda message: None)
    train_examples = len(loaded.splits["train"])
    assert result.train_examples == train_examples
    assert result.steps_per_epoch == math.ceil(train_examples / 8)
    assert result.total_steps == 2 * result.steps_per_epoch
    real = count_parameters(apply_peft(load_model(config.model, "ner", loaded.label_names), config.peft, "ner", 10))
    assert (result.total_params, result.trainable_params) == (real.total, real.trainable)
    assert result.optimizer_bytes == 8 * real.trainable  # AdamW: two fp32 moments per weight
    assert result.seconds_per_epoch > 0 and 0 <= result.padding_share < 1
    assert 1 < result.mean_tokens <= 48


def test_lora_and_checkpointing_need_less_memory(tiny_model_dir, ner_conll):
    full = estimate(ner_config(tiny_model_dir, ner_conll))
    lora_config = ner_config(tiny_model_dir, ner_conll)
    lora_config.peft.method = "lora"
    lora = estimate(lora_config)
    assert lora.trainable_params < full.trainable_params
    assert lora.optimizer_bytes < full.optimizer_bytes and lora.gradients_bytes < full.gradients_bytes
    checkpointed = estimate(ner_config(tiny_model_dir, ner_conll, gradient_checkpointing=True))
    assert checkpointed.activations_bytes < full.activations_bytes


def test_a_run_that_does_not_fit_says_what_to_change(tiny_model_dir, ner_conll):
    result = estimate(ner_config(tiny_model_dir, ner_conll))
    assert result.fits and result.warning == ""
    cramped = dataclasses.replace(result, available_bytes=result.total_bytes // 2)
    assert not cramped.fits
    assert "will not fit" in cramped.warning and "train_batch_size" in cramped.warning
    assert "Warning: " in cramped.describe()


def test_padding_share_of_sorted_and_random_batches():
    # Sorted descending in one megabatch: batches [4, 3] and [2, 1] hold 12 positions for 10 tokens.
    assert padding_share([1, 3, 2, 4], batch_size=2, group_by_length=True, seed=0) == pytest.approx(1 / 6)
    lengths = [5, 50] * 40
    assert padding_share(lengths, 8, True, 0) < padding_share(lengths, 8, False, 0)
    assert padding_share([7] * 10, 4, False, 0) == 0


def test_estimate_describe_names_time_and_memory():
    result = Estimate(
        device="cpu",
        precision="fp32",
        train_examples=100,
        validation_examples=10,
        steps_per_epoch=7,
        total_steps=14,
        mean_tokens=20.0,
        padding_share=0.1,
        seconds_per_step=0.5,
        seconds_per_epoch=3.5,
        seconds_per_validation=1.0,
        total_seconds=9.0,
        weights_bytes=2**20,
        gradients_bytes=2**20,
        optimizer_bytes=2**21,
        activations_bytes=2**22,
        framework_bytes=2**28,
        available_bytes=2**33,
        trainable_params=10,
        total_params=10,
    )
    text = result.describe()
    assert "4 s per epoch" in text and "0.50 s per step" in text and "14 steps in all" in text
    assert "Memory: about 264.0 MB" in text and "of 8.0 GB free" in text and "Warning" not in text


def test_lr_sweep_grid_tries_each_default_and_its_neighbours_unless_told():
    from bench.lr_sweep import sweep_grid
    from lab.model.defaults import DEFAULT_LEARNING_RATES

    default = DEFAULT_LEARNING_RATES["ner"]["lora"]
    grid = sweep_grid("ner", ["lora", "full"], ["full=1e-4,3e-4"])
    # The grid's rates are rounded to two significant digits (5e-3 / 3 -> 1.7e-3).
    assert [rate for method, rate in grid if method == "lora"] == pytest.approx(
        [default / 3, default, default * 3], rel=0.03
    )
    assert [rate for method, rate in grid if method == "full"] == [1e-4, 3e-4]
    with pytest.raises(SystemExit, match="METHOD=LR"):
        sweep_grid("ner", ["lora"], ["qlora=1e-3"])
    with pytest.raises(SystemExit, match="Unknown method"):
        sweep_grid("ner", ["qlora"], [])
