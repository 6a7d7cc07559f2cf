"""The table of bad inputs (issue 5): every way a user can hand the lab something wrong, through the
library, the CLI (in-process and as a real `python -m lab` process) and the app (AppTest).

Each case checks three things a user would notice: the message says what is wrong and where (file
and row / line, or the config key), the CLI prints it as exactly one line on stderr with a non-zero
exit code and no traceback, and a completed run stored before the mistake is byte-for-byte intact.
Inputs that look odd but are legal (quoted newlines, extra columns, long sentences, no final blank
line, a decoder-only model for NER) must train.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.config import DataConfig, RunConfig
from lab.errors import ConfigError, DataError, ModelError
from lab.launch.execute import execute_run
from lab.launch.scripted import scripted_train
from lab.runs.store import RunStore

REPO = Path(__file__).resolve().parents[1]
ROWS = "".join(f"review number {i} of the film,{'pos' if i % 2 else 'neg'}\n" for i in range(20))
SENTENCES = "".join(f"we\tO\nmet\tO\nAnn{i}\tB-PER\nLee\tI-PER\nin\tO\nRome\tB-LOC\n\n" for i in range(12))


# ---- the store that must survive every case ------------------------------------------------------
@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-input-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_RUNS_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def kept_run(runs_dir) -> str:
    """A completed run stored before any bad input arrives."""
    store = RunStore(runs_dir)
    run = store.create_run(RunConfig(name="keep-me,steps=3"))
    assert execute_run(store, run.id, scripted_train, threading.Event()) == "completed"
    return run.id


def snapshot(store: RunStore, run_id: str) -> tuple[Any, ...]:
    """The run's record, its events and a hash of every file in its folder."""
    folder = store.run_dir(run_id)
    files = {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
    events = [(seq, event.to_dict()) for seq, event in store.events_since(run_id)]
    return store.get_run(run_id).to_dict(), events, files


@pytest.fixture
def intact(runs_dir, kept_run):
    """After the test: the kept run is unchanged and the store is not corrupted."""
    store = RunStore(runs_dir)
    before = snapshot(store, kept_run)
    yield store
    after_store = RunStore(runs_dir)  # a fresh reader, as a restarted app would open it
    assert snapshot(after_store, kept_run) == before
    assert after_store.integrity_check() == "ok"


# ---- helpers ------------------------------------------------------------------------------------
def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def cli(capsys, *args: Any) -> tuple[int, str, str]:
    """`python -m lab ...` in this process (fast); returns exit code, stdout, stderr."""
    from lab.cli.main import main

    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code: int, err: str, message: str) -> str:
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert re.search(message, lines[0]), lines[0]
    return lines[0]


def lab_process(*args: Any, runs_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), LAB_RUNS_DIR=str(runs_dir))
    return subprocess.run(
        [sys.executable, "-m", "lab", *map(str, args)], capture_output=True, text=True, cwd=REPO, env=env, timeout=600
    )


def stored_runs(runs_dir: Path) -> dict[str, dict]:
    """`python -m lab runs --json`, by run id: what a script or another terminal sees."""
    listing = lab_process("runs", "--json", runs_dir=runs_dir)
    assert listing.returncode == 0, listing.stderr
    return {run["id"]: run for run in json.loads(listing.stdout)}


def train_args(task: str, train_file: Path, model: str, *extra: Any) -> list[Any]:
    return [
        "train",
        "--task",
        task,
        "--train-file",
        train_file,
        "--model",
        model,
        "--max-steps",
        1,
        "--max-length",
        32,
        "--batch-size",
        8,
        "--set",
        "train.device=cpu",
        *extra,
    ]


# ---- data files -----------------------------------------------------------------------------------
def parquet_bytes() -> bytes:
    import io

    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"text": [f"t{i}" for i in range(50)], "label": ["pos", "neg"] * 25}).to_parquet(buffer)
    return buffer.getvalue()


BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))

