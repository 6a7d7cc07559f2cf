"""The app's words in English and Chinese (简体中文): one catalogue file per language, ui/locales/*.yaml.

`t(key, **values)` is the text of `key` in the page's language, its `{placeholders}` filled. The
language is the URL's (`?lang=zh`: a shared link opens in the same language), else the one the
sidebar switch chose in this session, else the browser's (`st.context.locale`), else English; the
page writes it back into the URL.

Two kinds of text are not keys of their own, so each keeps one source:
- a config field's help: English from lab.config's field metadata, Chinese from the catalogue's
  `help.SECTION.FIELD` (`field_help`);
- the library's sentences (a LabError, a `lab.errors.Message` such as a run's status): English as the
  library wrote it; in another language the catalogue's `messages.CODE` filled with the sentence's
  params (`message`), else as written.
"""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

from lab.catalogue import DEFAULT_LANGUAGE, catalogue
from lab.config import field_help as english_field_help
from lab.errors import LabError

LANGUAGES = {"en": "English", "zh": "简体中文"}
_CHOSEN = "language"  # session_state key of the sidebar switch


def placeholders(text: str) -> set[str]:
    """The `{name}` placeholders of a text. A formula's braces (`\\frac{\\alpha}{r}`) may look like one: its
    translation has the same formula, so the check still holds."""
    return set(re.findall(r"\{(\w+)\}", text))


def _from_browser() -> str:
    locale = (getattr(st.context, "locale", None) or "").lower()
    return "zh" if locale.startswith("zh") else DEFAULT_LANGUAGE


def language() -> str:
    """This page's language (see the module docstring); English outside a page (tests of the charts)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx(suppress_warning=True) is None:
        return DEFAULT_LANGUAGE
    asked = st.query_params.get("lang", "")
    if asked in LANGUAGES:
        st.session_state[_CHOSEN] = asked
    return st.session_state.get(_CHOSEN) or _from_browser()


def language_switch() -> None:
    """The sidebar's choice of language; it keeps the choice in the URL."""
    current = language()
    chosen = st.sidebar.segmented_control(
        t("app.language"), list(LANGUAGES), default=current, format_func=LANGUAGES.get, key="language-switch"
    )
    if chosen and chosen != current:
        st.session_state[_CHOSEN] = chosen
        st.query_params["lang"] = chosen
        st.rerun()
    if st.query_params.get("lang") != current:
        st.query_params["lang"] = current


def t(key: str, **values: Any) -> str:
    """The text of `key` in this page's language (English where a catalogue lacks it)."""
    text = catalogue(language()).get(key) or catalogue(DEFAULT_LANGUAGE)[key]
    return text.format(**values) if values else text


def field_help(section: str, name: str) -> str:
    if language() != DEFAULT_LANGUAGE:
        translated = catalogue(language()).get(f"help.{section + '.' if section else ''}{name}")
        if translated:
            return translated
    return english_field_help(section, name)


def message(said: str | LabError) -> str:
    """A library sentence in this page's language: a `LabError` or a `Message` (a run's status, a data
    note) is translated by its code and params from the catalogue's `messages.CODE` (a `method`
    or `task` param is a code, named in this language by `method.CODE.name` / `task.CODE`); text without a
    code, or whose code this language lacks, is shown as the library wrote it (English)."""
    text = str(said)
    code, params = getattr(said, "code", ""), getattr(said, "params", {})
    template = catalogue(language()).get(f"messages.{code}") if code and language() != DEFAULT_LANGUAGE else None
    if not template:
        return text
    try:
        return template.format(**_worded(params))
    except (KeyError, IndexError):  # a catalogue that names a parameter the library did not give
        return text


# Params that carry a code, not words: a page names them in its own language before filling the template.
WORDED_PARAMS = {"method": "method.{}.name", "task": "task.{}"}


def _worded(params: dict[str, str]) -> dict[str, str]:
    worded = dict(params)
    for name, key in WORDED_PARAMS.items():
        if name in params and key.format(params[name]) in catalogue(DEFAULT_LANGUAGE):
            worded[name] = t(key.format(params[name]))
    return worded


def duration_units() -> tuple[str, str, str]:
    """Hours, minutes and seconds in this page's language, for lab.views.formatting.format_duration."""
    return t("unit.hours"), t("unit.minutes"), t("unit.seconds")


def duration(seconds) -> str:
    from lab.views.formatting import format_duration

    return format_duration(seconds, duration_units())


def metric_name(name: str) -> str:
    """A metric's words (`macro_f1` as "macro F1"), from the catalogue's `lessons.metric.NAME`; a metric
    the catalogue does not name shows as the library calls it."""
    key = f"lessons.metric.{name}"
    return t(key) if key in catalogue(DEFAULT_LANGUAGE) else name
