"""Handouts of a lesson, a comparison and a run: one self-contained HTML file with the figures the pages show, the
config and the script, nothing to fetch, in English or Chinese; a student gets only what they may see."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from lab.accounts.book import AccountBook
from lab.cli.main import main
from lab.config import RunConfig
from lab.events import EvalEvent, ResultEvent, RunResult, RunStartedEvent, StepEvent
from lab.groups.compare import group_name, method_configs
from lab.groups.lessons import get_lesson, lesson_base, lesson_configs
from lab.launch.worker import run_in_foreground
from lab.runs.store import RunStore

PER_LABEL = [
    {"label": "neg", "precision": 0.8043, "recall": 0.74, "f1": 0.7708, "support": 50},
    {"label": "pos", "precision": 0.7593, "recall": 0.82, "f1": 0.7885, "support": 50},
    {"label": "macro avg", "precision": 0.7818, "recall": 0.78, "f1": 0.7797, "support": 100},
]
TEST_CONFUSION = {"labels": ["neg", "pos"], "matrix": [[37, 13], [9, 41]]}
ACCURACY = {"head": 0.612, "lora": 0.78}
# Anything a browser would fetch: a script, a style sheet, an image or a frame from an address.
FETCHED = re.compile(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=", re.IGNORECASE)


def scripted_engine(config, output_dir, sink, should_stop=None, resume_from_checkpoint=None):
    """A stand-in for the engine: four steps, two validation evaluations, a test evaluation."""
    accuracy = ACCURACY[config.peft.method]
    for step, loss in enumerate([0.69, 0.61, 0.52, 0.44], start=1):
        sink(StepEvent(step=step, max_steps=4, epoch=step / 4, loss=loss))
        if step % 2 == 0:
            scores = {"accuracy": accuracy - 0.1 / step, "macro_f1": accuracy - 0.12 / step}
            confusion = {"labels": ["neg", "pos"], "matrix": [[3, 2], [1, 4]]}
            sink(EvalEvent(step=step, epoch=step / 4, loss=loss + 0.05, metrics=scores, per_label=PER_LABEL[:2],
                           confusion=confusion))  # fmt: skip
    metrics = {"accuracy": accuracy, "macro_f1": accuracy - 0.003}
    sink(EvalEvent(split="test", step=4, epoch=1.0, metrics=metrics, per_label=PER_LABEL, confusion=TEST_CONFUSION))
    result = RunResult(
        "completed", str(output_dir), metrics, PER_LABEL, trainable_params=1234, total_params=98765, wall_seconds=75
    )
    sink(ResultEvent.of(result))
    return result


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, tiny_model_dir, sentiment_csv) -> tuple[RunStore, str, list[str]]:
    """A comparison of two methods, made once for this file's tests (which only read it)."""
    base_config = RunConfig(task="classification").with_overrides(
        ["data.dataset=", f"data.train_file={sentiment_csv}", f"model.name_or_path={tiny_model_dir}"]
    )
    store = RunStore(tmp_path_factory.mktemp("handout") / "runs")
    group = group_name(base_config, "handout test")
    ids = [
        run_in_foreground(config, store=store, group=group, train_fn=scripted_engine)[0]
        for config in method_configs(base_config, ["head", "lora"])
    ]
    return store, group, ids


@pytest.fixture(scope="module")
def lesson(tmp_path_factory, tiny_model_dir, ner_conll) -> tuple[RunStore, str]:
    """The ner-length lesson trained for real on the tiny model (a few steps per length), made once."""
    from lab.groups.lessons import group_name as lesson_group_name

    ner_length = get_lesson("ner-length")
    base = lesson_base(ner_length).with_overrides(
        [
            "data.dataset=",
            f"data.train_file={ner_conll}",
            f"model.name_or_path={tiny_model_dir}",
            "train.max_steps=4",
            "train.eval_steps=2",
        ]
    )
    store = RunStore(tmp_path_factory.mktemp("lesson-handout") / "runs")
    group = lesson_group_name(ner_length, base, "handout test")
    for config in lesson_configs(ner_length, base):
        run_in_foreground(config, store=store, group=group)
    return store, group


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_comparison_handout_holds_its_table_charts_config_and_script_and_fetches_nothing(comparison):
    from lab.views.comparison_handout import comparison_handout

    store, group, _ = comparison
    page = comparison_handout(store, group, "en")
    assert page.startswith("<!DOCTYPE html>") and '<html lang="en">' in page
    assert "Comparison: handout test" in page and "The methods side by side" in page
    for figure in ("0.612", "0.780", "1,234", "1.25%", "1 min 15 s"):  # test accuracy, trainable, share, time
        assert figure in page, figure
    assert "Test F1 per label, by method" in page and "0.789" in page  # pos F1 of each method
    assert page.count('class="chart"') == 3  # accuracy against the share trained, validation, loss
    assert "python -m lab compare comparison.yaml --methods head,lora" in page
    assert "task: classification" in page and "from transformers import (" in page  # the config, the script
    assert not FETCHED.search(page)


