"""Typed configuration of one fine-tuning run.

A run is a `RunConfig`: five sections (`data`, `model`, `peft`, `train`, `tracking`) of dataclasses,
the PEFT one here and the others in lab.config_sections (every name is importable from here).
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
from typing import TYPE_CHECKING, Any, Literal, get_args

import yaml

from lab.coercion import MAX_CONFIG_BYTES, build_dataclass, load_untrusted_yaml, quoted, suggest
from lab.config_fields import ConfigField, describe_field
from lab.config_fields import field_metadata as _help
from lab.config_sections import DATA_SOURCES as DATA_SOURCES
from lab.config_sections import DEFAULT_MODEL as DEFAULT_MODEL
from lab.config_sections import DEVICES as DEVICES
from lab.config_sections import OPTIMIZERS as OPTIMIZERS
from lab.config_sections import POOLINGS as POOLINGS
from lab.config_sections import PRECISIONS as PRECISIONS
from lab.config_sections import RUN_EXECUTORS as RUN_EXECUTORS
from lab.config_sections import SCHEDULERS as SCHEDULERS
from lab.config_sections import TAG_SCHEMES as TAG_SCHEMES
from lab.config_sections import DataConfig, ModelConfig, TrackingConfig, TrainConfig
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

TASKS = get_args(Task)
PEFT_METHODS = tuple(METHODS)
# Method families, read from the registry's records, for the settings that apply to some methods only.
LORA_FAMILY = names_where(lambda spec: spec.low_rank)  # low-rank updates: r, alpha, dropout, merge
VIRTUAL_TOKEN_METHODS = names_where(lambda spec: spec.virtual_tokens)  # learned virtual tokens
NO_ADAPTER_METHODS = names_where(lambda spec: not spec.saves_adapter)  # save a whole model, not an adapter
MERGEABLE_METHODS = names_where(lambda spec: spec.mergeable)  # fold into the base weights

TRUST_REMOTE_CODE_WARNING = (
    "trust_remote_code is on: Python code shipped with {model} runs on this machine with this user's rights "
    "(it can read, change or send any file they can). Turn it off unless you have read that code or trust its authors."
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
        need(
            all(gpu.isdigit() for gpu in t.devices),
            f"train.devices lists GPU ids like 0,1 (as CUDA_VISIBLE_DEVICES names them), got {', '.join(t.devices)}.",
        )
        need(
            t.num_workers == 1 or t.executor == "ray",
            "train.num_workers above 1 trains with Ray Train on a cluster: set train.executor=ray too.",
        )
        need(
            not t.devices or t.num_devices <= len(t.devices),
            f"train.num_devices is {t.num_devices} but train.devices names {len(t.devices)}: name as many GPUs.",
        )
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
