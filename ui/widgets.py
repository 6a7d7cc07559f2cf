"""Widgets more than one page draws the same way."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from lab.config import ConsentNeeded, DataConfig, config_field
from lab.errors import LabError
from lab.views.data_view import file_columns
from ui.i18n import field_help, t

CONSENTED = "consented"  # session_state: the settings (ConsentNeeded) the person confirmed next to Launch

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
    taken: list[str] = []
    for column, name in zip((left, right), COLUMN_FIELDS[task]):
        label, current = t(f"field.data.{name}"), getattr(data, name)
        # A column the file lacks: offer the first one the text (or words) did not take.
        free = [c for c in columns if c not in taken] or columns
        with column:
            if columns:
                chosen = st.selectbox(
                    label,
                    columns,
                    index=columns.index(current if current in columns else free[0]),
                    key=key(f"data.{name}.{data.train_file}"),
                    help=field_help("data", name),
                )
            else:
                chosen = st.text_input(label, current, key=key(f"data.{name}"), help=field_help("data", name))
        setattr(data, name, chosen)
        taken.append(chosen)


def field_label(section: str, name: str) -> str:
    """Config field `section.name` as the forms name it, in the page's language; its key where the catalogue
    has no label for it (a setting no form shows, such as train.device on an older assignment)."""
    try:
        return t(config_field(section, name).label_key)
    except KeyError:
        return f"{section}.{name}" if section else name


def config_widget(
    section: str, name: str, value: Any, key: str, label: str = "", within: Any = None, **options: Any
) -> Any:
    """The widget of config field `section.name`, drawn from its declaration (lab.config.config_field): a number
    input within the field's bounds and step (and this machine's limit, read from `within`, the field's section),
    a choice of its Literal's values, a checkbox, a text field (comma-separated for a list of names). `label`
    replaces the catalogue's; `options` go to the widget and win over the declaration (`options=` for a choice
    whose values are not a Literal, `placeholder=`, `format_func=`). Returns the value for the config."""
    field = config_field(section, name)
    common = {"key": key, "help": field_help(section, name)}
    label = label or field_label(section, name)
    if field.kind == "choice" or "options" in options:
        choices = list(options.pop("options", field.choices))
        index = choices.index(value) if value in choices else 0
        return st.selectbox(label, choices, index=index, **common, **options)
    if field.kind == "check":
        return st.checkbox(label, value, **common, **options)
    if field.kind == "names":
        text = st.text_input(label, ", ".join(value), **common, **options)
        return [part.strip() for part in text.split(",") if part.strip()]
    if field.kind not in ("whole", "number"):
        return st.text_input(label, value, **common, **options)
    whole = field.kind == "whole"
    low, high = field.widget_range(within)
    if value is not None:
        # A value outside the widget's range would stop the page; validation names it at launch instead.
        value = min(max(value, low if low is not None else value), high if high is not None else value)
        value = int(value) if whole else float(value)
    bounds: dict[str, Any] = {"min_value": low, "max_value": high}
    if field.limits.step is not None:
        bounds["step"] = int(field.limits.step) if whole else float(field.limits.step)
    if field.limits.number_format:
        bounds["format"] = field.limits.number_format
    return st.number_input(label, value=value, **common, **{**bounds, **options})


def code_span(text: str) -> str:
    """Text from a config shown literally in Markdown: a model name or URL from a file may hold Markdown
    (a remote image) or be very long."""
    return "`" + text.replace("`", "'").replace("\n", " ")[:200] + "`"


def consent_text(needed: list[ConsentNeeded]) -> str:
    """What the settings that need consent do, in the page's language: run a model's code, send the run away."""
    return "; ".join(t(f"form.consent_{item.setting}", value=code_span(item.value)) for item in needed)


def consented(needed: list[ConsentNeeded]) -> bool:
    """Whether the person confirmed every one of these settings (nothing to confirm is consent)."""
    return set(needed) <= st.session_state.get(CONSENTED, set())


def consent_checkbox(needed: list[ConsentNeeded], key: Callable[[str], str]) -> bool:
    """The confirmation beside Launch, naming each setting and its risk. Its key holds the settings, so a changed
    model or address asks again; its choice is remembered before the next rerun draws anything (a callback),
    so the form counts parameters with the model's code only once it is ticked."""
    digest = hashlib.sha256(repr(needed).encode()).hexdigest()[:16]
    box = key(f"consent-{digest}")

    def remember() -> None:
        st.session_state[CONSENTED] = set(needed) if st.session_state[box] else set()

    return st.checkbox(t("form.consent", what=consent_text(needed)), key=box, on_change=remember)
