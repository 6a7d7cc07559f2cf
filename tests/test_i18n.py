"""The English and Chinese catalogues (ui/locales): complete, alike in their placeholders, used as keyed."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from lab.config import SECTIONS, DataConfig, RunConfig
from ui import i18n

REPO = Path(__file__).resolve().parents[1]
UI_FILES = [REPO / "app.py", *sorted((REPO / "pages").glob("*.py")), *sorted((REPO / "ui").glob("*.py"))]


def test_every_key_has_both_languages_and_the_same_placeholders():
    english, chinese = i18n.catalogue("en"), i18n.catalogue("zh")
    translated = {key for key in chinese if not key.startswith("help.")}  # help's English is in lab.config
    assert set(english) == translated, set(english) ^ translated
    for key, text in english.items():
        assert i18n.placeholders(text) == i18n.placeholders(chinese[key]), key
        assert chinese[key].strip(), key


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise yaml.constructor.ConstructorError(None, None, f"keys given twice: {twice}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_no_catalogue_key_is_given_twice(language):
    yaml.load((REPO / "ui" / "locales" / f"{language}.yaml").read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)


def test_every_config_field_with_help_has_its_chinese_help():
    chinese = i18n.catalogue("zh")
    for section, cls in (("", RunConfig), *SECTIONS.items()):
        for field in dataclasses.fields(cls):
            if field.metadata.get("help"):
                key = f"help.{section + '.' if section else ''}{field.name}"
                assert re.search(r"[\u4e00-\u9fff]", chinese.get(key, "")), key


def test_every_key_the_pages_name_is_in_the_catalogue():
    english = i18n.catalogue("en")
    used = set()
    for path in UI_FILES:
        used |= set(re.findall(r"""\bt\(\s*["']([\w.]+)["']""", path.read_text(encoding="utf-8")))
    assert used, "no t(...) calls found"
    assert not used - set(english), sorted(used - set(english))


def library_messages(tmp_path: Path, sentiment_csv: Path) -> dict[str, str]:
    """What the library writes, for a message template each, made the way a user meets them."""
    from lab.config import ModelConfig as Model
    from lab.data.splits import load_splits
    from lab.errors import LabError
    from lab.launch.execute import describe_failure
    from lab.model.loading import load_model

    def raised(call) -> str:
        with pytest.raises(LabError) as caught:
            call()
        return str(caught.value)

    written = {
        "file_missing": raised(
            lambda: load_splits(
                DataConfig(dataset="", train_file=str(tmp_path / "no.csv")), "classification", 0, log=print
            )
        ),
        "missing_column": raised(
            lambda: load_splits(
                DataConfig(dataset="", train_file=str(sentiment_csv), text_column="review"),
                "classification",
                0,
                log=print,
            )
        ),
        "conll_offline": raised(
            lambda: load_splits(DataConfig(dataset="conll2003", source="offline"), "ner", 0, log=print)
        ),
        "model_offline": raised(lambda: load_model(Model(name_or_path="no-such/model"), "classification", ["a", "b"])),
        "oom": describe_failure(RuntimeError("DefaultCPUAllocator: can't allocate memory"), "r1", False)[1],
        "ctrl_c": describe_failure(KeyboardInterrupt(), "r1", False)[1],
    }
    (tmp_path / "empty.csv").write_text("")
    written["file_empty"] = raised(
        lambda: load_splits(
            DataConfig(dataset="", train_file=str(tmp_path / "empty.csv")), "classification", 0, log=print
        )
    )
    return written


def test_message_templates_match_what_the_library_writes(tmp_path, sentiment_csv):
    patterns = dict(i18n._message_patterns())
    for key, text in library_messages(tmp_path, sentiment_csv).items():
        assert patterns[f"messages.{key}"].match(text), (key, text)


@pytest.mark.parametrize(
    "dataset, task, validation_file",
    [
        ("imdb", "classification", None),
        ("rotten_tomatoes", "classification", None),
        ("wnut16", "ner", None),
        ("", "classification", "sentiment"),  # a file with its own validation split: only test is carved
    ],
)
def test_the_data_pages_source_and_notes_read_in_chinese(dataset, task, validation_file, sentiment_csv, monkeypatch):
    from lab.views.data_view import data_overview

    files = {"train_file": str(sentiment_csv), "validation_file": str(sentiment_csv)} if validation_file else {}
    overview = data_overview(DataConfig(dataset=dataset, **files), task)
    monkeypatch.setattr(i18n, "language", lambda: "zh")
    written = ([] if validation_file else [overview.source]) + list(overview.notes)
    assert written
    for text in written:
        assert i18n.message(text) != text, text


@pytest.mark.parametrize(
    "english, chinese",
    [
        ("Data file /tmp/x.csv does not exist.", "数据文件 /tmp/x.csv 不存在。"),
        (
            "/d/t.csv has no text column 'review'; its columns are: 'a', 'b'. Set data.text_column to one of them.",
            "/d/t.csv 没有 text 列 'review'；它的列有：'a', 'b'。请把 data.text_column 设为其中之一。",
        ),
        ("evaluating at step 25", "正在评估第 25 步"),
        ("Something the catalogue has never seen.", "Something the catalogue has never seen."),
    ],
)
def test_library_messages_read_in_chinese(english, chinese, monkeypatch):
    monkeypatch.setattr(i18n, "language", lambda: "zh")
    assert i18n.message(english) == chinese


def test_a_name_used_twice_in_a_template_must_match_the_same_text_twice(monkeypatch):
    monkeypatch.setattr(i18n, "language", lambda: "zh")
    mismatched = "/d/t.csv has no text column 'review'; its columns are: 'a'. Set data.label_column to one of them."
    assert i18n.message(mismatched) == mismatched
