"""Data: look at a dataset before training on it.

Pick a built-in dataset or upload a file, map its columns, and see rows, the label distribution,
how long the texts are in sub-word tokens for the chosen model (and how many get truncated), and
for NER how one sentence's word tags land on sub-word tokens. The data is loaded exactly as a run
would load it, so a file's mistakes show here, with their row or line.
"""

import dataclasses

import streamlit as st
import yaml

from lab.config import DEFAULT_MODEL, TASKS, DataConfig
from lab.data.builtin import BUILTINS
from lab.hub import is_offline
from lab.views.data_view import (
    UPLOAD_TYPES,
    DataOverview,
    TokenLengths,
    data_overview,
    save_upload,
    token_lengths,
    truncated_share,
)
from ui import charts
from ui.common import (
    NEW_RUN_PAGE,
    get_store,
    page_setup,
    task_name,
    upload_owner,
    user_errors,
    wait_for_training_stack,
)
from ui.i18n import field_help, message, t
from ui.widgets import column_mapping

# What "Train on this data" passes to the New run page (a built-in dataset keeps the task's subset sizes;
# a file of the user's trains on all of it).
HANDED_OVER = ("dataset", "train_file", "text_column", "label_column", "tokens_column", "tags_column")
WHOLE_FILE = {"train_subset": 0, "eval_subset": 0}

page_setup("pages.data")
st.title(t("pages.data"))


@st.cache_data(show_spinner=False, max_entries=8)
def load_overview(data_yaml: str, task: str) -> DataOverview:
    # Keyed by the config as text: st.cache_data hashes its arguments.
    wait_for_training_stack()  # datasets' hashing reaches into a half-imported transformers otherwise
    return data_overview(DataConfig(**yaml.safe_load(data_yaml)), task)


@st.cache_resource(show_spinner=False, max_entries=4)
def load_tokenizer(model: str):
    wait_for_training_stack()
    from lab.config import ModelConfig
    from lab.model.loading import load_tokenizer as load

    return load(ModelConfig(name_or_path=model))


@st.cache_data(show_spinner=False, max_entries=16)
def load_lengths(data_yaml: str, task: str, model: str, max_length: int) -> TokenLengths:
    # Reruns (every click) reuse the lengths; a new model or max_length measures again.
    return token_lengths(load_tokenizer(model), load_overview(data_yaml, task).examples, task, max_length)


def choose_data(task: str) -> DataConfig | None:
    kind = st.radio(
        t("data.source"), ["builtin", "upload"], format_func=lambda k: t(f"data.source_{k}"), horizontal=True
    )
    if kind == "builtin":
        names = [name for name, spec in BUILTINS.items() if spec.task == task]
        # Offline, open on a dataset that loads (CoNLL-2003 has no offline copy).
        loads = [name for name in names if BUILTINS[name].offline is not None] if is_offline() else names
        dataset = st.selectbox(
            t("data.dataset"),
            names,
            index=names.index(loads[0]) if loads else 0,
            format_func=lambda n: BUILTINS[n].title,
            help=field_help("data", "dataset"),
        )
        return DataConfig(dataset=dataset)
    uploaded = st.file_uploader(t("data.training_file", hint=t(f"data.file_hint.{task}")), type=UPLOAD_TYPES)
    if uploaded is None:
        return None
    path = save_upload(uploaded.name, uploaded.getvalue(), get_store().runs_dir, upload_owner())
    config = DataConfig(dataset="", train_file=str(path))
    column_mapping(task, config)
    return config


def show_overview(overview: DataOverview, task: str) -> None:
    st.caption(t("data.from", source=message(overview.source)))
    if overview.notes:
        st.info("\n".join(f"- {message(note)}" for note in overview.notes), icon=":material/info:")
    row = st.container(horizontal=True, gap="medium")
    for split, size in overview.split_sizes.items():
        row.metric(t(f"split.{split}"), f"{size:,}", width=150)
    row.metric(t(f"data.label_count.{task}"), len(overview.label_names), width=150)
    st.subheader(t("data.first_rows"))
    st.dataframe(overview.preview, hide_index=True, height=250)


def show_lengths(overview: DataOverview, task: str, data_yaml: str) -> None:
    st.subheader(t("data.labels_and_lengths"))
    left, right = st.columns([3, 1])
    model = left.text_input(t("data.tokenizer_model"), DEFAULT_MODEL, help=field_help("model", "name_or_path"))
    max_length = right.number_input(
        t("field.train.max_length"),
        8,
        8192,
        64 if task == "ner" else 128,
        step=8,
        key=f"data-max-length-{task}",  # the same widget in either language
        help=field_help("train", "max_length"),
    )
    with st.spinner(t("data.loading_tokenizer")):
        tokenizer = load_tokenizer(model)
    measured = load_lengths(data_yaml, task, model, int(max_length))
    lengths = measured.lengths
    share = truncated_share(lengths, max_length)
    left, right = st.columns(2)
    left.plotly_chart(charts.label_distribution(overview.label_counts, task), width="stretch")
    right.plotly_chart(charts.token_length_histogram(lengths, max_length, model), width="stretch")
    right.markdown(t(f"data.truncated.{task}", share=f"{share:.1%}", count=f"{len(lengths):,}", max_length=max_length))
    if measured.clipped:
        right.caption(t(f"data.lengths_clipped.{task}", count=f"{measured.clipped:,}", limit=f"{measured.limit:,}"))
    if task == "ner" and overview.examples:
        show_alignment(overview, tokenizer, max_length)


def show_alignment(overview: DataOverview, tokenizer, max_length: int) -> None:
    from lab.data.preprocessing import label_alignment_view

    st.subheader(t("data.alignment"))
    number = st.number_input(t("data.sentence"), 1, len(overview.examples), 1, help=t("data.sentence_help"))
    words, tags = overview.examples[number - 1], overview.example_tags[number - 1]
    rows = label_alignment_view(tokenizer, words, tags, max_length)
    st.caption(t("data.alignment_caption"))
    st.dataframe(
        [
            {
                t("data.column.token"): r["token"],
                t("data.column.word"): r["word"],
                t("data.column.label"): str(r["label"]),
            }
            for r in rows
        ],
        hide_index=True,
        height=min(420, 38 + 35 * len(rows)),
    )


with user_errors():
    task = st.radio(t("form.task"), TASKS, format_func=task_name, horizontal=True)
    data_config = choose_data(task)
    if data_config is not None:
        data_yaml = yaml.safe_dump(dataclasses.asdict(data_config))
        with st.spinner(t("data.loading")):
            overview = load_overview(data_yaml, task)
        show_overview(overview, task)
        show_lengths(overview, task, data_yaml)
        if st.button(t("data.train_on_this"), icon=":material/tune:", type="primary"):
            chosen = {name: value for name, value in dataclasses.asdict(data_config).items() if name in HANDED_OVER}
            if data_config.train_file:
                chosen.update(WHOLE_FILE)
            st.session_state["new-run-data"] = {"task": task, "data": chosen}
            st.switch_page(NEW_RUN_PAGE)
