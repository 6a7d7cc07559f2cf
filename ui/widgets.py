"""Widgets more than one page draws the same way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from lab.config import DataConfig
from lab.errors import LabError
from lab.views.data_view import file_columns
from ui.i18n import field_help, t

# The config fields that name a file's columns, per task (CoNLL files have none: a word and its tag per line).
COLUMN_FIELDS = {"classification": ("text_column", "label_column"), "ner": ("tokens_column", "tags_column")}


def column_mapping(task: str, data: DataConfig, key: Callable[[str], str] = str) -> None:
    """Which of the training file's columns hold the text and the label (words and tags for NER JSONL),
    written into `data`: a choice among the file's own columns when it can be read, else a text field
    (a path typed before the file exists). Nothing for a CoNLL file."""
    if task == "ner" and Path(data.train_file).suffix.lower() not in (".jsonl", ".json"):
        return  # CoNLL: a word and its tag per line
    try:
        columns = file_columns(data.train_file) if Path(data.train_file).is_file() else []
    except (LabError, OSError):
        columns = []  # the data check names the problem when the run (or the overview) loads the file
    left, right = st.columns(2)
    for column, name in zip((left, right), COLUMN_FIELDS[task]):
        label, current = t(f"field.data.{name}"), getattr(data, name)
        with column:
            if columns:
                chosen = st.selectbox(
                    label,
                    columns,
                    index=columns.index(current) if current in columns else 0,
                    key=key(f"data.{name}.{data.train_file}"),
                    help=field_help("data", name),
                )
            else:
                chosen = st.text_input(label, current, key=key(f"data.{name}"), help=field_help("data", name))
        setattr(data, name, chosen)
