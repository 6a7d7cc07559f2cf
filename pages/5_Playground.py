"""Playground: try a finished run's model on your own text, and see the test examples it gets wrong.

Classification shows the label probabilities; NER shows the text with entities highlighted by type.
"""
import streamlit as st

from lab.views.playground import entities_html, find_test_mistakes
from ui import charts
from ui.common import get_store, page_setup, user_errors

EXAMPLES = {"classification": "A wonderful, moving film, even if the ending drags a little.",
            "ner": "Barack Obama flew from Paris to New York with three Google engineers."}
page_setup("Playground")
st.title("Playground")
store = get_store()


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def load_predictor(model_dir: str):
    from lab.training.predict import Predictor

    return Predictor(model_dir)


@st.cache_data(show_spinner="Predicting the test split…", max_entries=4)
def mistakes(run_id: str, model_dir: str):
    return find_test_mistakes(store.load_config(run_id), load_predictor(model_dir))


def classify(predictor, text: str) -> None:
    prediction = predictor.predict([text])[0]
    st.metric("Prediction", prediction.label, f"{prediction.score:.1%} sure", delta_color="off", delta_arrow="off")
    st.plotly_chart(charts.label_probabilities(prediction.probabilities), width="stretch")


def tag(predictor, text: str) -> None:
    prediction = predictor.predict([text], split_punctuation=True)[0]
    st.markdown(entities_html(prediction.words, prediction.tags), unsafe_allow_html=True)
    if all(tag == "O" for tag in prediction.tags):
        st.caption("No entity found.")
    with st.expander("Tag per word"):
        st.dataframe({"word": prediction.words, "tag": prediction.tags,
                      "score": [round(s, 3) for s in prediction.tag_scores]}, hide_index=True)


with user_errors():
    finished = [run for run in store.list_runs()
                if run.status == "completed" and (store.output_dir(run) / "model").is_dir()]
    if not finished:
        st.info("No finished run with a saved model yet. Start one from the Home page and come back when it completes.")
    else:
        ids = [run.id for run in finished]
        names = {run.id: f"{run.name} · {run.task} · {run.peft_method} · {run.id}" for run in finished}
        wanted = st.query_params.get("run")
        run_id = st.selectbox("Finished run", ids, index=ids.index(wanted) if wanted in ids else 0,
                              format_func=names.get)
        st.query_params["run"] = run_id
        model_dir = str(store.output_dir(next(run for run in finished if run.id == run_id)) / "model")
        predictor = load_predictor(model_dir)
        hint = "Text" if predictor.task == "classification" else "Text (punctuation is split from words, as in the training data)"
        text = st.text_area(hint, EXAMPLES[predictor.task], key=f"text-{predictor.task}", height=100)
        if text.strip() and predictor.task == "classification":
            classify(predictor, text)
        elif text.strip():
            tag(predictor, text)
        st.subheader("Test examples it gets wrong")
        if st.toggle("Show them", help="Predicts the run's test split once (cached); can take a few seconds."):
            wrong = mistakes(run_id, model_dir)
            st.caption(f"{len(wrong):,} wrong on the run's test split (the same seeded split it was scored on).")
            st.dataframe(wrong, hide_index=True, width="stretch")
