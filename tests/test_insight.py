"""Inside the training: the data map finds flipped labels (and untagged names), the validation vectors
move apart, AdaLoRA's ranks are recorded at each evaluation; all from the run's own passes."""

import numpy as np
import pytest
from conftest import write_keyword_csv

from lab.config import DataConfig, ModelConfig, PeftSettings, RunConfig, TrainConfig
from lab.events import ProjectionEvent, RankEvent
from lab.training.engine import train
from lab.views.data_map import hardest, load_data_map

FLIPPED = 10


class Recorder(list):
    def __call__(self, event):
        self.append(event)


@pytest.fixture(scope="module")
def keyword_run(tmp_path_factory):
    """MiniLM with LoRA, 3 epochs on texts that are positive when they hold KEYWORD, FLIPPED of them mislabelled."""
    folder = tmp_path_factory.mktemp("cartography")
    path = folder / "keyword.csv"
    flipped = write_keyword_csv(path, seed=1, numbered=True, flipped=FLIPPED)
    config = RunConfig(
        task="classification",
        data=DataConfig(dataset="", train_file=str(path)),
        model=ModelConfig(name_or_path="minilm"),
        peft=PeftSettings(method="lora"),
        train=TrainConfig(epochs=3, train_batch_size=8, max_length=32, eval_steps=8),
    )
    events = Recorder()
    train(config, output_dir=folder / "out", sink=events)
    return folder / "out", events, flipped


def assert_doubted(mislabelled):
    """The model never comes to believe a wrong label: each such example sits in the hard region (low belief
    all along) or the ambiguous one (learned for an epoch, then doubted again), never in the easy one. With
    the batch order of one seed, 7 of 9 were hard and 2 ambiguous in both tests below."""
    assert (mislabelled["confidence"] < 0.5).all(), mislabelled
    assert set(mislabelled["region"]) <= {"hard", "ambiguous"}, mislabelled
    assert (mislabelled["region"] == "hard").mean() > 0.5, mislabelled


def test_the_data_map_puts_the_flipped_labels_in_the_hard_region(keyword_run):
    output, _, flipped = keyword_run
    frame = load_data_map(output)
    assert frame.attrs["epochs"] == 3
    in_train = frame[frame["text"].isin(flipped)]
    assert len(in_train) >= FLIPPED // 2  # most of them were drawn into the training split
    assert_doubted(in_train)
    others = frame[~frame["text"].isin(flipped)]
    assert (others["region"] == "hard").mean() < 0.05
    # The table of the hardest examples leads with them.
    assert set(hardest(frame, len(in_train))["text"]) == set(in_train["text"])


def test_the_validation_vectors_move_apart_as_the_model_learns(keyword_run):
    _, events, _ = keyword_run
    frames = [event for event in events if isinstance(event, ProjectionEvent)]
    assert len(frames) >= 3 and len({len(frame.points) for frame in frames}) == 1

    def separation(frame: ProjectionEvent) -> float:
        points, labels = np.array(frame.points), np.array(frame.labels)
        centres = [points[labels == label].mean(0) for label in ("neg", "pos")]
        spread = np.mean([points[labels == label].std(0).mean() for label in ("neg", "pos")])
        return float(np.linalg.norm(centres[0] - centres[1]) / spread)

    # MiniLM already half tells the keyword apart before training; the fine-tuned head input pulls it further.
    assert separation(frames[-1]) > 1.25 * separation(frames[0]), [separation(frame) for frame in frames]


def test_adalora_ranks_are_recorded_at_each_evaluation(tiny_model_dir, sentiment_csv, tmp_path):
    config = RunConfig(
        task="classification",
        data=DataConfig(dataset="", train_file=str(sentiment_csv)),
        model=ModelConfig(name_or_path=tiny_model_dir),
        peft=PeftSettings(method="adalora", r=4, adalora_init_r=8),
        train=TrainConfig(learning_rate=3e-3, max_steps=40, train_batch_size=8, eval_steps=10, max_length=48),
    )
    events = Recorder()
    train(config, output_dir=tmp_path, sink=events)
    ranks = [event for event in events if isinstance(event, RankEvent)]
    assert [event.step for event in ranks][:4] == [10, 20, 30, 40]
    first, last = ranks[0].ranks, ranks[-1].ranks
    assert set(first) == set(last) and all(name.endswith(("query", "value")) for name in first)
    # The budget was cut from init_r = 8 and spread unevenly over the matrices.
    assert sum(last.values()) < sum(first.values()) and len(set(last.values())) > 1


def test_the_ner_data_map_surfaces_the_sentences_whose_names_were_left_untagged(tmp_path, ner_conll):
    """Per sentence: the gold tag's probability of its least believed word. A name tagged O (the commonest
    annotation slip) costs its sentence the model's belief: those sentences land in the hard region and lead
    the hardest table."""
    sentences = [block for block in ner_conll.read_text().split("\n\n") if block.strip() and "DOCSTART" not in block]
    slipped = set()
    for i in range(0, len(sentences), 12):  # every 12th sentence loses its entity tags
        words = [line.split("\t")[0] for line in sentences[i].splitlines()] + [f"n{i}"]  # unique: texts repeat
        if any(not line.endswith("\tO") for line in sentences[i].splitlines()):
            sentences[i] = "\n".join(f"{word}\tO" for word in words)
            slipped.add(" ".join(words))
    path = tmp_path / "slipped.conll"
    path.write_text("\n\n".join(sentences) + "\n")
    config = RunConfig(
        task="ner",
        data=DataConfig(dataset="", train_file=str(path)),
        model=ModelConfig(name_or_path="minilm"),
        peft=PeftSettings(method="lora"),
        train=TrainConfig(epochs=3, train_batch_size=8, max_length=32, eval_steps=0),
    )
    train(config, output_dir=tmp_path / "out")
    frame = load_data_map(tmp_path / "out")
    assert frame.attrs["epochs"] == 3 and len(frame) > 60
    in_train = frame[frame["text"].isin(slipped)]
    assert len(in_train) >= 4 and set(in_train["label"]) == {"O"}  # their gold holds no entity now
    assert_doubted(in_train)
    hardest_texts = set(hardest(frame, len(in_train))["text"])
    assert len(hardest_texts & slipped) >= 0.8 * len(in_train), frame.sort_values("confidence").head(12)
    # The sentences whose tags are right keep the model's belief.
    assert frame[~frame["text"].isin(slipped)]["confidence"].median() > in_train["confidence"].median() + 0.3
