"""What a user reads from the CLI stays as it was: `--help`, `train --help` and `config --example`, word for word.

The expected texts in tests/fixtures/cli_output/ were written by the CLI before the config's fields
carried their bounds and widget kinds; a change to the help a field carries, a flag or an example
config shows up here as a diff. If the change is meant (a new command, method or field), regenerate
the files with `python tests/test_cli_output.py` and say so in the commit.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ROOT / "tests" / "fixtures" / "cli_output"
COMMANDS = {
    "help.txt": ["--help"],
    "train_help.txt": ["train", "--help"],
    "config_example_ner.txt": ["config", "--example", "ner"],
    "config_example_classification.txt": ["config", "--example", "classification"],
}


def cli_output(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="100")
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


@pytest.mark.parametrize("expected_file", sorted(COMMANDS))
def test_cli_help_and_example_configs_read_as_before(expected_file):
    result = cli_output(COMMANDS[expected_file])
    assert result.returncode == 0, result.stderr
    assert result.stdout == (EXPECTED / expected_file).read_text(encoding="utf-8")


if __name__ == "__main__":  # regenerate the expected texts after a deliberate change
    for name, args in COMMANDS.items():
        (EXPECTED / name).write_text(cli_output(args).stdout, encoding="utf-8")
        print("wrote", EXPECTED / name)