# (file name, content, task, extra data settings, expected error, or None when the file must work)
DATA_CASES = [
    pytest.param("empty.csv", b"", "classification", {}, r"empty\.csv is empty", id="empty-csv"),
    pytest.param("blank.jsonl", "\n  \n", "classification", {}, r"blank\.jsonl is empty", id="blank-jsonl"),
    pytest.param("empty.conll", b"", "ner", {}, r"empty\.conll is empty", id="empty-conll"),
    pytest.param(
        "cut.csv",
        'text,label\n"good film,pos\nbad film,neg\n',
        "classification",
        {},
        r"cut\.csv is not a valid CSV file: .*EOF inside string.* double quotes",
        id="truncated-csv-quote",
    ),
    pytest.param(
        "cut-row.csv",
        "text,label\ngood film,pos\nbad film",
        "classification",
        {},
        r"cut-row\.csv, row 3: the label in column 'label' is blank",
        id="truncated-csv-row",
    ),
    pytest.param(
        "cut.jsonl",
        '{"text": "a", "label": "pos"}\n{"text": "b", "lab',
        "classification",
        {},
        r"cut\.jsonl, line 2: not valid JSON",
        id="truncated-jsonl",
    ),
    pytest.param(
        "cut.parquet",
        parquet_bytes()[:300],
        "classification",
        {},
        r"cut\.parquet is not a readable Parquet file",
        id="truncated-parquet",
    ),
    pytest.param("image.csv", BINARY, "classification", {}, r"image\.csv looks like a binary file", id="binary-csv"),
    pytest.param("image.conll", BINARY, "ner", {}, r"image\.conll looks like a binary file", id="binary-conll"),
    pytest.param(
        "excel.csv",
        ("text,label\n" + ROWS).encode("utf-16"),
        "classification",
        {},
        r"excel\.csv is UTF-16 text.*Save it as UTF-8",
        id="utf16-csv",
    ),
    pytest.param(
        "latin1.csv",
        ("text,label\n" + ROWS + "naïve film,pos\n").encode("latin-1"),
        "classification",
        {},
        r"latin1\.csv, line 22: bytes that are not UTF-8 .*Save the file as UTF-8",
        id="latin1-csv",
    ),
    pytest.param(
        "latin1.conll",
        (SENTENCES + "café\tO\n").encode("latin-1"),
        "ner",
        {},
        r"latin1\.conll, line 85: bytes that are not UTF-8",
        id="latin1-conll",
    ),
    pytest.param(
        "missing.csv",
        "review,label\n" + ROWS,
        "classification",
        {},
        r"missing\.csv has no text column 'text'; its columns are: 'review', 'label'\. "
        r"Set data\.text_column",
        id="csv-missing-column",
    ),
    pytest.param(
        "renamed.csv",
        "text,sentiment\n" + ROWS,
        "classification",
        {},
        r"renamed\.csv has no label column 'label'; its columns are: 'text', 'sentiment'",
        id="csv-renamed-column",
    ),
    pytest.param(
        "extra.csv",
        "id,text,label,notes\n" + "".join(f"{i},{line.rstrip()},n{i}\n" for i, line in enumerate(ROWS.splitlines())),
        "classification",
        {},
        None,
        id="csv-extra-columns",
    ),
    pytest.param(
        "quoted.csv",
        'text,label\n"first line,\nsecond ""line""",pos\n' + ROWS,
        "classification",
        {},
        None,
        id="csv-quoted-newlines",
    ),
    pytest.param(
        "mixed.csv",
        "text,label\n" + "".join(f"text {i},{['1', '2.0', 'pos', '2'][i % 4]}\n" for i in range(24)),
        "classification",
        {},
        None,
        id="csv-mixed-label-types",
    ),
    pytest.param(
        "mixed.jsonl",
        "".join(json.dumps({"text": f"t {i}", "label": [1, "1", 2, 2.0][i % 4]}) + "\n" for i in range(24)),
        "classification",
        {},
        None,
        id="jsonl-mixed-label-types",
    ),
    pytest.param(
        "listy.jsonl",
        '{"text": "a", "label": "pos"}\n{"text": "b", "label": ["pos", "neg"]}\n',
        "classification",
        {},
        r"listy\.jsonl, line 2: the label in column 'label' is a list",
        id="jsonl-label-is-a-list",
    ),
    pytest.param(
        "blanks.csv",
        "text,label\n" + ROWS + "good film,  \n",
        "classification",
        {},
        r"blanks\.csv, row 22: the label in column 'label' is blank",
        id="csv-blank-label",
    ),
    pytest.param(
        "oneclass.csv",
        "text,label\n" + "".join(f"text {i},pos\n" for i in range(20)),
        "classification",
        {},
        r"oneclass\.csv: every training example has the label 'pos'; classification needs at least two",
        id="csv-single-class",
    ),
    pytest.param(
        "broken.jsonl",
        '{"text": "a", "label": "pos"}\n\n{"text": "b", "label" "neg"}\n',
        "classification",
        {},
        r"broken\.jsonl, line 3: not valid JSON \(Expecting ':' delimiter\)",
        id="jsonl-broken-line",
    ),
    pytest.param(
        "deep.jsonl",
        "[" * 50_000 + "\n",
        "classification",
        {},
        r"deep\.jsonl, line 1: the JSON is nested too deeply",
        id="jsonl-nested-too-deep",
    ),
    pytest.param(
        "ragged.conll",
        SENTENCES + "Bo\tNNP\tB-PER\n",
        "ner",
        {},
        r"ragged\.conll, line 85: 3 columns, but line 1 has 2",
        id="conll-ragged-columns",
    ),
    pytest.param(
        "scheme.conll",
        SENTENCES + "Bo\tX-PER\n",
        "ner",
        {},
        r"scheme\.conll, line 85: tag 'X-PER' is not valid in the IOB2 scheme",
        id="conll-tag-outside-scheme",
    ),
    pytest.param(
        "bioes.conll",
        SENTENCES + "Bo\tS-PER\n",
        "ner",
        {"tag_scheme": "IOB2"},
        r"bioes\.conll, line 85: tag 'S-PER' is not valid in the IOB2 scheme",
        id="conll-tag-outside-chosen-scheme",
    ),
    pytest.param(
        "untagged.conll",
        SENTENCES.replace("B-PER", "O").replace("I-PER", "O").replace("B-LOC", "O"),
        "ner",
        {},
        r"untagged\.conll: every tag is 'O', so there is no entity to learn",
        id="conll-no-entities",
    ),
    pytest.param(
        "long.conll",
        "".join(f"word{j}\tO\n" for j in range(400)) + "Ann\tB-PER\n\n" + SENTENCES,
        "ner",
        {},
        None,
        id="conll-sentence-longer-than-max-length",
    ),
    pytest.param("open-end.conll", SENTENCES + "last\tO\nAnn\tB-PER", "ner", {}, None, id="conll-no-blank-line-at-end"),
]

