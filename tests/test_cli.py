"""The command line as a user runs it: a real subprocess, exit codes, stderr, JSON output."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lab(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "lab", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=600,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--train-file", "no-such-file.csv"], "does not exist"),
        (["train", "--lr", "-1"], "learning_rate must be > 0"),
        (["train", "--batch-size", "0"], "train_batch_size must be >= 1"),
        (["train", "--epochs", "lots"], "must be a number"),
        (["train", "--set", "train.lr=3"], "Unknown config key 'train.lr'"),
        (["train", "--set", "peft.r=0", "--peft", "lora"], "rank r must be >= 1"),
        (["train", "--task", "ner", "--dataset", "conll2003"], "no offline copy of CoNLL-2003"),
        (["train", "--model", "no-such-org/no-such-model", "--max-steps", "1"], "hub is unreachable"),
        (["predict", "/", "--text", "hello"], "holds no saved model"),
        (["config", "--example", "ner", "--bogus"], "unrecognized arguments"),
        (["compare", "--methods", "lora,magic"], "Unknown method 'magic'"),
    ],
)
def test_user_errors_exit_nonzero_with_one_line(args, message):
    result = lab(*args)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert len(lines) == 1 or lines[0].startswith("usage:"), result.stderr


def test_config_example_round_trips(tmp_path):
    result = lab("config", "--example", "ner")
    assert result.returncode == 0
    path = tmp_path / "ner.yaml"
    path.write_text(result.stdout)
    from lab.config import RunConfig

    config = RunConfig.load(path)
    assert config.task == "ner" and config.data.dataset == "wnut16"
    assert "# " in result.stdout  # every field carries its help as a comment


def test_train_then_predict_then_inspect(tiny_model_dir, ner_conll, tmp_path):
    out = tmp_path / "out"
    result = lab(
        "train",
        "--task",
        "ner",
        "--train-file",
        ner_conll,
        "--model",
        tiny_model_dir,
        "--peft",
        "full",
        "--lr",
        "3e-3",
        "--batch-size",
        "8",
        "--max-steps",
        "12",
        "--max-length",
        "48",
        "--name",
        "cli test",
        "--output",
        out,
        "--set",
        "train.eval_steps=12",
    )
    assert result.returncode == 0, result.stderr
    assert "micro avg" in result.stdout  # the per-label table was printed
    assert (out / "model" / "lab_model.json").is_file()

    words = "yesterday Maria travelled to Lisbon"
    predicted = lab("predict", out, "--text", words, "--json")
    assert predicted.returncode == 0, predicted.stderr
    (item,) = json.loads(predicted.stdout)
    assert item["words"] == words.split() and len(item["tags"]) == 5

    runs = json.loads(lab("runs", "--json").stdout)
    run = next(r for r in runs if r["name"] == "cli-test" or r["name"] == "cli test")
    assert run["status"] == "completed"
    shown = json.loads(lab("show", run["id"], "--json").stdout)
    assert shown["status"] == "completed"
    assert {"label", "precision", "recall", "f1", "support"} <= set(shown["per_label"][0])
    assert "f1" in shown["metrics"]


def test_compare_trains_each_method_once_in_one_group_and_prints_the_table(tiny_model_dir, ner_conll):
    result = lab(
        "compare",
        "--task",
        "ner",
        "--train-file",
        ner_conll,
        "--model",
        tiny_model_dir,
        "--methods",
        "lora,full",
        "--max-steps",
        "6",
        "--max-length",
        "48",
        "--name",
        "cli compare",
    )
    assert result.returncode == 0, result.stderr
    table = result.stdout[result.stdout.index("compare cli compare\n") :]
    # PEFT_METHODS order, whatever order --methods gave; one row each, with its test F1 and trainable share.
    assert [line.split()[0] for line in table.splitlines()[2:4]] == ["full", "lora"]
    assert "100%" in table and "completed" in table
    assert re.search(r"^2 runs in \d+ s \(the whole comparison\)$", table, re.MULTILINE), table
    runs = json.loads(lab("runs", "--json", "--group", "compare cli compare").stdout)
    assert sorted(run["peft_method"] for run in runs) == ["full", "lora"]
    assert all(run["status"] == "completed" and "f1" in run["metrics"] for run in runs)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "--peft", "magic"], "invalid choice: 'magic' (choose from 'full', 'head', 'lora'"),
        (["trian"], "invalid choice: 'trian'"),
        (["train", "--lr"], "--lr: expected one argument"),
    ],
)
def test_usage_mistakes_are_one_line_with_the_choices_and_where_help_is(args, expected):
    from lab.cli.main import main

    result = lab(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and lines[0].endswith("--help"), result.stderr
    with pytest.raises(SystemExit):
        main(args)


def test_the_terminal_says_a_cancelled_run_saved_no_model_even_when_it_reports_metrics():
    import io

    from lab.cli.terminal import TerminalReporter
    from lab.events import ResultEvent

    out = io.StringIO()
    reporter = TerminalReporter(stream=out, bar_stream=io.StringIO())
    reporter(ResultEvent(status="cancelled", metrics={"accuracy": 0.5}, wall_seconds=12, output_dir="/tmp/run"))
    reporter(ResultEvent(status="completed", metrics={}, wall_seconds=30, output_dir="/tmp/run"))
    assert out.getvalue().splitlines() == [
        "stopped after 12 s; no model saved",
        "done in 30 s; model saved in /tmp/run",
    ]
