"""The data map of a run (Swayamdipta et al., 2020, "Dataset Cartography"): for every training example,
the mean and the spread over epochs of the model's probability of its gold label (for a NER sentence, of
its least believed word's gold tag), read from what the training passes computed
(lab.insight.dynamics.TrainingDynamics).

Easy examples sit high with little spread; ambiguous ones swing between epochs; hard ones stay low,
and those are often mislabelled. Spread needs two epochs or more; a shorter run's map is its within-epoch
equivalent: the same mean and spread over its evaluations, for the fixed sample of training examples it
scored at each (`frame.attrs["evaluations"]` says how many; 0 for a map over epochs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from lab.insight.dynamics import DYNAMICS_FILE

# Where the regions part: spread (std of the probability over epochs) and mean probability.
AMBIGUOUS_SPREAD = 0.2
HARD_CONFIDENCE = 0.5
REGIONS = ("easy", "ambiguous", "hard")


def load_data_map(output_dir: str | Path) -> Optional[pd.DataFrame]:
    """One row per training example: text, label, confidence, variability, correctness, region; None when
    the run wrote no training dynamics (a run from before they were recorded)."""
    path = Path(output_dir) / DYNAMICS_FILE
    if not path.is_file():
        return None
    return data_map(json.loads(path.read_text(encoding="utf-8")))


def data_map(dynamics: dict) -> pd.DataFrame:
    """Over epochs when the run made two passes or more, else over its evaluations when it scored a sample
    at two or more of them; `attrs`: `epochs`, and `evaluations` (0 when the map is over epochs)."""
    evaluations = dynamics.get("evaluations") or {}
    over_evaluations = len(dynamics["epochs"]) < 2 and len(evaluations.get("steps", ())) >= 2
    if over_evaluations:
        rows = evaluations["examples"]
        texts, labels = [dynamics["texts"][i] for i in rows], [dynamics["labels"][i] for i in rows]
        seen, right = evaluations["probabilities"], evaluations["correct"]  # evaluations x sampled examples
    else:
        texts, labels, seen, right = dynamics["texts"], dynamics["labels"], dynamics["epochs"], dynamics["correct"]
    probabilities = np.array(seen, dtype=float).reshape(len(seen), len(texts))  # passes x examples, nan if unseen
    correct = np.array([[np.nan if c is None else float(c) for c in row] for row in right], dtype=float)
    frame = pd.DataFrame(
        {
            "text": texts,
            "label": labels,
            "confidence": np.nanmean(probabilities, axis=0),
            "variability": np.nanstd(probabilities, axis=0),
            "correctness": np.nanmean(correct.reshape(probabilities.shape), axis=0),
        }
    )
    frame["region"] = np.where(
        frame["variability"] >= AMBIGUOUS_SPREAD,
        "ambiguous",
        np.where(frame["confidence"] >= HARD_CONFIDENCE, "easy", "hard"),
    )
    frame.attrs["epochs"] = len(dynamics["epochs"])
    frame.attrs["evaluations"] = len(seen) if over_evaluations else 0
    return frame


def hardest(frame: pd.DataFrame, count: int = 20) -> pd.DataFrame:
    """The examples the model believed least, lowest mean probability of the gold label first."""
    return frame.sort_values("confidence").head(count)[["text", "label", "confidence", "variability", "region"]]