def test_a_run_handout_holds_its_metrics_tables_confusion_matrix_config_and_script(comparison):
    from lab.views.run_handout import run_handout

    store, _, (_, lora) = comparison
    page = run_handout(store, lora, "en")
    assert "Test set" in page and "Per label (test set)" in page and "Confusion matrix" in page
    for figure in ("0.780", "0.777", "0.804", "0.820", "<td>37</td>", "<td>41</td>", "1,234 of 98,765"):
        assert figure in page, figure
    assert page.count('class="chart"') == 3  # losses, validation metrics, each label's F1
    assert "peft:" in page and "method: lora" in page and "from transformers import (" in page
    assert not FETCHED.search(page)
    assert "@media print" in page and "width\":680" in page.replace(" ", "")  # charts drawn at an A4 width


def test_handouts_in_chinese_have_chinese_headings(comparison):
    from lab.views.comparison_handout import comparison_handout
    from lab.views.run_handout import run_handout

    store, group, (head, _) = comparison
    run_page, group_page = run_handout(store, head, "zh"), comparison_handout(store, group, "zh")
    assert '<html lang="zh">' in run_page and '<html lang="zh">' in group_page
    assert (
        "<h2>测试集</h2>" in run_page
        and "<h2>各标签结果（测试集）</h2>" in run_page
        and "<h2>混淆矩阵</h2>" in run_page
    )
    assert (
        "<h1>对比：handout test</h1>" in group_page
        and "<h2>各方法对照</h2>" in group_page
        and "在终端里重复这次比较" in group_page
    )
    assert "已完成" in group_page  # the status column


def test_the_cli_writes_a_run_or_a_comparison_handout(comparison, capsys, tmp_path, monkeypatch):
    store, group, (head, _) = comparison
    monkeypatch.setenv("LAB_RUNS_DIR", str(store.runs_dir))
    out = tmp_path / "run.html"
    code, said, err = cli(capsys, "handout", head[:-2], "--out", str(out), "--lang", "zh")
    assert code == 0, err
    assert f"wrote {out}" in said and "<h2>测试集</h2>" in out.read_text(encoding="utf-8")
    code, _, err = cli(capsys, "handout", "--group", group, "--out", str(out))
    assert code == 0, err
    assert "python -m lab compare comparison.yaml" in out.read_text(encoding="utf-8")
    code, _, err = cli(capsys, "handout", head, "--out", str(out), "--lang", "fr")
    assert code == 2 and err.startswith("error: No language 'fr'") and err.count("\n") == 1


def test_the_cli_writes_a_lessons_handout_in_chinese(lesson, capsys, tmp_path, monkeypatch):
    from lab.groups.lessons import lesson_conclusion, lesson_runs
    from lab.views.handout import catalogue_words
    from lab.views.lesson_view import findings_in_words

    store, group = lesson
    monkeypatch.setenv("LAB_RUNS_DIR", str(store.runs_dir))
    out = tmp_path / "lesson.html"
    code, said, err = cli(capsys, "handout", "--group", group, "--out", str(out), "--lang", "zh")
    assert code == 0, err
    page = out.read_text(encoding="utf-8")
    assert f"wrote {out}" in said and '<html lang="zh">' in page
    runs = lesson_runs(store, get_lesson("ner-length"), group)
    assert [run.record.status for run in runs] == ["completed"] * 3
    assert "<h1>NER 的子词与长度</h1>" in page and "较短的 max_length 代价是什么" in page  # title, question
    findings = lesson_conclusion(store, get_lesson("ner-length"), runs)
    conclusion, english = (findings_in_words(findings, catalogue_words(language)) for language in ("zh", "en"))
    assert conclusion[0].startswith("max_length=") and "实体 F1 为" in conclusion[0]  # best (or tied) in Chinese
    assert all(sentence in page for sentence in conclusion) and not any(sentence in page for sentence in english)
    for run in runs:  # each length's row: its value and its test entity F1
        assert f"<td>{run.outcome.value}</td>" in page and f"{run.record.metrics['f1']:.3f}" in page
    assert "<th>测试集 实体 F1</th>" in page and "已完成" in page  # the table in Chinese
    assert page.count('class="chart"') == 3 and page.count("Plotly.newPlot") == 3
    assert "实体 F1 随 train.max_length 的变化" in page and "训练损失与验证损失" in page  # charts in Chinese
    assert "在 16 时保留" in page and "✓" in page  # the words each length keeps
    assert "python -m lab lesson run ner-length lesson.yaml --values 16,32,64" in page
    assert "task: ner" in page and "from transformers import (" in page and not FETCHED.search(page)


@pytest.mark.parametrize(
    "group, refusal",
    [
        ("nothing of the kind", "is neither a lesson nor a comparison"),
        ("lesson no-such-lesson x", "names no lesson"),
        ("lesson ner-length never ran", "No lesson 'lesson ner-length never ran' among your runs"),
    ],
)
def test_the_cli_refuses_a_group_that_is_not_a_lesson_or_a_comparison_in_one_line(
    group, refusal, comparison, capsys, tmp_path, monkeypatch
):
    store, _, _ = comparison
    monkeypatch.setenv("LAB_RUNS_DIR", str(store.runs_dir))
    out = tmp_path / "nothing.html"
    code, said, err = cli(capsys, "handout", "--group", group, "--out", str(out))
    assert code == 2 and not said and err.startswith("error: ") and err.count("\n") == 1, err
    assert refusal in err and not out.exists()


