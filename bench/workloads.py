"""The two workloads and the one set of examples every arm trains on.

Every arm trains `warmup_steps + timed_steps` optimizer steps (S) on the same seeded train subset
of 4 x S batches, taken by the lab's own `load_splits` and tokenised by its `tokenize_splits`
(truncation, no padding), so the hand-made arms and the lab arm see the same examples.

Why 4 x S: transformers' length-grouped sampler shuffles, cuts the data into megabatches of
min(50, examples / (4 x batch)) batches and sorts each by length. With 4 x S batches the S steps
are exactly one megabatch, a random quarter of the subset sorted by length, as in a real run
(where the megabatch is 50 batches, or a quarter of a small dataset). The other arms take S random
batches of the same subset. S steps stay within the first epoch, so no evaluation falls inside
the timed window. The sampler puts the longest batch first: the lab's warm-up steps are its
longest batches.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.config import DataConfig, ModelConfig, PeftSettings, RunConfig, TrackingConfig, TrainConfig


@dataclass(frozen=True)
class Workload:
    name: str  # key in the JSON output
    task: str
    dataset: str
    max_length: int
    batch_size: int
    title: str


# Batch sizes of the reference measurements (batch 16 on WNUT-16, batch 8 on IMDB-512).
WORKLOADS = {
    "ner": Workload("ner", "ner", "wnut16", 128, 16, "NER: WNUT-16, max length 128"),
    "imdb": Workload("imdb", "classification", "imdb", 512, 8, "Sentiment: IMDB, max length 512"),
}

# Batches of training data per optimizer step the arms take (see the module docstring).
SUBSET_BATCHES_PER_STEP = 4
# Validation and test examples the lab arm evaluates after training (outside the timed window).
EVAL_EXAMPLES = 64
# Learning rate for all arms: speed does not depend on it, sameness does.
LEARNING_RATE = 5e-5
# Model alias that builds a randomly initialised bert-base (12 x 768) for speed measurements alone.
BERT_BASE_RANDOM = "bert-base-random"


@dataclass(frozen=True)
class Settings:
    """What the command line chose; the same for every arm."""

    model: str = "minilm"
    device: str = "cpu"
    warmup_steps: int = 2
    timed_steps: int = 20
    repeats: int = 1
    seed: int = 42
    peft: str = "full"
    compile: bool = False
    peak_tflops: float = 0.0
    batch_sizes: tuple[tuple[str, int], ...] = ()  # per-workload overrides
    tensorboard: bool = True  # the lab arms write TensorBoard event files, as every run does by default

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.timed_steps

    def batch_size(self, workload: Workload) -> int:
        return dict(self.batch_sizes).get(workload.name, workload.batch_size)


def lab_config(workload: Workload, settings: Settings, model_path: str) -> RunConfig:
    """The lab arm's config: the lab's defaults plus what makes the arms comparable."""
    batch_size = settings.batch_size(workload)
    return RunConfig(
        task=workload.task,
        name=f"bench-{workload.name}",
        data=DataConfig(
            dataset=workload.dataset,
            source="offline",
            train_subset=SUBSET_BATCHES_PER_STEP * batch_size * settings.total_steps,
            eval_subset=EVAL_EXAMPLES,
        ),
        model=ModelConfig(name_or_path=model_path),
        peft=PeftSettings(method=settings.peft),
        train=TrainConfig(
            learning_rate=LEARNING_RATE,
            train_batch_size=batch_size,
            max_steps=settings.total_steps,
            max_length=workload.max_length,
            seed=settings.seed,
            device=settings.device,
            torch_compile=settings.compile,
        ),
        tracking=TrackingConfig(tensorboard=settings.tensorboard),
    )


@dataclass
class PreparedWorkload:
    """A workload with its tokenised train subset, ready for the hand-made arms."""

    workload: Workload
    config: RunConfig  # the lab arm's config
    tokenizer: Any
    train: Any  # datasets.Dataset: input_ids, attention_mask, [token_type_ids], labels, length, [word_ids]
    label_names: list[str]


def prepare(workload: Workload, settings: Settings, model_path: str) -> PreparedWorkload:
    from lab.data.preprocessing import tokenize_splits
    from lab.data.splits import load_splits
    from lab.model.loading import load_tokenizer

    config = lab_config(workload, settings, model_path)
    tokenizer = load_tokenizer(config.model, pre_split_words=config.task == "ner")
    loaded = load_splits(config.data, config.task, config.train.seed, log=lambda message: None)
    train = tokenize_splits(loaded.splits, tokenizer, config.task, config.train.max_length)["train"]
    needed = config.train.train_batch_size * settings.total_steps
    if len(train) < needed:  # a second epoch would put the lab's evaluation inside the timed window
        raise SystemExit(
            f"{workload.dataset} has {len(train)} training examples; {settings.total_steps} steps of "
            f"batch {config.train.train_batch_size} need {needed}. Use fewer --steps or a smaller batch."
        )
    return PreparedWorkload(workload, config, tokenizer, train, loaded.label_names)


def resolve_model(name: str, workdir: Path) -> str:
    """`bert-base-random` becomes a folder with a random bert-base and the MiniLM's tokenizer (the same
    30,522-word uncased vocabulary); other names pass through to the lab's own loading."""
    if name != BERT_BASE_RANDOM:
        return name
    from transformers import BertConfig, BertModel

    from lab.model.loading import load_tokenizer

    folder = workdir / BERT_BASE_RANDOM
    tokenizer = load_tokenizer(ModelConfig())
    BertModel(BertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="lab-bench-")
