"""The English and Chinese catalogues (ui/locales): complete, alike in their placeholders, used as keyed."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from lab.config import SECTIONS, DataConfig, RunConfig
from lab.errors import DataError, LabError, Message
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


def _codes_said_in_lab() -> dict[str, list[tuple[str, set[str] | None]]]:
    """Every message code the library's source gives a LabError or a Message, with the params each call
    passes (None where a `**mapping` hides them), found by reading the source: a code nobody tested
    still needs its catalogue entries."""
    said: dict[str, list[tuple[str, set[str] | None]]] = {}
    for path in sorted((REPO / "lab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            keywords = {keyword.arg: keyword.value for keyword in node.keywords}
            code = keywords.get("code")
            called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if code is None and called == "Message" and len(node.args) >= 2:
                code = node.args[1]
            if not (isinstance(code, ast.Constant) and isinstance(code.value, str) and code.value):
                continue
            params = None if None in keywords else {name for name in keywords if name != "code"}
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            said.setdefault(code.value, []).append((where, params))
    return said


def test_every_code_the_library_says_has_both_languages_with_its_params():
    english, chinese = i18n.catalogue("en"), i18n.catalogue("zh")
    said = _codes_said_in_lab()
    assert len(said) >= 20, sorted(said)  # the scan finds the library's codes
    for code, calls in said.items():
        key = f"messages.{code}"
        assert key in english and key in chinese, (key, calls)
        for where, params in calls:
            if params is not None:
                assert i18n.placeholders(english[key]) == params, (where, key, params)


def test_every_message_in_the_catalogue_is_a_code_the_library_says():
    """No catalogue entry outlives its sentence: each `messages.CODE` is a string in lab/'s source."""
    source = "\n".join(path.read_text(encoding="utf-8") for path in (REPO / "lab").rglob("*.py"))
    unused = [key for key in i18n.catalogue("en") if key.startswith("messages.") and f'"{key[9:]}"' not in source]
    assert not unused, unused


def library_errors(tmp_path: Path, sentiment_csv: Path) -> list[LabError | Message]:
    """What the library raises or records, made the way a user meets it."""
    from lab.config import ModelConfig as Model
    from lab.data.splits import load_splits
    from lab.launch.execute import describe_failure
    from lab.model.loading import load_model

    def raised(call) -> LabError:
        with pytest.raises(LabError) as caught:
            call()
        return caught.value

    def load(**data) -> None:
        load_splits(DataConfig(**data), "classification", 0, log=print)

    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "one.csv").write_text("text,label\na,x\nb,x\n")
    return [
        raised(lambda: load(dataset="", train_file=str(tmp_path / "no.csv"))),
        raised(lambda: load(dataset="", train_file=str(tmp_path / "empty.csv"))),
        raised(lambda: load(dataset="", train_file=str(sentiment_csv), text_column="review")),
        raised(lambda: load(dataset="", train_file=str(tmp_path / "one.csv"))),
        raised(lambda: load_splits(DataConfig(dataset="conll2003", source="offline"), "ner", 0, log=print)),
        raised(lambda: load_model(Model(name_or_path="no-such/model"), "classification", ["a", "b"])),
        raised(lambda: load_model(Model(name_or_path="/no/such/folder"), "classification", ["a", "b"])),
        describe_failure(RuntimeError("DefaultCPUAllocator: can't allocate memory"), "r1", False)[1],
        describe_failure(KeyboardInterrupt(), "r1", False)[1],
        describe_failure(OSError(28, "No space left on device", "/runs/r1/x"), "r1", False)[1],
    ]


def test_the_english_catalogue_says_what_the_library_writes(tmp_path, sentiment_csv):
    """The English entry filled with the params is the library's own sentence: the two cannot drift apart."""
    english = i18n.catalogue("en")
    for said in library_errors(tmp_path, sentiment_csv):
        assert said.code, str(said)
        assert english[f"messages.{said.code}"].format(**said.params) == str(said), said.code


def test_a_library_error_reads_in_chinese_by_its_code(tmp_path, sentiment_csv, monkeypatch):
    monkeypatch.setattr(i18n, "language", lambda: "zh")
    for said in library_errors(tmp_path, sentiment_csv):
        translated = i18n.message(said)
        assert translated != str(said) and re.search(r"[\u4e00-\u9fff]", translated), said.code


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
    "said, chinese",
    [
        (
            DataError("Data file /tmp/x.csv does not exist.", code="file_missing", path="/tmp/x.csv"),
            "数据文件 /tmp/x.csv 不存在。",
        ),
        (Message("evaluating at step 25", "stage_evaluating", step=25), "正在评估第 25 步"),
        # Without a code, or with one the catalogue lacks, the library's English shows as written.
        (LabError("Something the catalogue has never seen."), "Something the catalogue has never seen."),
        (Message("Something new.", "no_such_code"), "Something new."),
        ("Data file /tmp/x.csv does not exist.", "Data file /tmp/x.csv does not exist."),
    ],
)
def test_library_messages_read_in_chinese(said, chinese, monkeypatch):
    monkeypatch.setattr(i18n, "language", lambda: "zh")
    assert i18n.message(said) == chinese


def test_an_english_page_shows_the_librarys_own_text():
    said = Message("Finished in 12 s.", "finished", seconds="12")
    assert i18n.message(said) == "Finished in 12 s." and i18n.message(LabError("Plain.")) == "Plain."


def test_an_error_keeps_its_code_through_a_pickle():
    """A worker process or a Ray job hands its error back pickled: the code must survive."""
    import pickle

    error = pickle.loads(pickle.dumps(DataError("Data file x does not exist.", code="file_missing", path="x")))
    assert type(error) is DataError and (error.code, error.params, str(error)) == (
        "file_missing",
        {"path": "x"},
        "Data file x does not exist.",
    )
    said = pickle.loads(pickle.dumps(error.message))
    assert isinstance(said, Message) and said.code == "file_missing" and said == "Data file x does not exist."