def test_a_student_cannot_write_the_handout_of_another_students_run(comparison, capsys, tmp_path, monkeypatch):
    teachers, group, (head, _) = comparison
    runs_dir = shutil.copytree(teachers.runs_dir, tmp_path / "runs")  # accounts on in a copy: the others stay off
    monkeypatch.setenv("LAB_RUNS_DIR", str(runs_dir))
    book = AccountBook(runs_dir)
    book.add("alice", "teacher", "teach-3x4mple")
    book.add("bob", "student", "bob-s3cret-pw")
    out = tmp_path / "stolen.html"
    code, said, err = cli(capsys, "handout", head, "--out", str(out), "--as", "bob")
    assert code == 2 and not said and err.startswith("error: No run") and not out.exists()
    code, said, err = cli(capsys, "handout", "--group", group, "--out", str(out), "--as", "bob")
    assert code == 2 and err.startswith("error: No comparison") and not out.exists()
    code, _, err = cli(capsys, "handout", head, "--out", str(out), "--as", "alice")
    assert code == 0 and out.exists()


@pytest.mark.parametrize("page", ["pages/6_Compare.py", "pages/4_Runs.py", "pages/3_Live_run.py"])
def test_the_compare_runs_and_live_pages_offer_the_handout_in_the_pages_language(comparison, page, monkeypatch):
    from streamlit.testing.v1 import AppTest

    import lab.training.engine  # noqa: F401  (imported here first: the app's warm-up then imports nothing)
    from ui.i18n import catalogue

    store, group, (head, _) = comparison
    monkeypatch.setenv("LAB_RUNS_DIR", str(store.runs_dir))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.query_params.update(lang="zh", group=group, run=head)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [button.proto.label for button in at.get("download_button")]
    assert catalogue("zh")["handout.download"] in labels, labels


def one_run(tmp_path, sentiment_csv, tiny_model_dir, engine, *overrides: str) -> tuple[RunStore, str]:
    config = RunConfig(task="classification").with_overrides(
        ["data.dataset=", f"data.train_file={sentiment_csv}", f"model.name_or_path={tiny_model_dir}", *overrides]
    )
    store = RunStore(tmp_path / "runs")
    return store, run_in_foreground(config, store=store, train_fn=engine)[0]


def test_a_run_handout_script_trains_at_the_rate_the_run_trained_at(tmp_path, sentiment_csv, tiny_model_dir):
    from lab.views.run_handout import run_handout

    def short_run_engine(config, output_dir, sink, should_stop=None, resume_from_checkpoint=None):
        # A short budget: the engine picked a rate other than the method's one-click default.
        sink(RunStartedEvent(device="cpu", precision="fp32", learning_rate=0.05, head_learning_rate=0.07, max_steps=45))
        return scripted_engine(config, output_dir, sink)

    store, run_id = one_run(tmp_path, sentiment_csv, tiny_model_dir, short_run_engine, "peft.method=lora")
    page = run_handout(store, run_id, "en")
    assert "\nLEARNING_RATE = 0.05\n" in page and "\nHEAD_LEARNING_RATE = 0.07\n" in page


def test_an_auto_run_whose_range_test_never_found_a_rate_has_a_handout_without_a_script(
    tmp_path, sentiment_csv, tiny_model_dir, monkeypatch
):
    from lab.errors import LabError
    from lab.views.run_handout import run_handout

    def failing_engine(config, output_dir, sink, should_stop=None, resume_from_checkpoint=None):
        raise LabError("The range test could not read the data.")

    store, run_id = one_run(tmp_path, sentiment_csv, tiny_model_dir, failing_engine, "train.learning_rate=auto")
    assert store.load_config(run_id).train.finds_learning_rate and store.get_run(run_id).status == "failed"
    page = run_handout(store, run_id, "zh")
    assert "learning_rate: auto" in page  # the config is there
    assert "LEARNING_RATE =" not in page and "没有脚本" in page  # the script is not, and one line says why

    from streamlit.testing.v1 import AppTest

    import lab.training.engine  # noqa: F401  (imported here first: the app's warm-up then imports nothing)
    from ui.i18n import catalogue

    monkeypatch.setenv("LAB_RUNS_DIR", str(store.runs_dir))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.query_params.update(lang="zh", run=run_id)
    at.run()
    at.switch_page("pages/3_Live_run.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert catalogue("zh")["handout.download"] in [button.proto.label for button in at.get("download_button")]
    assert any(catalogue("zh")["messages.learning_rate_auto_unresolved"] in caption.value for caption in at.caption)
    assert any(label.startswith("日志") for label in (e.proto.label for e in at.expander)), "the log is drawn"
