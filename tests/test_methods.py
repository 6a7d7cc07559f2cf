"""The method registry: one record per PEFT method, from which the config's choices and families, the
defaults, the catalogues' words and the benchmarks' rows all follow."""

from __future__ import annotations

import dataclasses

import pytest

from lab import config as lab_config
from lab.methods.registry import METHODS, MethodSpec, register_method
from ui import i18n

SETTINGS_FIELDS = {field.name for field in dataclasses.fields(lab_config.PeftSettings)} - {"method"}


def test_the_config_offers_exactly_the_registered_methods_in_their_order():
    assert tuple(METHODS) == lab_config.PEFT_METHODS
    assert "adapter" in lab_config.PEFT_METHODS
    parsed = lab_config.RunConfig.from_dict({"peft": {"method": "adapter"}})
    assert parsed.validate(check_paths=False).peft.method == "adapter"


def test_the_config_families_are_read_from_the_records():
    assert lab_config.LORA_FAMILY == ("lora", "adalora", "loha", "lokr")
    assert lab_config.VIRTUAL_TOKEN_METHODS == ("prompt", "prefix")
    assert lab_config.NO_ADAPTER_METHODS == ("full", "head")
    assert "adapter" not in lab_config.MERGEABLE_METHODS and "lora" in lab_config.MERGEABLE_METHODS


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_has_its_words_in_both_catalogues(name):
    for language in ("en", "zh"):
        words = i18n.catalogue(language)
        assert words.get(f"method.{name}.name", "").strip(), (language, name)
        assert words.get(f"method.{name}.what", "").strip(), (language, name)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_has_defaults_for_both_tasks_and_reads_only_real_settings(name):
    spec = METHODS[name]
    for task in lab_config.TASKS:
        assert 0 < spec.learning_rates[task] < 1 and 0 < spec.head_learning_rates[task] < 1
    assert set(spec.settings) <= SETTINGS_FIELDS, set(spec.settings) - SETTINGS_FIELDS
    assert spec.pooling in lab_config.POOLINGS


def test_the_quality_benchmark_has_a_row_for_every_method():
    from bench.quality import chosen_methods

    assert chosen_methods("all") == list(METHODS)


def test_compare_all_runs_every_registered_method():
    from lab.groups.compare import parse_methods

    assert parse_methods("all") == list(METHODS) and len(METHODS) == 10


def test_a_method_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="twice"):
        register_method(MethodSpec("lora", "peft", learning_rates={"classification": 1e-3, "ner": 1e-3}))