# What the legal-but-odd files must load as.
WORKS: dict[str, Callable[[Any], None]] = {
    "extra.csv": lambda loaded: loaded.label_names == ["neg", "pos"],
    "quoted.csv": lambda loaded: any(
        text == 'first line,\nsecond "line"' for split in loaded.splits.values() for text in split["text"]
    ),
    "mixed.csv": lambda loaded: loaded.label_names == ["1", "2", "pos"],  # "2.0" is the class "2"
    "mixed.jsonl": lambda loaded: loaded.label_names == ["1", "2"],
    "long.conll": lambda loaded: (
        max(len(words) for split in loaded.splits.values() for words in split["tokens"]) == 401
    ),
    "open-end.conll": lambda loaded: (
        ["last", "Ann"] in [words for split in loaded.splits.values() for words in split["tokens"]]
    ),
}


@pytest.mark.parametrize("name, content, task, settings, error", DATA_CASES)
def test_bad_data_file_through_library_and_cli(
    name, content, task, settings, error, tmp_path, tiny_model_dir, intact, capsys
):
    path = write(tmp_path / name, content)
    data_cfg = DataConfig(dataset="", train_file=str(path), **settings)
    from lab.data.splits import load_splits

    if error is None:
        assert WORKS[name](load_splits(data_cfg, task, 42, log=lambda message: None))
    else:
        with pytest.raises(DataError, match=error):
            load_splits(data_cfg, task, 42, log=lambda message: None)

    sets = [arg for key, value in settings.items() for arg in ("--set", f"data.{key}={value}")]
    code, out, err = cli(capsys, *train_args(task, path, tiny_model_dir, *sets))
    newest = intact.list_runs(limit=1)[0]
    if error is None:
        assert code == 0, err
        assert newest.status == "completed" and newest.metrics
    else:
        line = assert_one_error_line(code, err, error)
        # The failed run is in the history with the same message, next to the runs that were there.
        assert newest.status == "failed" and newest.message in line


