"""A finished run's model as ONNX: peft adapters merged into the weights where their method merges (the
method registry's `mergeable`), bottleneck adapters exported as the layers they are, dynamic batch and
sequence axes, the tokenizer and the label names beside it, checked against torch with onnxruntime
before it is called done.

torch.onnx's dynamo exporter (`torch.export`, with onnxscript) follows the lab's mean pooling, which
takes the attention mask through a hook; the older TorchScript tracer baked the first input's mask in
(logits off by 0.1 on a second input).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lab.errors import LabError
from lab.inference.predict import Predictor, find_model_dir
from lab.methods.registry import method_spec
from lab.model.loading import MODEL_INFO_FILE

ONNX_FILE = "model.onnx"
LABELS_FILE = "labels.json"
TOLERANCE = 1e-3  # largest logit difference onnxruntime may show against torch


@dataclass
class ExportResult:
    path: Path
    max_abs_difference: float
    examples: int


class _Logits(torch.nn.Module):
    """The model with plain tensor inputs and one output, as ONNX wants it."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def merged_model(predictor: Predictor) -> torch.nn.Module:
    """The predictor's model with a mergeable adapter folded into its weights; any other model as it is."""
    model = predictor.model
    if method_spec(predictor.info["peft_method"]).mergeable:
        model = model.merge_and_unload()
    return model.eval()


def export_onnx(model_dir: str | Path, out_dir: str | Path, texts: Sequence[str]) -> ExportResult:
    """Export the model in `model_dir` to `out_dir/model.onnx` and compare onnxruntime's logits with torch's on
    `texts` (NER: whitespace-separated words); raises LabError when they differ by more than TOLERANCE."""
    import onnxruntime

    if len(texts) < 2:
        raise LabError("The ONNX check needs at least two example texts.")
    method = json.loads((find_model_dir(model_dir) / MODEL_INFO_FILE).read_text(encoding="utf-8"))["peft_method"]
    if method_spec(method).virtual_tokens:
        raise LabError(
            f"ONNX export needs the model's own layers; {method} tuning keeps its virtual tokens outside "
            "them. Use python -m lab predict for this run."
        )
    predictor = Predictor(model_dir)
    model = _Logits(merged_model(predictor))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encode = _encoder(predictor)
    sample = encode(list(texts[:2]))
    batch, sequence = torch.export.Dim("batch", min=1), torch.export.Dim("sequence", min=2)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates every stage on stdout
            torch.onnx.export(
                model,
                (sample["input_ids"], sample["attention_mask"]),
                str(out / ONNX_FILE),
                dynamo=True,
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_shapes={"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}},
            )
    except Exception as exc:  # noqa: BLE001 - the exporter's errors are long; the user gets one line
        raise LabError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    predictor.tokenizer.save_pretrained(str(out))
    (out / LABELS_FILE).write_text(
        json.dumps({"task": predictor.task, "labels": predictor.label_names}, indent=2), encoding="utf-8"
    )
    session = onnxruntime.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    encoded = encode(list(texts))
    got = session.run(
        ["logits"], {"input_ids": encoded["input_ids"].numpy(), "attention_mask": encoded["attention_mask"].numpy()}
    )[0]
    with torch.no_grad():
        expected = model(encoded["input_ids"], encoded["attention_mask"]).numpy()
    difference = float(np.abs(got - expected).max())
    if difference > TOLERANCE:
        raise LabError(
            f"The ONNX model's logits differ from torch's by up to {difference:.2e} (more than "
            f"{TOLERANCE:g}) on {len(texts)} examples: do not use this export."
        )
    return ExportResult(out / ONNX_FILE, difference, len(texts))


def _encoder(predictor: Predictor):
    def encode(texts: list[str]):
        if predictor.task == "ner":
            return predictor.tokenizer(
                [text.split() for text in texts],
                is_split_into_words=True,
                truncation=True,
                max_length=predictor.max_length,
                padding=True,
                return_tensors="pt",
            )
        return predictor.tokenizer(
            texts, truncation=True, max_length=predictor.max_length, padding=True, return_tensors="pt"
        )

    return encode


def test_texts(config, count: int = 32) -> list[str]:
    """The first `count` examples of the run's own test split (NER: words joined by spaces)."""
    from lab.data.splits import load_splits

    test = load_splits(config.data, config.task, config.data.split_seed, log=lambda message: None).splits["test"]
    rows = test.select(range(min(count, len(test))))
    return [" ".join(words) for words in rows["tokens"]] if config.task == "ner" else list(rows["text"])
