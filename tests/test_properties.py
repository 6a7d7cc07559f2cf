"""Property tests (hypothesis): whatever a user types or uploads, the config parser and the file
readers give either a valid result or the one user-error type (LabError), never another exception.

Inputs mix plausible structure (real config keys, CSV rows, CoNLL lines) with arbitrary values, so
the search reaches past the first line of each parser. Examples are few enough for the whole file to
run in well under 30 s on two cores.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lab.config import SECTIONS, RunConfig  # noqa: E402
from lab.data.readers import RawExamples, read_classification_file, read_ner_file  # noqa: E402
from lab.errors import LabError  # noqa: E402

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FOLDER = Path(tempfile.mkdtemp(prefix="lab-properties-"))

# ---- values and keys ---------------------------------------------------------------------------------
FIELD_NAMES = sorted({f.name for cls in (RunConfig, *SECTIONS.values()) for f in dataclasses.fields(cls)})
KEYS = st.one_of(st.sampled_from(FIELD_NAMES + list(SECTIONS)), st.text(max_size=12))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            "auto",
            "lora",
            "ner",
            "classification",
            "1e-3",
            "true",
            "off",
            "3",
            "-1",
            "nan",
            "imdb",
            "a,b",
            "[1]",
            "{a: 1}",
        ]
    ),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)),
    max_leaves=12,
)


def sections() -> st.SearchStrategy[dict[str, Any]]:
    """A config-shaped dict: real section and field names (mostly), arbitrary values."""

    def section(cls) -> st.SearchStrategy:
        names = [f.name for f in dataclasses.fields(cls)]
        keys = st.one_of(st.sampled_from(names), st.text(max_size=8))
        return st.one_of(st.dictionaries(keys, JSON_VALUES, max_size=6), JSON_VALUES)

    top = {name: section(cls) for name, cls in SECTIONS.items()}
    top.update(task=JSON_VALUES, name=JSON_VALUES)
    return st.fixed_dictionaries({}, optional=top).flatmap(
        lambda base: (
            st.dictionaries(KEYS, JSON_VALUES, max_size=2).map(lambda extra: {**base, **extra})
            if isinstance(base, dict)
            else st.just(base)
        )
    )


LEAF_KEYS = [("", name) for name in ("task", "name")] + [
    (section, f.name) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
]


def mutated_defaults() -> st.SearchStrategy[dict[str, Any]]:
    """The default config with one to three fields set to arbitrary values: many parse, some validate."""

    def mutate(changes: list[tuple[tuple[str, str], Any]]) -> dict[str, Any]:
        data = RunConfig().to_dict()
        for (section, name), value in changes:
            (data[section] if section else data)[name] = value
        return data

    plausible = st.one_of(
        st.integers(0, 64),
        st.floats(0, 0.4),
        st.booleans(),
        st.sampled_from(["lora", "full", "ner", "classification", "cpu", "auto", "imdb", ""]),
    )
    values = st.one_of(plausible, plausible, JSON_VALUES)
    return st.lists(st.tuples(st.sampled_from(LEAF_KEYS), values), min_size=1, max_size=3).map(mutate)


def valid_or_lab_error(make: Callable[[], Any]) -> Any:
    """The result of make(), or None when it raised a LabError; anything else fails the test."""
    try:
        return make()
    except LabError as error:
        assert str(error).strip(), "a LabError must say something"
        return None


def check_config(config: Any) -> None:
    """A parsed config validates or says why; a valid one survives a YAML round trip unchanged."""
    if config is None:
        return
    assert isinstance(config, RunConfig)
    valid = valid_or_lab_error(lambda: config.validate(check_paths=False))
    if valid is not None:
        assert RunConfig.from_yaml(config.to_yaml()) == config


# ---- the config parser ---------------------------------------------------------------------------------
@FAST
@given(st.one_of(mutated_defaults(), sections(), JSON_VALUES))
def test_from_dict_gives_a_config_or_a_config_error(data):
    check_config(valid_or_lab_error(lambda: RunConfig.from_dict(data)))


@FAST
@given(st.one_of(mutated_defaults(), sections(), JSON_VALUES))
def test_from_yaml_of_any_structure(data):
    text = yaml.safe_dump(data, allow_unicode=True)
    check_config(valid_or_lab_error(lambda: RunConfig.from_yaml(text)))


YAML_PIECES = st.sampled_from(
    [
        "train:",
        "  epochs: ",
        "  learning_rate: ",
        "peft:",
        "  method: ",
        "- ",
        "[",
        "]",
        "{",
        "}",
        ": ",
        "&a ",
        "*a",
        "!!python/object:os.system ",
        "'",
        '"',
        "\t",
        "\n",
        "\x00",
        "%YAML 1.2\n",
        "---\n",
        "... ",
        "#",
        "?",
        "|\n  ",
        ">",
    ]
)


@FAST
@given(st.lists(st.one_of(YAML_PIECES, st.text(max_size=6)), max_size=25).map("".join))
def test_from_yaml_of_any_text(text):
    check_config(valid_or_lab_error(lambda: RunConfig.from_yaml(text)))


CONFIG_KEYS = [f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
ASSIGNMENTS = st.tuples(
    st.one_of(st.sampled_from(CONFIG_KEYS + ["task", "name", "train", "data.", ".x"]), st.text(max_size=10)),
    st.sampled_from(["=", "", "=="]),
    st.one_of(
        st.sampled_from(["0.1", "1", "8", "64", "lora", "ner", "true", "", "imdb", "cpu"]),
        st.text(max_size=12),
        SCALARS.map(str),
    ),
).map("".join)


@FAST
@given(st.lists(ASSIGNMENTS, max_size=5))
def test_with_overrides_of_any_assignment(assignments):
    check_config(valid_or_lab_error(lambda: RunConfig().with_overrides(assignments)))


# ---- the file readers ----------------------------------------------------------------------------------
def written(name: str, content: bytes) -> Path:
    path = FOLDER / name
    path.write_bytes(content)
    return path


def check_examples(raw: Any, ner: bool) -> None:
    if raw is None:
        return
    assert isinstance(raw, RawExamples) and raw.inputs
    assert len(raw.inputs) == len(raw.labels) == len(raw.positions)
    for index, (inputs, labels) in enumerate(zip(raw.inputs, raw.labels)):
        assert raw.where(index)  # every example can be pointed at
        if ner:
            assert len(inputs) == len(labels) > 0 and all(isinstance(tag, str) and tag for tag in labels)
        else:
            assert isinstance(inputs, str) and inputs.strip() and isinstance(labels, str) and labels


def read(suffix: str, content: bytes) -> tuple[Any, bool]:
    path = written(f"data{suffix}", content)
    if suffix in (".conll", ".txt"):
        return valid_or_lab_error(lambda: read_ner_file(path, "tokens", "tags")), True
    if suffix == ".jsonl" and content[:1] == b"N":  # a marker in some examples: read these as NER lines
        return valid_or_lab_error(lambda: read_ner_file(path, "tokens", "tags")), True
    return valid_or_lab_error(lambda: read_classification_file(path, "text", "label")), False


SUFFIXES = st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".conll", ".txt", ".parquet"])


@FAST
@given(SUFFIXES, st.binary(max_size=300))
def test_readers_of_any_bytes(suffix, content):
    check_examples(*read(suffix, content))


CELLS = st.one_of(
    st.text(max_size=10),
    st.sampled_from(
        ['"', '""', ",", "\n", "\r\n", "\t", "pos", "neg", "1", "2.0", " ", "text", "label", "\ufeff", "\x00"]
    ),
)
QUOTED = CELLS.map(lambda cell: '"' + cell.replace('"', '""') + '"')
WELL_FORMED_ROW = st.tuples(
    st.one_of(st.text(min_size=1, max_size=10), QUOTED), st.sampled_from(["pos", "neg", "1", "2.0", '"pos"', " neg "])
).map(",".join)
CSV_TEXT = st.lists(
    st.one_of(WELL_FORMED_ROW, WELL_FORMED_ROW, st.lists(CELLS, min_size=1, max_size=4).map(",".join)), max_size=8
).map(lambda rows: "text,label\n" + "\n".join(rows))


@FAST
@given(st.sampled_from([".csv", ".tsv"]), CSV_TEXT)
def test_readers_of_csv_like_text(suffix, text):
    check_examples(*read(suffix, text.replace(",", "\t").encode() if suffix == ".tsv" else text.encode()))


JSON_LINES = st.lists(
    st.one_of(
        st.fixed_dictionaries({"text": JSON_VALUES, "label": JSON_VALUES}),
        st.fixed_dictionaries({"tokens": JSON_VALUES, "tags": JSON_VALUES}),
        st.fixed_dictionaries(
            {
                "tokens": st.lists(st.text(max_size=5), max_size=4),
                "tags": st.lists(st.sampled_from(["O", "B-PER", "I-PER", "X", ""]), max_size=4),
            }
        ),
        JSON_VALUES,
    ),
    max_size=6,
)


@FAST
@given(st.sampled_from([".jsonl", ".json"]), st.booleans(), JSON_LINES)
def test_readers_of_json_like_text(suffix, as_ner, records):
    lines = [json.dumps(record, allow_nan=True) for record in records]
    text = ("[" + ",".join(lines) + "]") if suffix == ".json" else "\n".join(lines)
    path = written(f"records{suffix}", text.encode())
    if as_ner:
        check_examples(valid_or_lab_error(lambda: read_ner_file(path, "tokens", "tags")), True)
    else:
        check_examples(valid_or_lab_error(lambda: read_classification_file(path, "text", "label")), False)


CONLL_LINES = st.lists(
    st.one_of(
        st.just(""),
        st.just("-DOCSTART- O"),
        st.tuples(
            st.text(max_size=6),
            st.sampled_from(["\t", " ", "  ", "\t\t"]),
            st.sampled_from(["O", "B-PER", "I-PER", "E-LOC", "S-LOC", "B-", "X-PER", "b-per", "O O", ""]),
        ).map("".join),
        st.text(max_size=12),
    ),
    max_size=12,
)


@FAST
@given(CONLL_LINES, st.sampled_from(["\n", "\r\n"]))
def test_conll_reader_of_any_lines(lines, newline):
    check_examples(*read(".conll", newline.join(lines).encode()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONLL_LINES, st.sampled_from(["auto", "IOB1", "IOB2", "BIOES"]))
def test_ner_loading_with_scheme_checks_of_any_lines(lines, scheme):
    """The whole loading path (schemes, label names, carving splits), not only the reader."""
    from lab.config import DataConfig
    from lab.data.splits import load_splits

    path = written("full.conll", "\n".join(lines * 3).encode())
    config = DataConfig(dataset="", train_file=str(path), tag_scheme=scheme)
    loaded = valid_or_lab_error(lambda: load_splits(config, "ner", 42, log=lambda message: None))
    if loaded is not None:
        assert loaded.label_names[0] == "O" and loaded.tag_scheme in ("IOB2", "BIOES")
        assert all(len(loaded.splits[split]) > 0 for split in ("train", "validation", "test"))