# ---- models ---------------------------------------------------------------------------------------
def model_folder(kind: str, tmp_path: Path, tiny_model_dir: str) -> str:
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "notes":
        write(folder / "notes.txt", "not a model")
    elif kind == "broken-config":
        write(folder / "config.json", "{not json")
    elif kind == "no-weights":  # the tokenizer and config of a model, its weights lost
        for path in Path(tiny_model_dir).iterdir():
            if path.suffix != ".safetensors":
                write(folder / path.name, path.read_bytes())
    elif kind == "a-file":
        return str(write(folder / "model.bin", b"\x00" * 64))
    return str(folder)


@pytest.mark.parametrize(
    "model, hub_answers, error",
    [
        pytest.param(
            "no-such-org/no-such-model",
            True,
            r"Model 'no-such-org/no-such-model' was not found on the Hugging "
            r"Face hub or as a local folder .*Check the id, or use 'minilm'",
            id="id-that-does-not-exist",
        ),
        pytest.param(
            "bert-base-uncased",
            False,
            r"Cannot load model 'bert-base-uncased': the Hugging Face hub is "
            r"unreachable \(offline mode\)\. Use 'minilm'",
            id="unreachable-hub",
        ),
        pytest.param(
            "notes",
            None,
            r"Folder .*notes is not a model: a model is a folder with a config\.json",
            id="folder-that-is-not-a-model",
        ),
        pytest.param("a-file", None, r"File .*model\.bin is not a model", id="file-instead-of-folder"),
        pytest.param(
            "broken-config", None, r"Could not load the model in .*broken-config: .*config", id="broken-config"
        ),
        pytest.param(
            "no-weights",
            None,
            r"Could not load the model in .*no-weights: .*model\.safetensors",
            id="folder-without-weights",
        ),
    ],
)
def test_bad_model_through_library_and_cli(
    model, hub_answers, error, tmp_path, tiny_model_dir, sentiment_csv, intact, monkeypatch, capsys
):
    from lab.training.engine import train

    if hub_answers is None:
        model = model_folder(model, tmp_path, tiny_model_dir)
    else:
        # HF_HUB_OFFLINE=1 keeps transformers from the network either way; this decides what the lab
        # believes: a hub that answers (so the id must be wrong) or one that does not.
        monkeypatch.setattr("lab.model.loading.is_offline", lambda: not hub_answers)
    config = RunConfig.from_dict(
        {
            "data": {"dataset": "", "train_file": str(sentiment_csv)},
            "model": {"name_or_path": model},
            "train": {"max_steps": 1, "device": "cpu"},
        }
    )
    with pytest.raises(ModelError, match=error):
        train(config, tmp_path / "out")
    code, _, err = cli(capsys, *train_args("classification", sentiment_csv, model))
    assert_one_error_line(code, err, error)


