"""Security (issue 5): the app is a web server and its inputs are untrusted.

- `trust_remote_code` is off unless a run turns it on, and a run that does logs a warning naming the risk;
- nothing in the lab or the app unpickles, evals or execs (checked on the syntax tree, not by grep);
- uploads and run names become safe file names inside the runs directory; a run writes nowhere else;
- the app binds to localhost with XSRF protection on (.streamlit/config.toml).
Run names escaping the runs directory and path-like run references are in test_store.
"""

from __future__ import annotations

import ast
import re
import threading
import tomllib
from pathlib import Path

import pytest

from lab.config import RunConfig, default_config, example_yaml
from lab.errors import DataError, LabError
from lab.events import LogEvent
from lab.groups.one_click import one_click_runs
from lab.runs.records import clean_name
from lab.runs.store import RunStore
from lab.views.uploads import UPLOADS_FOLDER, save_upload

REPO = Path(__file__).resolve().parents[1]
APP_SOURCES = sorted(
    [REPO / "app.py", *(REPO / "lab").rglob("*.py"), *(REPO / "pages").glob("*.py"), *(REPO / "ui").glob("*.py")]
)


# ---- trust_remote_code -----------------------------------------------------------------------------
def test_remote_code_is_off_by_default_everywhere_a_config_comes_from():
    configs = [
        RunConfig(),
        default_config("classification"),
        default_config("ner"),
        *(card.config for offline in (True, False) for card in one_click_runs(offline)),
        *(RunConfig.from_yaml(example_yaml(task)) for task in ("classification", "ner")),
    ]
    assert not any(config.model.trust_remote_code for config in configs)


def engine_events(tiny_model_dir: str, sentiment_csv: Path, tmp_path: Path, trust: bool) -> list:
    from lab.training.engine import train

    config = RunConfig.from_dict(
        {
            "data": {"dataset": "", "train_file": str(sentiment_csv)},
            "model": {"name_or_path": tiny_model_dir, "trust_remote_code": trust},
            "train": {"max_steps": 1, "max_length": 16, "train_batch_size": 8, "device": "cpu"},
        }
    )
    events: list = []
    stop = threading.Event()
    stop.set()  # stop after the first step: the warning comes before training, the rest is not needed
    train(config, tmp_path / ("trusting" if trust else "careful"), sink=events.append, should_stop=stop)
    return [e for e in events if isinstance(e, LogEvent) and e.level == "warning"]


def test_turning_remote_code_on_logs_a_warning_that_names_the_risk(tiny_model_dir, sentiment_csv, tmp_path):
    warnings = engine_events(tiny_model_dir, sentiment_csv, tmp_path, trust=True)
    assert len(warnings) == 1
    message = warnings[0].message
    assert "trust_remote_code is on" in message and tiny_model_dir in message
    assert "runs on this machine" in message and "any file" in message
    assert engine_events(tiny_model_dir, sentiment_csv, tmp_path, trust=False) == []


def new_run_page():
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/2_New_run.py")
    return at.run()


