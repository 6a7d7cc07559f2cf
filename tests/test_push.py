"""Push to the hub, up to the upload call (this machine reaches no hub): the folder that would go up is
complete, private unless asked, free of pickles and of this machine's paths; without a network the CLI
says so in one line; the token shows up nowhere."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.config import RunConfig
from lab.errors import LabError
from lab.launch.worker import run_in_foreground
from lab.publish.push import check_push_folder, push_folder
from lab.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_" + "TestTokenNeverShown1234"


class RecordingHub:
    """Stands in for huggingface_hub.HfApi at the network boundary: records the calls it would send, and
    keeps a copy of the folder as it was uploaded (in `uploaded`)."""

    def __init__(self, uploaded: Path | None = None):
        self.calls = []
        self.uploaded = uploaded

    def create_repo(self, repo_id, **options):
        self.calls.append(("create_repo", repo_id, options))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **options):
        self.calls.append(("upload_folder", options))
        if self.uploaded is not None:
            shutil.copytree(options["folder_path"], self.uploaded)


@pytest.fixture(scope="module")
def pushed_run(tiny_model_dir, sentiment_csv, tmp_path_factory):
    folder = tmp_path_factory.mktemp("push")
    store = RunStore(folder / "runs")
    config = RunConfig(name="to push")
    config.data.dataset, config.data.train_file = "", str(sentiment_csv)
    config.model.name_or_path, config.peft.r = tiny_model_dir, 4
    config.train.learning_rate, config.train.max_steps, config.train.max_length = 3e-3, 6, 32
    run_id, code = run_in_foreground(config, store=store)
    assert code == 0
    return folder, store, run_id


def test_the_folder_that_would_be_uploaded_is_complete_private_and_names_no_path_of_this_machine(
    pushed_run, tiny_model_dir, sentiment_csv, tmp_path
):
    from lab.inference.predict import Predictor

    folder, store, run_id = pushed_run
    model_dir = store.output_dir(store.get_run(run_id)) / "model"
    hub = RecordingHub(uploaded=tmp_path / "uploaded")
    url = push_folder(model_dir, "someone/tiny-lora", api=hub)  # no choice made: private
    assert url == "https://huggingface.co/someone/tiny-lora"
    (create, name, options), (upload, upload_options) = hub.calls
    assert (create, name, options["private"]) == ("create_repo", "someone/tiny-lora", True)
    files = check_push_folder(hub.uploaded)
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "lab_model.json"} <= set(files)
    # No pickle goes up (the Trainer's training_args.bin runs code when loaded), and no absolute path.
    uploaded = sorted(path for path in hub.uploaded.rglob("*") if path.is_file())
    assert not [path.name for path in uploaded if path.suffix in (".bin", ".pt", ".pkl")]
    for path in uploaded:
        text = path.read_bytes().decode("utf-8", errors="ignore")
        assert not [place for place in (tiny_model_dir, sentiment_csv, folder, ROOT) if str(place) in text], path.name
    assert f"base_model: {Path(tiny_model_dir).name}" in (hub.uploaded / "README.md").read_text()
    assert Predictor(model_dir).predict(["a fine film"])[0].label in ("neg", "pos")  # the run's own copy still loads


def test_a_model_folder_keeps_no_pickle(pushed_run):
    _, store, run_id = pushed_run
    model_dir = store.output_dir(store.get_run(run_id)) / "model"
    assert (model_dir / "adapter_model.safetensors").is_file() and not (model_dir / "training_args.bin").exists()


@pytest.mark.parametrize("flags, private", [([], True), (["--private"], True), (["--public"], False)])
def test_lab_push_is_private_unless_public_is_asked_for(pushed_run, monkeypatch, capsys, flags, private):
    import lab.publish.push
    from lab.cli.main import main

    folder, store, run_id = pushed_run
    asked = {}
    monkeypatch.setenv("LAB_RUNS_DIR", str(folder / "runs"))
    monkeypatch.setattr(
        lab.publish.push, "push_folder", lambda model_dir, repo_id, private: asked.update(private=private) or "URL"
    )
    assert main(["push", run_id, "someone/tiny-lora", *flags]) == 0
    assert asked == {"private": private}
    assert ("private" if private else "public") in capsys.readouterr().out


def test_offline_push_is_one_line_and_the_token_is_nowhere(pushed_run):
    folder, store, run_id = pushed_run
    env = dict(os.environ, PYTHONPATH=str(ROOT), LAB_RUNS_DIR=str(folder / "runs"), HF_TOKEN=TOKEN, HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-m", "lab", "push", run_id, "someone/tiny-lora"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "offline mode is on" in lines[0], result.stderr
    assert TOKEN not in result.stdout + result.stderr
    stored = (folder / "runs" / "lab.db").read_bytes()
    assert TOKEN.encode() not in stored
    assert all(
        TOKEN not in path.read_text(errors="ignore")
        for path in (folder / "runs").rglob("*")
        if path.is_file() and path.suffix in (".yaml", ".json", ".log", ".md")
    )


def test_a_hub_error_carrying_the_token_is_scrubbed(pushed_run, monkeypatch):
    _, store, run_id = pushed_run
    model_dir = store.output_dir(store.get_run(run_id)) / "model"

    class LeakyHub(RecordingHub):
        def create_repo(self, repo_id, **options):
            raise RuntimeError(f"bad request with Authorization: Bearer {TOKEN}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(LabError) as raised:
        push_folder(model_dir, "someone/tiny-lora", api=LeakyHub(), token=TOKEN)
    assert TOKEN not in str(raised.value) and "hf_***" in str(raised.value)


def test_a_bad_repo_id_is_refused(pushed_run):
    _, store, run_id = pushed_run
    with pytest.raises(LabError, match="OWNER/NAME"):
        push_folder(store.output_dir(store.get_run(run_id)) / "model", "no-slash", api=RecordingHub())
