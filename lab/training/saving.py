"""What a finished run leaves behind: the saved model (or adapter) and report.json."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lab.config import LORA_FAMILY, RunConfig
from lab.data.splits import LoadedData
from lab.model.loading import MODEL_INFO_FILE
from lab.training.trainer import virtual_token_offset

REPORT_FILE = "report.json"
# The Trainer pickles its arguments beside every save; the model folder is what users share and load, and
# a pickle runs code when it is loaded, so that folder keeps none (the checkpoints keep theirs to resume).
TRAINER_PICKLE = "training_args.bin"


def save_model(
    trainer, config: RunConfig, label_names: list[str], model_dir: Path, max_length: int, pooling: str = ""
) -> None:
    """Save the model (or adapter) with tokenizer, label maps and what `lab predict` needs to reload it
    (`max_length`: where training cut sequences; `pooling`: the resolved model.pooling)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(model_dir))
    (model_dir / TRAINER_PICKLE).unlink(missing_ok=True)
    info = {
        "task": config.task,
        "peft_method": config.peft.method,
        "base_model": config.model.name_or_path,
        "label_names": label_names,
        "max_length": max_length,
        "num_virtual_tokens": virtual_token_offset(config),
        "pooling": pooling,
        "trust_remote_code": config.model.trust_remote_code,
    }
    (model_dir / MODEL_INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    if config.peft.merge_adapter and config.peft.method in LORA_FAMILY:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(model_dir / "merged"))
        trainer.processing_class.save_pretrained(str(model_dir / "merged"))
        merged_info = dict(info, peft_method="full")
        (model_dir / "merged" / MODEL_INFO_FILE).write_text(json.dumps(merged_info, indent=2), encoding="utf-8")


def write_report(output_dir: Path, config: RunConfig, loaded: LoadedData, result: Any, scorer: Any) -> None:
    report = {
        "run": config.to_dict(),
        "status": result.status,
        "data_source": loaded.source,
        "data_notes": loaded.notes,
        "split_sizes": {k: len(v) for k, v in loaded.splits.items()},
        "label_names": loaded.label_names,
        "test_metrics": result.metrics,
        "per_label": result.per_label,
        "confusion": scorer.last_confusion if result.status == "completed" else {},
        **{k: v for k, v in asdict(result).items() if k not in ("metrics", "per_label", "status")},
    }
    (output_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