def test_new_run_page_starts_with_remote_code_off(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    at = new_run_page()
    box = next(c for c in at.checkbox if c.label == "Trust remote code")
    assert box.value is False
    assert "trust_remote_code: false" in next(code.value for code in at.code if code.language == "yaml")


def test_new_run_page_warns_when_remote_code_is_turned_on(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    at = new_run_page()
    next(c for c in at.checkbox if c.label == "Trust remote code").check().run()
    assert any("runs on this machine" in w.value for w in at.warning), [w.value for w in at.warning]


# ---- nothing executes what it parses -----------------------------------------------------------------
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__"}


def unsafe_calls(path: Path, root: Path = REPO) -> list[str]:
    """Lines that import a pickle-like module, call eval/exec, load torch files without weights_only,
    load YAML unsafely, read pickles, or start a shell."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in UNSAFE_MODULES for a in node.names):
            found.append(f"{where} imports {[a.name for a in node.names]}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"{where} imports from {node.module}")
        if not isinstance(node, ast.Call):
            continue
        func, keywords = node.func, {k.arg: k.value for k in node.keywords}
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
        literal_true = lambda key, keywords=keywords: (  # noqa: E731
            isinstance(keywords.get(key), ast.Constant) and keywords[key].value is True
        )
        if isinstance(func, ast.Name) and name in UNSAFE_BUILTINS:
            found.append(f"{where} calls {name}()")
        elif name == "load" and owner == "torch" and not literal_true("weights_only"):
            found.append(f"{where} torch.load without weights_only=True")
        elif owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all", "unsafe_load_all"):
            found.append(f"{where} yaml.{name}")
        elif name in ("read_pickle", "loads") and owner in ("pd", "pandas", "pickle"):
            found.append(f"{where} {owner}.{name}")
        elif name == "load" and owner in ("np", "numpy") and literal_true("allow_pickle"):
            found.append(f"{where} numpy load with allow_pickle")
        elif literal_true("shell") or (owner == "os" and name in ("system", "popen")):
            found.append(f"{where} runs a shell")
        elif literal_true("trust_remote_code"):
            found.append(f"{where} hard-codes trust_remote_code=True")
    return found


def test_no_pickle_eval_exec_or_unsafe_loads_in_the_lab_and_the_app():
    assert len(APP_SOURCES) > 20  # the scan saw the whole code base
    problems = [problem for path in APP_SOURCES for problem in unsafe_calls(path)]
    assert problems == []


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nimport yaml, torch, subprocess\neval('1')\ntorch.load('x')\n"
        "torch.load('y', weights_only=True)\nyaml.load('a')\nsubprocess.run('ls', shell=True)\n"
        "m.from_pretrained('x', trust_remote_code=True)\nmodel.eval()\n"
    )
    problems = unsafe_calls(bad, root=tmp_path)
    assert [p.split(" ", 1)[1] for p in problems] == [
        "imports ['pickle']",
        "calls eval()",
        "torch.load without weights_only=True",
        "yaml.load",
        "runs a shell",
        "hard-codes trust_remote_code=True",
    ]  # model.eval() and torch.load(weights_only=True) are fine


# ---- file names -----------------------------------------------------------------------------------------
# Letters of any script, digits, "_", "-" and inner dots, under a folder named by the content hash.
SAFE_UPLOAD = re.compile(r"^\w[\w.-]{0,59}\.(csv|tsv|jsonl|json|parquet|conll|txt|iob|bio)$")


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd.csv",
        "..\\..\\boot.ini.csv",
        "/abs/path/data.csv",
        "a\x00b.csv",
        "x" * 300 + ".csv",
        "<script>alert(1)</script>.jsonl",
        "CON.csv",
        "ﬁlé nàme.conll",
        "data.CSV",
        " .. .tsv",
    ],
)
def test_uploads_land_in_the_uploads_folder_under_a_safe_name(name, tmp_path):
    runs_dir = tmp_path / "runs"
    path = save_upload(name, b"text,label\na,pos\n", runs_dir)
    assert path.parent.parent == runs_dir / UPLOADS_FOLDER and re.fullmatch("[0-9a-f]{16}", path.parent.name)
    assert SAFE_UPLOAD.match(path.name) and path.name.isprintable(), path.name
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["runs", UPLOADS_FOLDER, path.parent.name, path.name])


@pytest.mark.parametrize("name", ["evil.py", "model.pkl", "archive.zip", "noext", "data.csv.exe", ".csv"])
def test_uploads_of_other_types_are_refused(name, tmp_path):
    with pytest.raises(DataError, match="unsupported file type"):
        save_upload(name, b"data", tmp_path / "runs")
    assert not (tmp_path / "runs" / UPLOADS_FOLDER).exists() or not any((tmp_path / "runs" / UPLOADS_FOLDER).iterdir())


@pytest.mark.parametrize(
    "name", ["<img src=x onerror=alert(1)>", "two\nlines\r\nname", "tab\there", "\x1b[31mred", "../../run", "x" * 400]
)
def test_run_names_become_safe_ids_download_names_and_one_line_titles(name, tmp_path):
    store = RunStore(tmp_path / "runs")
    run = store.create_run(RunConfig(name=name))
    assert re.fullmatch(r"[0-9]{8}-[0-9]{6}-[a-z0-9_-]+-[0-9a-f]{4}", run.id)
    # The Runs page names downloads after the id: <id>-config.yaml, <id>-report.json, <id>-model.zip.
    assert re.fullmatch(r"[A-Za-z0-9._-]+", f"{run.id}-model.zip")
    assert run.name == clean_name(name) and len(run.name) <= 100
    assert run.name.isprintable() and "\n" not in run.name


# ---- paths typed in the app -------------------------------------------------------------------------------
def test_typed_paths_must_exist_and_no_config_can_pick_where_the_lab_writes(tmp_path):
    with pytest.raises(LabError, match=r"train_file '.*missing\.csv' does not exist"):
        RunConfig.from_dict({"data": {"dataset": "", "train_file": str(tmp_path / "missing.csv")}}).validate()
    for key in ("output_dir", "runs_dir", "save_dir"):
        with pytest.raises(LabError, match=f"Unknown config key '{key}'"):
            RunConfig.from_dict({key: str(tmp_path / "elsewhere")})


def test_a_run_reads_its_files_and_writes_only_inside_its_run_folder(
    tiny_model_dir, sentiment_csv, tmp_path, monkeypatch
):
    """The data file and the model folder are only read; the working directory stays empty; every new
    file is inside the run's folder (or the dataset cache under HF_HOME)."""
    import shutil

    from lab.launch.execute import execute_run
    from lab.training.engine import train

    data = tmp_path / "data"
    data.mkdir()
    train_file = Path(shutil.copy(sentiment_csv, data / "train.csv"))
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    outside = lambda: {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if "runs" not in p.parts}  # noqa: E731
    before = outside()
    store = RunStore(tmp_path / "runs")
    config = RunConfig.from_dict(
        {
            "name": "../../escape",
            "data": {"dataset": "", "train_file": str(train_file)},
            "model": {"name_or_path": str(model)},
            "train": {"max_steps": 2, "max_length": 16, "train_batch_size": 8, "device": "cpu", "eval_steps": 1},
        }
    )
    run = store.create_run(config)
    assert execute_run(store, run.id, train, threading.Event()) == "completed"
    assert outside() == before
    assert (store.run_dir(run.id) / "model").is_dir() and store.run_dir(run.id).parent == (tmp_path / "runs").resolve()


# ---- the server -----------------------------------------------------------------------------------------
def test_app_binds_to_localhost_with_xsrf_protection_on():
    server = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))["server"]
    assert server["address"] in ("127.0.0.1", "localhost")
    assert server.get("enableXsrfProtection", True) is True  # Streamlit's default is on; never turned off
    assert server.get("enableCORS", True) is True  # turning CORS off also turns XSRF protection off
    assert server.get("enableStaticServing", False) is False