def build_tiny_gpt2(path: Path, texts: list[str]) -> str:
    """A 2-layer GPT-2 with a byte-level BPE vocabulary trained on `texts` (no download)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    tokenizer.save_pretrained(path)
    end = tokenizer.eos_token_id
    GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=128,
            bos_token_id=end,
            eos_token_id=end,
        )
    ).save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("task, method", [("ner", "full"), ("classification", "lora")])
def test_decoder_only_model_trains_and_predicts(task, method, tmp_path, fixtures_dir, sentiment_csv, ner_conll, intact):
    """transformers has GPT2ForTokenClassification / ForSequenceClassification, so a decoder-only LM is
    supported: GPT-2 has no padding token, and the lab pads with its end-of-text token."""
    from lab.inference.predict import Predictor
    from lab.model.testing import fixture_texts
    from lab.training.engine import train

    model = build_tiny_gpt2(tmp_path / "gpt2", fixture_texts(fixtures_dir))
    config = RunConfig.from_dict(
        {
            "task": task,
            "data": {"dataset": "", "train_file": str(ner_conll if task == "ner" else sentiment_csv)},
            "model": {"name_or_path": model},
            "peft": {"method": method},
            "train": {"max_steps": 3, "max_length": 32, "train_batch_size": 8, "device": "cpu", "learning_rate": 1e-3},
        }
    )
    result = train(config, tmp_path / "out")
    assert result.status == "completed" and result.metrics
    predictor = Predictor(tmp_path / "out")
    predictions = predictor.predict(["we met Ann Lee in Rome", "a dull film"])
    if task == "ner":
        assert [len(p.tags) for p in predictions] == [6, 3]
    else:
        assert all(p.label in ("neg", "pos") for p in predictions)


# ---- hyper-parameters: YAML, --set and flags --------------------------------------------------------
YAML_CASES = [
    pytest.param("train:\n  learning_rate: 5\n", r"learning_rate must be below 1", id="lr-out-of-range"),
    pytest.param(
        "train:\n  train_batch_size: many\n",
        r"train\.train_batch_size must be a whole number, got 'many'",
        id="batch-size-wrong-type",
    ),
    pytest.param("train:\n  epochs: -1\n", r"epochs must be > 0", id="negative-epochs"),
    pytest.param("train:\n  max_length: 100000\n", r"max_length must be between 8 and 8192", id="max-length-too-long"),
    pytest.param("train:\n  seed: -3\n", r"seed must be between 0 and 4294967295", id="negative-seed"),
    pytest.param("peft:\n  lora_dropout: 1.5\n", r"lora_dropout must be between 0 and 1", id="dropout-out-of-range"),
    pytest.param("peft:\n  method: lora2\n", r"peft\.method must be one of full, head, lora", id="unknown-method"),
    pytest.param(
        "model:\n  trust_remote_code: perhaps\n",
        r"model\.trust_remote_code must be true or false",
        id="bool-wrong-type",
    ),
    pytest.param("train: [1, 2]\n", r"train must be a section of key: value pairs", id="section-wrong-type"),
    pytest.param(
        "train:\n  learnig_rate: 0.001\n",
        r"Unknown config key 'train\.learnig_rate'\. Did you mean "
        r"'learning_rate'\?",
        id="unknown-key-named",
    ),
    pytest.param("trian:\n  epochs: 1\n", r"Unknown config key 'trian'\. Did you mean 'train'\?", id="unknown-section"),
    pytest.param("train: {epochs: 1\n", r"not valid YAML: line 2, column 1: expected ',' or '}'", id="not-yaml"),
    pytest.param("- a\n- list\n", r"A config must be a mapping of sections, not list", id="yaml-list"),
    pytest.param("a: " + "[" * 600 + "\n", r"nested too deeply", id="yaml-nested-too-deep"),
    pytest.param(
        "name: !!python/object/apply:os.system ['echo owned']\n",
        r"could not determine a constructor",
        id="yaml-python-tag-not-executed",
    ),
]


@pytest.mark.parametrize("text, error", YAML_CASES)
def test_bad_yaml_config_through_library_and_cli(text, error, tmp_path, intact, capsys):
    path = write(tmp_path / "run.yaml", text)
    with pytest.raises(ConfigError, match=error):
        RunConfig.load(path).validate(check_paths=False)
    code, _, err = cli(capsys, "train", path)
    line = assert_one_error_line(code, err, error)
    if "not valid YAML" in line or "Unknown config key" in line:
        assert str(path) in line  # the file is named, with the line or the key


@pytest.mark.parametrize(
    "args, error",
    [
        pytest.param(["--set", "train.max_length=4"], r"max_length must be between 8 and 8192", id="set-out-of-range"),
        pytest.param(["--set", "train.epochs=abc"], r"train\.epochs must be a number, got 'abc'", id="set-wrong-type"),
        pytest.param(["--set", "train.eval_steps=-5"], r"eval_steps must be >= 0", id="set-negative"),
        pytest.param(
            ["--set", "data.validation_share=0.9"],
            r"validation_share must be between 0 and 0\.5",
            id="set-share-out-of-range",
        ),
        pytest.param(["--set", "model.dropout=1"], r"dropout must be between 0 and 1", id="set-dropout"),
        pytest.param(
            ["--set", "train.warmup_ratio=.nan"], r"train\.warmup_ratio must be a finite number", id="set-nan"
        ),
        pytest.param(["--set", "train.learning_rate"], r"--set expects key=value", id="set-without-value"),
        pytest.param(["--set", "peft.rank=4"], r"Unknown config key 'peft\.rank'\. Known keys", id="set-unknown-key"),
        pytest.param(["--batch-size", "-4"], r"train_batch_size must be >= 1", id="flag-negative-batch"),
        pytest.param(
            ["--lr", "fast"], r"train\.learning_rate must be a number or auto, got 'fast'", id="flag-wrong-type"
        ),
        pytest.param(["--epochs", "0"], r"epochs must be > 0", id="flag-zero-epochs"),
        pytest.param(["--seed", "1.5"], r"train\.seed must be a whole number, got 1\.5", id="flag-fractional-seed"),
        pytest.param(["--seed", "99999999999"], r"seed must be between 0 and 4294967295", id="flag-seed-too-big"),
        pytest.param(["--train-subset", "-1"], r"train_subset must be >= 0", id="flag-negative-subset"),
        pytest.param(
            ["--max-length", "1e9"],
            r"train\.max_length must be a whole number|max_length must be between",
            id="flag-max-length",
        ),
    ],
)
def test_bad_hyperparameters_on_the_command_line(args, error, intact, capsys):
    from lab.cli.flags import config_from_args
    from lab.cli.main import build_parser

    with pytest.raises(ConfigError, match=error):
        config_from_args(build_parser().parse_args(["train", *args]))
    code, _, err = cli(capsys, "train", *args)
    assert_one_error_line(code, err, error)
    assert code == 2


def test_many_problems_are_listed_together_on_one_line(capsys, intact):
    code, _, err = cli(capsys, "train", "--batch-size", "0", "--lr", "7", "--set", "peft.r=0")
    line = assert_one_error_line(code, err, r"Invalid config")
    assert all(
        part in line
        for part in ("train_batch_size must be >= 1", "learning_rate must be below 1", "rank r must be >= 1")
    )


# ---- real processes --------------------------------------------------------------------------------
# One case that loads the training stack (about 10 s of imports on a small CPU); the in-process tests
# above cover the rest of the table through the same `main`.
@pytest.mark.parametrize("case", ["binary-data", "yaml-unknown-key", "flag-wrong-type"])
def test_real_cli_process_prints_one_line_and_keeps_stored_runs(
    case, runs_dir, kept_run, tmp_path, tiny_model_dir, sentiment_csv
):
    before = stored_runs(runs_dir)
    if case == "binary-data":
        args = train_args("classification", write(tmp_path / "data.csv", BINARY), tiny_model_dir)
        error = r"^error: .*data\.csv looks like a binary file"
    elif case == "yaml-unknown-key":
        args = ["train", write(tmp_path / "run.yaml", "peft:\n  method: lora\n  rank: 4\n")]
        error = r"^error: .*run\.yaml: Unknown config key 'peft\.rank'"
    else:
        args = ["train", "--epochs", "two"]
        error = r"^error: train\.epochs must be a number, got 'two'"
    done = lab_process(*args, runs_dir=runs_dir)
    assert_one_error_line(done.returncode, done.stderr, error)
    after = stored_runs(runs_dir)
    assert after[kept_run] == before[kept_run]
    assert {run_id: run for run_id, run in after.items() if run_id in before} == before


# ---- uploads bigger than the limit -------------------------------------------------------------------
def test_uploads_are_bounded_by_the_app_config():
    """Streamlit refuses an upload over server.maxUploadSize (MB) before any lab code sees it; the
    lab's own config must set that bound (the default would be 200 MB, silently)."""
    settings = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    limit = settings["server"]["maxUploadSize"]
    assert isinstance(limit, int) and 1 <= limit <= 1024
    from streamlit import config as streamlit_config

    cwd = os.getcwd()
    try:
        os.chdir(REPO)  # Streamlit reads ./.streamlit/config.toml of the folder it starts in
        streamlit_config.get_config_options(force_reparse=True)
        assert streamlit_config.get_option("server.maxUploadSize") == limit
        assert streamlit_config.get_option("server.maxMessageSize") >= limit  # larger would be cut first
    finally:
        os.chdir(cwd)
        streamlit_config.get_config_options(force_reparse=True)


