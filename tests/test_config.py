"""Run configuration: validation messages a person can act on, YAML round trip, --set overrides."""

import dataclasses
import os

import pytest

from lab.config import SECTIONS, RunConfig, config_field, default_config, example_yaml, field_help
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
        ("train.train_batch_size=100000000", "train_batch_size must be at most 4096"),
        ("train.max_steps=1000000000", "max_steps must be at most 10000000"),
        ("train.gradient_accumulation_steps=100000", "gradient_accumulation_steps must be at most 1024"),
        ("train.num_devices=4096", "num_devices must be at most"),
        ("train.dataloader_workers=10000", "dataloader_workers must be at most"),
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
    with pytest.raises(ConfigError, match="head_learning_rate must be below 1"):
        default_config("ner").with_overrides(["train.head_learning_rate=2"]).validate()


def every_field():
    for section, cls in [("", RunConfig), *SECTIONS.items()]:
        for f in dataclasses.fields(cls):
            if f.name not in SECTIONS:
                yield config_field(section, f.name)


def with_value(field, value) -> RunConfig:
    config = default_config()
    setattr(getattr(config, field.section) if field.section else config, field.name, value)
    return config


def test_the_form_and_validation_read_the_same_bounds():
    """Each number field's widget range (read from the same metadata) is what validation accepts: an inclusive
    edge validates, an exclusive one (a learning rate of 0) is refused with the field named, and so is a
    value one step outside."""
    checked = 0
    section = default_config().train
    for field in every_field():
        if field.kind not in ("whole", "number"):
            continue
        low, high = field.widget_range(section)
        limits, step = field.limits, field.limits.step or (1 if field.kind == "whole" else 0.01)
        for edge, inclusive in ((low, limits.gt is None), (high, limits.lt is None)):
            if edge is not None:
                assert (field.problem(edge, section) is None) == (inclusive or field.kind == "whole"), field.name
        for outside in (low - step if low is not None else None, high + step if high is not None else None):
            if outside is not None:
                problem = field.problem(outside, section)
                assert problem and field.title in problem, (field.name, outside)
                with pytest.raises(ConfigError, match=field.title):
                    with_value(field, outside).validate(check_paths=False)
                checked += 1
    assert checked >= 25


def test_every_field_has_a_label_kind_and_the_choices_of_its_literal():
    fields = {f"{f.section}.{f.name}": f for f in every_field()}
    assert fields["train.optimizer"].kind == "choice" and fields["train.optimizer"].choices == (
        "adamw",
        "sgd",
        "adafactor",
    )
    assert fields["train.max_length"].kind == "whole" and fields["train.max_length"].widget_range() == (8, 8192)
    assert fields["train.learning_rate"].optional and fields["train.learning_rate"].kind == "number"
    assert fields["model.trust_remote_code"].kind == "check" and fields["peft.target_modules"].kind == "names"
    assert fields[".name"].label_key == "field.name" and fields["data.dataset"].label_key == "field.data.dataset"


def test_a_machine_holds_only_the_devices_and_cores_it_has():
    cores = os.cpu_count() or 1
    default_config().with_overrides([f"train.dataloader_workers={cores}", "train.device=cpu"]).validate()
    default_config().with_overrides([f"train.num_devices={cores}", "train.device=cpu"]).validate()
    with pytest.raises(ConfigError) as raised:
        default_config().with_overrides([f"train.num_devices={cores + 1}", "train.device=cpu"]).validate()
    assert str(raised.value) == f"Invalid config: num_devices must be at most {cores}, the CPU cores of this machine."
    # A Ray cluster counts its own GPUs and cores.
    default_config().with_overrides(
        ["train.num_devices=64", "train.executor=ray", "train.dataloader_workers=64"]
    ).validate()
