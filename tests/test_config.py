"""Run configuration: validation messages a person can act on, YAML round trip, --set overrides."""

import pytest

from lab.config import RunConfig, default_config, example_yaml, field_help
from lab.errors import ConfigError


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.learning_rate=0", "learning_rate must be > 0"),
        ("train.learning_rate=2", "learning_rate must be below 1"),
        ("train.train_batch_size=0", "train_batch_size must be >= 1"),
        ("train.eval_batch_size=-3", "eval_batch_size must be >= 1"),
        ("train.epochs=0", "epochs must be > 0"),
        ("train.warmup_ratio=1.5", "warmup_ratio must be between 0 and 1"),
        ("train.gradient_accumulation_steps=0", "gradient_accumulation_steps must be >= 1"),
        ("train.max_length=4", "max_length must be between 8 and 8192"),
        ("train.optimizer=lion", "must be one of adamw, sgd, adafactor"),
        ("train.precision=fp8", "must be one of auto, bf16, fp16, fp32"),
        ("peft.method=qlora", "must be one of full, head, lora"),
        ("peft.r=0", "LoRA rank r must be >= 1"),
        ("peft.lora_dropout=1", "lora_dropout must be between 0 and 1"),
        ("model.dropout=1.2", "dropout must be between 0 and 1"),
        ("model.name_or_path=", "model name_or_path is empty"),
        ("data.train_file=/no/such/file.csv", "train_file '/no/such/file.csv' does not exist"),
        ("data.validation_share=0.7", "validation_share must be between 0 and 0.5"),
        ("train.seed=-1", "seed must be between 0"),
        ("task=translation", "task must be one of classification, ner"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        default_config().with_overrides([override]).validate()


def test_adalora_rank_rule_applies_to_adalora_only():
    default_config().with_overrides(["peft.method=lora", "peft.r=16", "peft.alpha=32"]).validate()
    with pytest.raises(ConfigError, match="adalora_init_r must be >= r"):
        default_config().with_overrides(["peft.method=adalora", "peft.r=16"]).validate()


def test_every_problem_is_listed_on_one_line():
    with pytest.raises(ConfigError) as raised:
        default_config().with_overrides(["train.train_batch_size=0", "peft.r=0"]).validate()
    text = str(raised.value)
    assert "train_batch_size" in text and "rank r" in text and "\n" not in text


@pytest.mark.parametrize(
    "key, hint",
    [("train.lr=1e-3", "Known keys"), ("traing.epochs=2", "sections are"), ("peft.alfa=4", "Did you mean 'alpha'")],
)
def test_unknown_keys_are_named(key, hint):
    with pytest.raises(ConfigError, match=hint):
        default_config().with_overrides([key])


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_yaml_round_trip_keeps_every_field(task):
    config = default_config(task).with_overrides(
        [
            "train.learning_rate=3e-4",
            "peft.target_modules=query,value",
            "model.dropout=0.2",
            "train.gradient_checkpointing=true",
        ]
    )
    assert RunConfig.from_yaml(config.to_yaml()) == config
    assert RunConfig.from_yaml(example_yaml(task)) == default_config(task)


def test_overrides_coerce_strings_like_the_cli():
    config = default_config().with_overrides(["train.epochs=2", "train.train_batch_size=8", "peft.merge_adapter=yes"])
    assert (config.train.epochs, config.train.train_batch_size, config.peft.merge_adapter) == (2.0, 8, True)
    with pytest.raises(ConfigError, match="must be a whole number"):
        default_config().with_overrides(["train.train_batch_size=eight"])


def test_defaults_run_as_they_are_and_keep_remote_code_off():
    for task in ("classification", "ner"):
        config = default_config(task).validate()
        assert config.model.trust_remote_code is False
        assert config.model.name_or_path == "minilm"


def test_every_field_has_help():
    import dataclasses

    from lab.config import SECTIONS

    for section, cls in [("", RunConfig), *SECTIONS.items()]:
        for f in dataclasses.fields(cls):
            if not dataclasses.is_dataclass(f.type) and f.name not in SECTIONS:
                assert field_help(section, f.name), f"{section}.{f.name} has no help"


def test_the_head_trains_at_the_head_only_rate_unless_told_otherwise():
    from lab.model.defaults import DEFAULT_HEAD_LEARNING_RATES, DEFAULT_LEARNING_RATES, head_learning_rate_for

    for task in ("classification", "ner"):
        head_rate = DEFAULT_HEAD_LEARNING_RATES[task]
        lora = default_config(task).with_overrides(["peft.method=lora"])
        assert head_learning_rate_for(lora) == head_rate > DEFAULT_LEARNING_RATES[task]["lora"]
        assert head_learning_rate_for(lora.with_overrides(["train.head_learning_rate=3e-3"])) == 3e-3
        # Head-only training has one rate, its learning rate; a method faster than the head keeps its own.
        head_only = default_config(task).with_overrides(["peft.method=head", "train.learning_rate=1e-3"])
        assert head_learning_rate_for(head_only) == 1e-3
        fast = lora.with_overrides(["train.learning_rate=0.2"])
        assert head_learning_rate_for(fast) == 0.2
    with pytest.raises(ConfigError, match="head_learning_rate must be above 0"):
        default_config("ner").with_overrides(["train.head_learning_rate=2"]).validate()