# ---- the app ---------------------------------------------------------------------------------------
def app(page: str) -> Any:
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(page)
    return at.run()


def widget(widgets, label: str):
    return next(w for w in widgets if w.label == label)


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_app_data_page_shows_bad_uploads_as_messages(intact):
    at = app("pages/1_Data.py")
    widget(at.radio, "Source").set_value("Upload a file").run()
    for name, content, message in [
        ("image.csv", BINARY, "looks like a binary file"),
        ("latin1.csv", ("text,label\n" + ROWS + "naïve,pos\n").encode("latin-1"), "line 22: bytes that are not UTF-8"),
        ("empty.csv", b"", "empty.csv is empty"),
        ("cut.jsonl", b'{"text": "a", "label": "pos"}\n{"text"', "line 2: not valid JSON"),
    ]:
        at.file_uploader[0].set_value((name, content, "text/csv")).run()
        no_exception(at)
        assert any(message in error.value for error in at.error), [e.value for e in at.error]


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "one-column.csv",
            ("review\n" + "".join(f"review {i} of the film\n" for i in range(60))).encode(),
            "one-column.csv has one column only ('review'); classification needs a second column",
        ),
        (
            "no-label.csv",
            ("review,stars\n" + "".join(f"review {i} of the film,{i}\n" for i in range(60))).encode(),
            "60 different labels in 60 rows",
        ),
    ],
)
def test_app_data_page_refuses_a_mapping_that_cannot_be_a_classification(intact, name, content, message):
    """A CSV without a label column, or a label mapped to a text-like column: the page says why and
    offers no "Train on this data"; the message names the user's file."""
    at = app("pages/1_Data.py")
    widget(at.radio, "Source").set_value("Upload a file").run()
    at.file_uploader[0].set_value((name, content, "text/csv")).run()
    if name == "no-label.csv":  # the user maps the label to the column that looked most like one
        widget(at.selectbox, "Text column").set_value("review").run()
        widget(at.selectbox, "Label column").set_value("stars").run()
    no_exception(at)
    errors = [e.value for e in at.error]
    assert any(message in error for error in errors), errors
    assert all("uploads" not in error and name in error for error in errors), errors
    assert not any(b.label == "Train on this data" for b in at.button)


