"""The Playground: entities highlighted in text, and the test examples a model gets wrong."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import pandas as pd

from lab.config import RunConfig


def entity_spans(words: Sequence[str], tags: Sequence[str]) -> list[tuple[str, Optional[str]]]:
    """Words grouped into (text, entity type) pieces; type None for text outside entities."""
    from seqeval.metrics.sequence_labeling import get_entities

    starts = {start: (end, entity_type) for entity_type, start, end in get_entities(list(tags))}
    pieces: list[tuple[str, Optional[str]]] = []
    index = 0
    while index < len(words):
        if index in starts:
            end, entity_type = starts[index]
            pieces.append((" ".join(words[index : end + 1]), entity_type))
            index = end + 1
        else:
            pieces.append((words[index], None))
            index += 1
    return pieces


ENTITY_COLORS = (
    "#fde68a",
    "#bfdbfe",
    "#bbf7d0",
    "#fecaca",
    "#e9d5ff",
    "#fed7aa",
    "#a5f3fc",
    "#f5d0fe",
    "#d9f99d",
    "#e5e7eb",
)  # light backgrounds that keep dark text readable, cycled by type


def entities_html(words: Sequence[str], tags: Sequence[str]) -> str:
    """The words as HTML with each entity highlighted and labelled by type (text is escaped)."""
    import html

    colors: dict[str, str] = {}
    pieces = []
    for text, kind in entity_spans(words, tags):
        if kind is None:
            pieces.append(html.escape(text))
            continue
        color = colors.setdefault(kind, ENTITY_COLORS[len(colors) % len(ENTITY_COLORS)])
        pieces.append(
            f'<span class="lab-entity" style="background:{color};color:#111;padding:0.1em 0.35em;'
            f'border-radius:0.35em;white-space:nowrap">{html.escape(text)} '
            f'<b style="font-size:0.7em;opacity:0.75">{html.escape(kind)}</b></span>'
        )
    return '<div style="line-height:2.3;font-size:1.1em">' + " ".join(pieces) + "</div>"


def attributions_html(words: Sequence[str], attributions: Sequence[float]) -> str:
    """The words as HTML, each shaded by its attribution: green pushes towards the explained label, red
    away, the strongest word fully shaded (text is escaped; the hover gives the number)."""
    import html

    strongest = max((abs(a) for a in attributions), default=0.0) or 1.0
    pieces = []
    for word, attribution in zip(words, attributions):
        colour = "22,163,74" if attribution >= 0 else "220,38,38"
        alpha = 0.85 * abs(attribution) / strongest
        pieces.append(
            f'<span title="{attribution:+.3f}" style="background:rgba({colour},{alpha:.2f});'
            f'padding:0.1em 0.25em;border-radius:0.3em">{html.escape(word)}</span>'
        )
    return '<div style="line-height:2.2;font-size:1.1em">' + " ".join(pieces) + "</div>"


def _entities_text(words: Sequence[str], tags: Sequence[str]) -> str:
    return "; ".join(f"{text} ({kind})" for text, kind in entity_spans(words, tags) if kind) or "–"


def example_text(config: RunConfig) -> str:
    """A text to try the run's model on that fits its data: the first example of its test split (a topic
    model is not offered a movie review), words joined by spaces for NER; capped at 1,000 characters."""
    from lab.data.splits import load_splits

    test = load_splits(config.data, config.task, config.data.split_seed, log=lambda message: None).splits["test"]
    if not len(test):
        return ""
    text = " ".join(test[0]["tokens"]) if config.task == "ner" else str(test[0]["text"])
    return text[:1000]


# The short columns first: a sentence or a review is wider than the page and would push what the model
# got wrong (a false positive among the predicted entities) out of view.
MISTAKE_COLUMNS = {
    "ner": ["true entities", "predicted entities", "sentence"],
    "classification": ["true", "predicted", "confidence", "text"],
}


def find_test_mistakes(config: RunConfig, predictor: Any, limit: int = 500) -> pd.DataFrame:
    """The run's test examples (the same seeded split it was scored on) that the model gets wrong, in the
    columns of MISTAKE_COLUMNS."""
    from lab.data.splits import load_splits

    loaded = load_splits(config.data, config.task, config.data.split_seed, log=lambda message: None)
    test = loaded.splits["test"].select(range(min(limit, len(loaded.splits["test"]))))
    names = loaded.label_names
    rows = []
    if config.task == "ner":
        sentences = list(test["tokens"])
        predictions = predictor.predict([" ".join(words) for words in sentences])
        for words, tag_ids, prediction in zip(sentences, test["tags"], predictions):
            true_tags = [names[i] for i in tag_ids]
            if prediction.tags != true_tags:
                rows.append(
                    {
                        "sentence": " ".join(words),
                        "true entities": _entities_text(words, true_tags),
                        "predicted entities": _entities_text(prediction.words, prediction.tags),
                    }
                )
        return pd.DataFrame(rows, columns=MISTAKE_COLUMNS["ner"])
    texts = list(test["text"])
    for text, label_id, prediction in zip(texts, test["label"], predictor.predict(texts)):
        if prediction.label != names[label_id]:
            rows.append(
                {
                    "text": text,
                    "true": names[label_id],
                    "predicted": prediction.label,
                    "confidence": round(prediction.score, 3),
                }
            )
    return pd.DataFrame(rows, columns=MISTAKE_COLUMNS["classification"])
