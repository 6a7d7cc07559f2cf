"""Configs are bounded before they are believed: a YAML file or upload is capped in size and in how
far its anchors and aliases expand, and every error shows a value as its type and first characters."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.coercion import MAX_CONFIG_BYTES, MAX_YAML_NODES, shown
from lab.config import RunConfig, default_config
from lab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The nested alias bomb of a few hundred bytes that stands for width**levels strings."""
    anchors = ["&a0 [" + ",".join(["lol"] * width) + "]"]
    anchors += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "name: [" + ", ".join(anchors) + "]\n"


def test_an_alias_bomb_is_refused_at_once_by_the_loader(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    assert bomb.stat().st_size < 400
    started = time.perf_counter()
    with pytest.raises(ConfigError) as raised:
        RunConfig.load(bomb)
    assert time.perf_counter() - started < 0.5
    message = str(raised.value)
    assert message.startswith(f"{bomb}: The config expands to more than {MAX_YAML_NODES:,} values")
    assert len(message) < 300


def test_the_cli_refuses_an_alias_bomb_in_well_under_a_second_with_one_short_line(tmp_path):
    bomb, peak_file = tmp_path / "bomb.yaml", tmp_path / "peak-kib"
    bomb.write_text(alias_bomb())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # `python -m lab train bomb.yaml`, which writes its own peak RSS (VmHWM: this process's memory only; the
    # rusage peak would count the pytest process it was forked from) as it exits.
    lab_train = (
        "import atexit, runpy, sys; "
        f"atexit.register(lambda: open({str(peak_file)!r}, 'w').write(next("
        "line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))); "
        f"sys.argv = ['lab', 'train', {str(bomb)!r}]; runpy.run_module('lab', run_name='__main__', alter_sys=True)"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", lab_train], capture_output=True, text=True, env=env, timeout=60)
    elapsed = time.perf_counter() - started
    assert result.returncode != 0
    assert "expands to more than" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr) < 400
    # The whole process, Python start-up and the lab's imports included (the issue saw 186 s and 12.4 GB).
    assert elapsed < 15
    assert int(peak_file.read_text()) < 1024 * 1024  # kB: under 1 GiB


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: &x [*x]\n", "alias that contains itself"),
        (
            "train:\n"
            + "".join(f"  k{i}: &a{i} 1\n" for i in range(120))
            + "".join(f"x{i}: *a{i}\n" for i in range(120)),
            "more than 100 YAML aliases",
        ),
    ],
)
def test_self_referring_and_alias_heavy_yaml_is_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_yaml(text)


def test_a_config_over_the_size_cap_is_refused_before_it_is_read(tmp_path):
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: " + "x" * (MAX_CONFIG_BYTES + 10) + "\n")
    with pytest.raises(ConfigError, match=r"huge\.yaml is over 262,144 bytes"):
        RunConfig.load(huge)
    with pytest.raises(ConfigError, match=r"run\.yaml is over 262,144 bytes"):
        RunConfig.from_yaml_bytes(huge.read_bytes(), "run.yaml")
    # A config of ordinary size still loads, from a file or an upload's bytes.
    path = tmp_path / "ok.yaml"
    default_config("ner").save(path)
    assert RunConfig.load(path) == RunConfig.from_yaml_bytes(path.read_bytes(), "ok.yaml") == default_config("ner")


@pytest.mark.parametrize(
    "text",
    [
        "train:\n  train_batch_size: " + "9" * 100_000 + "\n",
        "train:\n  epochs: [" + ", ".join(["many"] * 5000) + "]\n",
        "peft:\n  target_modules: {" + ", ".join(f"k{i}: v" for i in range(5000)) + "}\n",
        "task: " + "t" * 200_000 + "\n",
        "k" * 100_000 + ": 1\n",
    ],
)
def test_every_coercion_error_shows_the_value_short(text):
    with pytest.raises(ConfigError) as raised:
        RunConfig.from_yaml(text)
    assert len(str(raised.value)) < 400, str(raised.value)[:500]


def test_a_value_is_shown_as_its_first_characters_and_its_type():
    assert shown("many") == "'many' (str)"
    long_text = shown("x" * 10_000)
    assert long_text.endswith("... (str)") and len(long_text) < 100
    nested: list = ["lol"] * 9
    for _ in range(8):
        nested = [nested] * 9  # 43 million strings if written out
    started = time.perf_counter()
    assert shown(nested).endswith("(list)") and len(shown(nested)) < 100
    assert time.perf_counter() - started < 0.1


def test_the_new_run_page_refuses_an_oversized_or_exploding_yaml_upload(tmp_path, monkeypatch):
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/2_New_run.py")
    at.run()
    uploads = [
        ("huge.yaml", ("name: " + "x" * MAX_CONFIG_BYTES + "\n").encode(), "huge.yaml is over 262,144 bytes"),
        ("bomb.yaml", alias_bomb().encode(), "bomb.yaml: The config expands to more than"),
    ]
    for name, content, message in uploads:
        at.file_uploader(key="yaml-upload").set_value((name, content, "application/x-yaml"))
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert any(message in error.value for error in at.error), [error.value[:200] for error in at.error]
        assert next(t for t in at.text_input if t.label == "Run name").value == ""  # the form kept its config