def test_app_data_page_for_ner_opens_on_a_dataset_that_loads_offline(intact):
    at = app("pages/1_Data.py")
    widget(at.radio, "Task").set_value("ner").run()
    no_exception(at)
    assert widget(at.selectbox, "Dataset").value == "wnut16"
    assert not at.error, [e.value for e in at.error]


def test_app_new_run_yaml_with_unknown_key_names_it_and_keeps_the_form(intact):
    at = app("pages/2_New_run.py")
    widget(at.text_input, "Run name").input("my-run").run()
    at.file_uploader(key="yaml-upload").set_value(("run.yaml", b"train:\n  learnig_rate: 3\n", "application/x-yaml"))
    at.run()
    no_exception(at)
    assert any("Unknown config key 'train.learnig_rate'. Did you mean 'learning_rate'?" in e.value for e in at.error)
    assert widget(at.text_input, "Run name").value == "my-run"


def test_app_new_run_refuses_out_of_range_values_before_launch(intact):
    at = app("pages/2_New_run.py")
    widget(at.number_input, "Learning rate").set_value(0.0).run()
    runs_before = len(intact.list_runs())
    widget(at.button, "Launch").click().run()
    no_exception(at)
    assert any("learning_rate must be > 0" in e.value for e in at.error), [e.value for e in at.error]
    assert len(intact.list_runs()) == runs_before


def test_app_new_run_yaml_with_out_of_range_value_shows_a_message(intact):
    at = app("pages/2_New_run.py")
    at.file_uploader(key="yaml-upload").set_value(("run.yaml", b"train:\n  train_batch_size: 0\n", "text/yaml"))
    at.run()
    no_exception(at)
    assert any("train_batch_size must be >= 1" in e.value for e in at.error)


@pytest.mark.parametrize(
    "model, message",
    [
        ("no-such-org/no-such-model", "hub is unreachable"),
        ("/nonexistent/model", "There is no folder /nonexistent/model"),
    ],
)
def test_app_new_run_model_that_cannot_load_is_named_and_launch_waits(intact, model, message):
    at = app("pages/2_New_run.py")
    widget(at.selectbox, "Model").set_value("other").run()
    widget(at.text_input, "Hub id or local folder").input(model).run()
    no_exception(at)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert widget(at.button, "Launch").disabled


def test_the_hub_probe_gives_up_on_time_even_when_the_name_lookup_hangs(monkeypatch):
    import time

    from lab import hub

    def hanging_lookup(address, timeout=None):  # what a stalled DNS resolver does to create_connection
        time.sleep(10)
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(hub.socket, "create_connection", hanging_lookup)
    started = time.perf_counter()
    assert hub.hub_reachable(timeout=0.3) is False
    assert time.perf_counter() - started < 2


def test_a_handout_without_a_run_or_group_says_what_to_name(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    code, _, err = cli(capsys, "handout", "--out", str(tmp_path / "h.html"))
    assert code == 2 and err.startswith("error: Name what to write: a run") and err.count("\n") == 1
