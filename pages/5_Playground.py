"""Playground: try a finished run's model on your own text, see why it answers as it does, and see the
test examples it gets wrong.

Classification shows the label probabilities; NER shows the text with entities highlighted by type.
"Why?" shades each word by its integrated-gradients attribution (lab.inference.explain).
"""

import streamlit as st

from lab.errors import LabError
from lab.views.formatting import plain_text
from lab.views.playground import attributions_html, entities_html, example_text, find_test_mistakes
from ui import charts
from ui.common import get_store, method_name, page_setup, task_name, user_errors, wait_for_training_stack
from ui.i18n import t

page_setup("pages.playground")
st.title(t("pages.playground"))
store = get_store()


@st.cache_resource(show_spinner=False, max_entries=2)
def load_predictor(model_dir: str):
    wait_for_training_stack()
    from lab.inference.predict import Predictor

    return Predictor(model_dir)


@st.cache_data(show_spinner=False, max_entries=4)
def mistakes(run_id: str, model_dir: str):
    return find_test_mistakes(store.load_config(run_id), load_predictor(model_dir))


@st.cache_data(show_spinner=False, max_entries=16)
def example(run_id: str) -> str:
    try:
        return example_text(store.load_config(run_id))
    except LabError:  # the data moved or went since the run: offer an empty box, not an error
        return ""


@st.cache_data(show_spinner=False, max_entries=32)
def explanation(model_dir: str, text: str, word: int | None):
    from lab.inference.explain import explain

    return explain(load_predictor(model_dir), text, word)


def why(model_dir: str, words: list[str], word: int | None = None) -> None:
    with st.spinner(t("playground.explaining")):
        found = explanation(model_dir, " ".join(words), word)
    st.markdown(attributions_html(found.words, found.attributions), unsafe_allow_html=True)
    # A label is the user's data: shown as typed, not as Markdown.
    st.caption(t("playground.why_caption", target=plain_text(found.target), probability=f"{found.probability:.1%}"))


def classify(predictor, model_dir: str, text: str) -> None:
    prediction = predictor.predict([text])[0]
    st.metric(
        t("playground.prediction"),
        prediction.label,
        t("playground.sure", score=f"{prediction.score:.1%}"),
        delta_color="off",
        delta_arrow="off",
    )
    st.plotly_chart(charts.label_probabilities(prediction.probabilities), width="stretch")
    if st.toggle(t("playground.why"), help=t("playground.why_help")):
        why(model_dir, text.split())


def tag(predictor, model_dir: str, text: str) -> None:
    prediction = predictor.predict([text], split_punctuation=True)[0]
    st.markdown(entities_html(prediction.words, prediction.tags), unsafe_allow_html=True)
    if all(tag == "O" for tag in prediction.tags):
        st.caption(t("playground.no_entity"))
    if st.toggle(t("playground.why"), help=t("playground.why_help")):
        entity_words = [i for i, tag in enumerate(prediction.tags) if tag != "O"] or list(range(len(prediction.words)))
        word = st.selectbox(
            t("playground.explain_word"),
            entity_words,
            format_func=lambda i: f"{prediction.words[i]} ({prediction.tags[i]})",
        )
        why(model_dir, prediction.words, word)
    with st.expander(t("playground.tag_per_word")):
        st.dataframe(
            {
                t("data.column.word"): prediction.words,
                t("playground.tag"): prediction.tags,
                t("playground.score"): [round(s, 3) for s in prediction.tag_scores],
            },
            hide_index=True,
        )


with user_errors():
    finished = [
        run for run in store.list_runs() if run.status == "completed" and (store.output_dir(run) / "model").is_dir()
    ]
    if not finished:
        st.info(t("playground.no_model"))
    else:
        ids = [run.id for run in finished]
        names = {
            run.id: f"{run.name} · {task_name(run.task)} · {method_name(run.peft_method)} · {run.id}"
            for run in finished
        }
        wanted = st.query_params.get("run")
        run_id = st.selectbox(
            t("playground.finished_run"), ids, index=ids.index(wanted) if wanted in ids else 0, format_func=names.get
        )
        st.query_params["run"] = run_id
        model_dir = str(store.output_dir(next(run for run in finished if run.id == run_id)) / "model")
        with st.spinner(t("playground.loading")):
            predictor = load_predictor(model_dir)
            first_example = example(run_id)
        text = st.text_area(t(f"playground.text.{predictor.task}"), first_example, key=f"text-{run_id}", height=100)
        if text.strip() and predictor.task == "classification":
            classify(predictor, model_dir, text)
        elif text.strip():
            tag(predictor, model_dir, text)
        st.subheader(t("playground.mistakes"))
        if st.toggle(t("playground.show_them"), help=t("playground.show_them_help")):
            with st.spinner(t("playground.predicting")):
                wrong = mistakes(run_id, model_dir)
            st.caption(t("playground.wrong_count", count=f"{len(wrong):,}"))
            # Headers in the page's language; the long text last and wide, so the short columns stay in view.
            long_text = "sentence" if predictor.task == "ner" else "text"
            st.dataframe(
                wrong.rename(columns=lambda name: t(f"playground.column.{name.replace(' ', '_')}")),
                hide_index=True,
                width="stretch",
                column_config={t(f"playground.column.{long_text}"): st.column_config.TextColumn(width="large")},
            )
