"""lab.training.metrics against hand-computed numbers and against a Python port of conlleval.pl."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.errors import ConfigError
from lab.training.metrics import (
    classification_metrics,
    classification_report,
    confusion_matrix,
    entity_metrics,
    entity_report,
    format_report,
    primary_metric_name,
    report_to_records,
    token_confusion_matrix,
)

approx = pytest.approx


def row(report, label):
    """(precision, recall, f1, support) of one report row."""
    values = report.loc[label]
    return (values["precision"], values["recall"], values["f1"], values["support"])


# ---- classification ------------------------------------------------------------------------
LABELS = ["neg", "neu", "pos"]
#             idx: 0  1  2  3  4  5  6  7  8
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 0, 1, 1, 1, 2, 2, 0, 0]
# neg: predicted at 0,1,7,8 (4), right at 0,1 (2), 3 true -> P 2/4, R 2/3, F1 = 2*2/(2*2+2+1) = 4/7
# neu: predicted at 2,3,4 (3), right at 3,4 (2), 2 true -> P 2/3, R 1,   F1 = 4/(4+1+0) = 4/5
# pos: predicted at 5,6 (2),   right at 5,6 (2), 4 true -> P 1,   R 1/2, F1 = 4/(4+0+2) = 2/3
# accuracy = 6/9; macro P = (1/2+2/3+1)/3 = 13/18, macro R = (2/3+1+1/2)/3 = 13/18,
# macro F1 = (4/7+4/5+2/3)/3 = 214/315; weighted (supports 3,2,4):
# P = (3*1/2+2*2/3+4*1)/9 = 41/54, R = (3*2/3+2*1+4*1/2)/9 = 2/3, F1 = (3*4/7+2*4/5+4*2/3)/9 = 628/945


def test_classification_report_per_label_and_averages():
    report = classification_report(Y_TRUE, Y_PRED, LABELS)
    assert list(report.columns) == ["precision", "recall", "f1", "support"]
    assert list(report.index) == ["neg", "neu", "pos", "macro avg", "weighted avg"]
    assert row(report, "neg") == approx((2 / 4, 2 / 3, 4 / 7, 3))
    assert row(report, "neu") == approx((2 / 3, 1.0, 4 / 5, 2))
    assert row(report, "pos") == approx((1.0, 1 / 2, 2 / 3, 4))
    assert row(report, "macro avg") == approx((13 / 18, 13 / 18, 214 / 315, 9))
    assert row(report, "weighted avg") == approx((41 / 54, 2 / 3, 628 / 945, 9))
    assert report["support"].dtype.kind == "i"


def test_classification_metrics_match_report():
    metrics = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert metrics == approx(
        {
            "accuracy": 6 / 9,
            "macro_f1": 214 / 315,
            "weighted_f1": 628 / 945,
            "macro_precision": 13 / 18,
            "macro_recall": 13 / 18,
        }
    )
    assert all(type(value) is float for value in metrics.values())


def test_confusion_matrix_cells():
    # true neg (0,1,2) -> neg, neg, neu; true neu (3,4) -> neu, neu; true pos (5..8) -> pos, pos, neg, neg
    assert confusion_matrix(Y_TRUE, Y_PRED, LABELS) == {
        "labels": ["neg", "neu", "pos"],
        "matrix": [[2, 1, 0], [0, 2, 0], [2, 0, 2]],
    }


def test_string_labels_and_zero_support_label():
    labels = ["a", "b", "c", "d"]
    y_true = ["a", "a", "b"]
    y_pred = ["a", "c", "b"]
    # a: P 1/1, R 1/2, F1 2/3; b: 1, 1, 1; c: predicted once, never true -> 0, 0, 0, support 0;
    # d: never seen -> zeros. macro over 4 labels: P (1+1)/4, R (1/2+1)/4, F1 (2/3+1)/4.
    # weighted by supports 2,1,0,0: P (2+1)/3 = 1, R (1+1)/3, F1 (4/3+1)/3 = 7/9.
    report = classification_report(y_true, y_pred, labels)
    assert list(report.index[:4]) == labels
    assert row(report, "a") == approx((1.0, 0.5, 2 / 3, 2))
    assert row(report, "c") == approx((0.0, 0.0, 0.0, 0))
    assert row(report, "d") == approx((0.0, 0.0, 0.0, 0))
    assert row(report, "macro avg") == approx((0.5, 1.5 / 4, (5 / 3) / 4, 3))
    assert row(report, "weighted avg") == approx((1.0, 2 / 3, 7 / 9, 3))
    # Names and ids give the same report.
    ids = classification_report([0, 0, 1], [0, 2, 1], labels)
    assert ids.equals(report)
    assert confusion_matrix(y_true, y_pred, labels)["matrix"] == [
        [1, 0, 1, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ]


@pytest.mark.parametrize(
    "y_true, y_pred, message",
    [
        (["a", "zebra"], ["a", "a"], "zebra"),
        ([0, 7], [0, 0], "label id 7"),
        ([0, 1], [0], "2 examples"),
        ([], [], "no examples"),
    ],
)
def test_classification_rejects_bad_input(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        classification_report(y_true, y_pred, ["a", "b"])


# ---- NER: hand-computed boundary cases ------------------------------------------------------
def test_adjacent_entities_of_same_type_are_two():
    true = [["B-PER", "I-PER", "B-PER"]]  # PER[0:1], PER[2:2]: two entities
    assert row(entity_report(true, true), "PER") == approx((1.0, 1.0, 1.0, 2))
    merged = [["B-PER", "I-PER", "I-PER"]]  # one PER[0:2], matching neither
    assert row(entity_report(true, merged), "PER") == approx((0.0, 0.0, 0.0, 2))


def test_entity_is_cut_at_sentence_end():
    # Sentence 2 opens with I-LOC: a new entity, not the continuation of sentence 1's LOC.
    true = [["O", "B-LOC"], ["I-LOC", "O"]]
    pred = [["O", "B-LOC"], ["B-LOC", "O"]]
    assert row(entity_report(true, pred), "LOC") == approx((1.0, 1.0, 1.0, 2))


def test_i_tag_after_o_starts_an_entity():
    true = [["O", "I-PER", "I-PER", "O"]]  # conlleval reads PER[1:2]
    pred = [["O", "B-PER", "I-PER", "O"]]
    assert row(entity_report(true, pred), "PER") == approx((1.0, 1.0, 1.0, 1))


def test_type_mismatch_on_same_span_is_wrong():
    report = entity_report([["B-PER", "I-PER"]], [["B-ORG", "I-ORG"]])
    assert list(report.index) == ["ORG", "PER", "micro avg", "macro avg"]
    assert row(report, "PER") == approx((0.0, 0.0, 0.0, 1))
    assert row(report, "ORG") == approx((0.0, 0.0, 0.0, 0))
    assert row(report, "micro avg") == approx((0.0, 0.0, 0.0, 1))


def test_partial_overlap_is_wrong():
    report = entity_report([["B-LOC", "I-LOC", "I-LOC", "O"]], [["B-LOC", "I-LOC", "O", "O"]])
    assert row(report, "LOC") == approx((0.0, 0.0, 0.0, 1))


def test_o_only_sentences():
    all_o = [["O", "O"], ["O"]]
    report = entity_report(all_o, all_o)
    assert list(report.index) == ["micro avg", "macro avg"]
    assert row(report, "micro avg") == approx((0.0, 0.0, 0.0, 0))
    assert entity_metrics(all_o, all_o) == approx(
        {"precision": 0.0, "recall": 0.0, "f1": 0.0, "macro_f1": 0.0, "token_accuracy": 1.0}
    )
    # O-only sentences around a found entity change nothing.
    assert row(entity_report([["O", "O"], ["B-PER"]], [["O", "O"], ["B-PER"]]), "micro avg") == approx(
        (1.0, 1.0, 1.0, 1)
    )


def test_prediction_only_type_and_averages():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC"], ["B-MISC", "O"]]
    # true: PER, LOC, ORG; predicted: PER, LOC, MISC; 2 right.
    # micro: P 2/3, R 2/3, F1 2/3. macro over LOC, MISC, ORG, PER: (1 + 0 + 0 + 1) / 4 = 1/2.
    report = entity_report(true, pred)
    assert list(report.index) == ["LOC", "MISC", "ORG", "PER", "micro avg", "macro avg"]
    assert row(report, "MISC") == approx((0.0, 0.0, 0.0, 0))
    assert row(report, "ORG") == approx((0.0, 0.0, 0.0, 1))
    assert row(report, "micro avg") == approx((2 / 3, 2 / 3, 2 / 3, 3))
    assert row(report, "macro avg") == approx((0.5, 0.5, 0.5, 3))
    # 6 words, all tags right except B-ORG/B-MISC: token accuracy 5/6 while entity F1 is 2/3.
    assert entity_metrics(true, pred) == approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "macro_f1": 0.5, "token_accuracy": 5 / 6}
    )


def test_strict_scheme_rejects_malformed_chunks():
    true = [["S-PER", "B-LOC", "E-LOC"]]
    pred = [["S-PER", "B-LOC", "I-LOC"]]  # LOC never closed with E-
    # conlleval mode reads B-LOC I-LOC as LOC[1:2]: both right.
    assert row(entity_report(true, pred), "micro avg") == approx((1.0, 1.0, 1.0, 2))
    # BIOES strict: only PER is an entity in pred. P 1/1, R 1/2, F1 2/3.
    strict = entity_report(true, pred, scheme="BIOES")
    assert row(strict, "micro avg") == approx((1.0, 0.5, 2 / 3, 2))
    assert row(strict, "LOC") == approx((0.0, 0.0, 0.0, 1))
    # IOB2 strict: I- after O is no entity at all.
    assert row(entity_report([["O", "I-PER"]], [["O", "I-PER"]], scheme="IOB2"), "micro avg")[3] == 0
    with pytest.raises(ConfigError, match="BIOS"):
        entity_report(true, pred, scheme="BIOS")


def test_entity_report_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="Sentence 0"):
        entity_report([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="1 sentences"):
        entity_report([["O"]], [["O"], ["O"]])


def test_token_confusion_matrix_flattens_sentences():
    labels = ["O", "B-PER", "I-PER"]
    true = [["B-PER", "I-PER"], ["O", "B-PER"]]
    pred = [["B-PER", "O"], ["O", "I-PER"]]
    # O->O 1; B-PER->B-PER 1, B-PER->I-PER 1; I-PER->O 1
    assert token_confusion_matrix(true, pred, labels) == {"labels": labels, "matrix": [[1, 0, 0], [0, 1, 1], [1, 0, 0]]}


# ---- conlleval.pl parity ----------------------------------------------------------------------
# A line-for-line port of the chunk counting in conlleval.pl (CoNLL-2000, version 2004-01-26):
# endOfChunk, startOfChunk and the main loop's inCorrect bookkeeping. Sentence breaks are fed
# as the boundary line ("-X-", "O", "O"), as the script does for an empty line.
# (prevTag, tag) pairs for which the script's endOfChunk / startOfChunk set their flag.
_CHUNK_ENDS = {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O"), ("E", "E"), ("E", "I"), ("E", "O")}
_CHUNK_STARTS = {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I"), ("E", "E"), ("E", "I"), ("O", "E")}


def _end_of_chunk(prev_tag, tag, prev_type, type_):
    return (
        (prev_tag, tag) in _CHUNK_ENDS
        or (prev_tag != "O" and prev_tag != "." and prev_type != type_)
        or prev_tag in ("[", "]")
    )  # "corrected 1998-12-22: these chunks are assumed to have length 1"


def _start_of_chunk(prev_tag, tag, prev_type, type_):
    return (prev_tag, tag) in _CHUNK_STARTS or (tag != "O" and tag != "." and prev_type != type_) or tag in ("[", "]")


def _split(tag):
    match = re.match(r"^([^-]*)-(.*)$", tag)  # the script's /^([^-]*)-(.*)$/
    return (match.group(1), match.group(2)) if match else (tag, "")


def conlleval(true_sents, pred_sents):
    """(correct_chunk, found_correct, found_guessed) counters per type, as conlleval.pl counts them."""
    correct_chunk, found_correct, found_guessed = Counter(), Counter(), Counter()
    in_correct = False
    last_correct, last_correct_type, last_guessed, last_guessed_type = "O", "", "O", ""
    lines = []
    for true_sent, pred_sent in zip(true_sents, pred_sents):
        lines += list(zip(true_sent, pred_sent)) + [None]  # None: the empty line between sentences
    for line in lines:
        if line is None:  # boundary: features = ("-X-", "O", "O") and guessed forced to "O"
            (correct, correct_type), (guessed, guessed_type) = ("O", ""), ("O", "")
        else:
            (correct, correct_type), (guessed, guessed_type) = _split(line[0]), _split(line[1])
        correct_ended = _end_of_chunk(last_correct, correct, last_correct_type, correct_type)
        guessed_ended = _end_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
        if in_correct:
            if correct_ended and guessed_ended and last_guessed_type == last_correct_type:
                in_correct = False
                correct_chunk[last_correct_type] += 1
            elif correct_ended != guessed_ended or guessed_type != correct_type:
                in_correct = False
        correct_started = _start_of_chunk(last_correct, correct, last_correct_type, correct_type)
        guessed_started = _start_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
        if correct_started and guessed_started and guessed_type == correct_type:
            in_correct = True
        if correct_started:
            found_correct[correct_type] += 1
        if guessed_started:
            found_guessed[guessed_type] += 1
        last_correct, last_correct_type, last_guessed, last_guessed_type = (
            correct,
            correct_type,
            guessed,
            guessed_type,
        )
    if in_correct:
        correct_chunk[last_correct_type] += 1
    return correct_chunk, found_correct, found_guessed


def _prf(correct, true_count, guessed_count):
    precision = correct / guessed_count if guessed_count else 0.0
    recall = correct / true_count if true_count else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def assert_matches_conlleval(true_sents, pred_sents):
    correct, found_correct, found_guessed = conlleval(true_sents, pred_sents)
    report = entity_report(true_sents, pred_sents)
    types = sorted(set(found_correct) | set(found_guessed))
    assert list(report.index) == types + ["micro avg", "macro avg"], (true_sents, pred_sents)
    for type_ in types:
        expected = (*_prf(correct[type_], found_correct[type_], found_guessed[type_]), found_correct[type_])
        assert row(report, type_) == approx(expected, abs=1e-12), (type_, true_sents, pred_sents)
    overall = sum(correct.values()), sum(found_correct.values()), sum(found_guessed.values())
    expected = (*_prf(*overall), overall[1])
    assert row(report, "micro avg") == approx(expected, abs=1e-12), (true_sents, pred_sents)


TRICKY = [
    ([["B-PER", "I-PER", "B-PER"]], [["B-PER", "I-PER", "I-PER"]]),
    ([["O", "I-PER", "I-PER"]], [["O", "B-PER", "I-PER"]]),
    ([["I-PER", "B-PER"]], [["I-PER", "I-PER"]]),
    ([["B-PER", "I-LOC", "I-LOC"]], [["B-PER", "B-LOC", "I-LOC"]]),
    ([["B-LOC", "I-PER", "O"]], [["B-PER", "I-PER", "O"]]),
    ([["O", "B-LOC"], ["I-LOC", "O"]], [["O", "B-LOC"], ["B-LOC", "O"]]),
    ([["B-LOC", "I-LOC"], ["I-LOC"]], [["B-LOC", "I-LOC"], ["I-LOC"]]),
    ([["B-PER", "I-PER"]], [["B-ORG", "I-ORG"]]),
    ([["B-LOC", "I-LOC", "I-LOC", "O"]], [["O", "I-LOC", "I-LOC", "O"]]),
    ([["O", "O"], ["O"]], [["B-MISC", "O"], ["I-MISC"]]),
    ([["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]], [["B-PER", "I-PER", "O", "B-LOC"], ["B-MISC", "O"]]),
    ([["I-ORG", "I-PER", "I-ORG", "B-ORG", "I-ORG"]], [["B-ORG", "B-PER", "I-ORG", "B-ORG", "I-PER"]]),
]


@pytest.mark.parametrize("true_sents, pred_sents", TRICKY)
def test_matches_conlleval_on_tricky_cases(true_sents, pred_sents):
    assert_matches_conlleval(true_sents, pred_sents)


BIO_TAGS = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def _random_case(rng):
    """1-4 sentences of random B/I/O tags (malformed ones included); predictions copy most true tags."""
    true_sents, pred_sents = [], []
    for _ in range(rng.randint(1, 4)):
        true_sent = [rng.choice(BIO_TAGS) for _ in range(rng.randint(1, 10))]
        true_sents.append(true_sent)
        pred_sents.append([tag if rng.random() < 0.6 else rng.choice(BIO_TAGS) for tag in true_sent])
    return true_sents, pred_sents


def test_matches_conlleval_on_random_sequences():
    rng = random.Random(13)
    for _ in range(300):
        assert_matches_conlleval(*_random_case(rng))
    # And once over one large corpus, where many counts add up.
    corpus = [_random_case(rng) for _ in range(200)]
    assert_matches_conlleval([s for t, _ in corpus for s in t], [s for _, p in corpus for s in p])


@st.composite
def tagged_sentences(draw):
    lengths = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    tag = st.sampled_from(BIO_TAGS)
    true_sents = [draw(st.lists(tag, min_size=n, max_size=n)) for n in lengths]
    pred_sents = [draw(st.lists(tag, min_size=n, max_size=n)) for n in lengths]
    return true_sents, pred_sents


@settings(max_examples=100, deadline=None)
@given(tagged_sentences())
def test_matches_conlleval_property(case):
    assert_matches_conlleval(*case)


# ---- storage and display shapes -------------------------------------------------------------------
def test_report_to_records():
    records = report_to_records(classification_report(Y_TRUE, Y_PRED, LABELS))
    assert [r["label"] for r in records] == ["neg", "neu", "pos", "macro avg", "weighted avg"]
    assert records[0] == {
        "label": "neg",
        "precision": 0.5,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(4 / 7),
        "support": 3,
    }
    assert all(type(r["support"]) is int and type(r["f1"]) is float for r in records)
    entity_records = report_to_records(entity_report([["B-PER", "O"]], [["B-PER", "B-LOC"]]))
    assert [r["label"] for r in entity_records] == ["LOC", "PER", "micro avg", "macro avg"]
    assert entity_records[2] == {
        "label": "micro avg",
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
    }


def test_format_report_is_a_fixed_width_table():
    text = format_report(classification_report(Y_TRUE, Y_PRED, LABELS))
    lines = text.rstrip("\n").split("\n")
    assert lines[0].split() == ["precision", "recall", "f1", "support"]
    assert lines[1] == "" and lines[5] == ""  # blank lines under the header and before the averages
    assert lines[2].split() == ["neg", "0.5000", "0.6667", "0.5714", "3"]
    assert lines[7].split() == ["weighted", "avg", "0.7593", "0.6667", "0.6646", "9"]
    assert len({len(line) for line in lines if line}) == 1  # every row has the same width


def test_primary_metric_name_is_a_key_of_the_metrics():
    assert primary_metric_name("classification") == "accuracy"
    assert primary_metric_name("ner") == "f1"
    assert primary_metric_name("classification") in classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert primary_metric_name("ner") in entity_metrics([["B-PER"]], [["B-PER"]])
    with pytest.raises(ConfigError, match="summarization"):
        primary_metric_name("summarization")


# ---- many labels -----------------------------------------------------------------------------
def test_a_confusion_matrix_of_2000_labels_is_stored_as_its_top_confusions():
    """2,000 labels: the evaluation event and report.json carry the largest confusions and per-label totals,
    not four million cells (12 MB per evaluation before)."""
    import json

    import numpy as np

    from lab.events import EvalEvent
    from lab.training.metrics import MAX_MATRIX_LABELS, TOP_CONFUSIONS
    from lab.training.scoring import EvaluationScorer

    labels = [f"class_{i}" for i in range(2000)]
    generator = np.random.default_rng(0)
    y_true = generator.integers(0, 2000, 20_000)
    y_pred = np.where(generator.random(20_000) < 0.6, y_true, generator.integers(0, 2000, 20_000))
    y_pred[:300] = 7  # one confusion stands out: 300 examples of various labels predicted as class_7
    y_true[:300] = 3

    class Prediction:
        predictions, label_ids = y_pred, y_true

    scorer = EvaluationScorer("classification", labels)
    scorer(Prediction())
    confusion = scorer.last_confusion
    assert "matrix" not in confusion and len(confusion["top"]) == TOP_CONFUSIONS
    assert confusion["top"][0] == {"true": "class_3", "predicted": "class_7", "count": 300}
    counts = [cell["count"] for cell in confusion["top"]]
    assert counts == sorted(counts, reverse=True) and all(c["true"] != c["predicted"] for c in confusion["top"])
    assert confusion["support"] == np.bincount(y_true, minlength=2000).tolist()
    assert confusion["predicted"] == np.bincount(y_pred, minlength=2000).tolist()
    assert sum(confusion["correct"]) == int((y_true == y_pred).sum())
    assert confusion["errors"] == int((y_true != y_pred).sum())
    event = EvalEvent(step=1, metrics=scorer.last_metrics, per_label=scorer.last_per_label, confusion=confusion)
    assert len(json.dumps(event.to_dict())) < 400_000
    assert len(json.dumps(confusion, indent=2)) < 200_000  # report.json's share
    small = confusion_matrix(Y_TRUE, Y_PRED, LABELS)
    assert set(small) == {"labels", "matrix"} and MAX_MATRIX_LABELS >= 50  # few labels: the whole matrix, as before
