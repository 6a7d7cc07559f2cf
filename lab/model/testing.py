"""A tiny BERT built from a config, for tests, benchmarks and demos that must not download anything.

`build_tiny_model` chooses a small lowercase WordPiece vocabulary from the given texts and saves a
randomly initialised 2-layer BERT next to it. The folder loads with `AutoTokenizer` and any
`AutoModelFor...` class, so the whole pipeline (tokenise, train, evaluate, predict) runs in seconds.
The vocabulary is deliberately smaller than the corpus' word count: rarer words split into several
word pieces, which the label-alignment tests need.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Every printable ASCII character is in the vocabulary, so unseen words split into pieces, not [UNK].
BASE_ALPHABET = list(string.ascii_lowercase + string.digits + string.punctuation)


def build_tiny_tokenizer(corpus_texts: Iterable[str], vocab_size: int = 300):
    """A lowercase WordPiece `BertTokenizerFast` over `corpus_texts`: the special tokens, every character
    alone and as a word's continuation, the corpus' most frequent words, then pieces of the others (ties in
    alphabetical order).

    The vocabulary is chosen here, not trained: tokenizers' WordPiece trainer breaks ties between equally
    frequent pieces differently in each process, so the same texts gave other tokens from run to run, and
    what a tiny model learned in a few steps with them."""
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast  # type: ignore[attr-defined]  # exported lazily

    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts = Counter(
        word for text in corpus_texts for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    )
    pieces = SPECIAL_TOKENS + BASE_ALPHABET + [f"##{character}" for character in BASE_ALPHABET]
    known = set(pieces)
    frequent = sorted((w for w, n in counts.items() if n >= 2 and w not in known), key=lambda w: (-counts[w], w))
    # Half the budget for whole words; the rest for the commonest 2- to 4-letter starts and continuations of
    # the words left out, so the rarer words split into a few pieces (as a trained vocabulary splits them).
    vocabulary = pieces + frequent[: max(0, vocab_size - len(pieces)) // 2]
    chosen = set(vocabulary)
    parts: Counter[str] = Counter()
    for word, count in counts.items():
        if word not in chosen:
            for size in (2, 3, 4):
                parts.update({word[:size]: count} if size < len(word) else {})
                parts.update({f"##{word[i : i + size]}": count for i in range(1, len(word) - size + 1)})
    extra = sorted((piece for piece in parts if piece not in chosen), key=lambda piece: (-parts[piece], piece))
    vocabulary += extra[: max(0, vocab_size - len(vocabulary))]
    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocabulary)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return BertTokenizerFast(
        tokenizer_object=tokenizer,
        do_lower_case=True,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def build_tiny_model(path: str | Path, corpus_texts: Iterable[str], vocab_size: int = 300, seed: int = 0) -> str:
    """Save a tiny random BERT (hidden 32, 2 layers) and its tokenizer into `path`; return the path."""
    import torch
    from transformers import BertConfig, BertModel

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(corpus_texts, vocab_size)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def fixture_texts(fixtures_dir: str | Path) -> list[str]:
    """The texts of the repository's test fixtures (sentiment CSV sentences and NER sentences)."""
    import csv

    fixtures_dir = Path(fixtures_dir)
    with open(fixtures_dir / "sentiment.csv", encoding="utf-8", newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    sentence: list[str] = []
    for line in (fixtures_dir / "ner.conll").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("-DOCSTART-"):
            sentence.append(line.split()[0])
        elif sentence:
            texts.append(" ".join(sentence))
            sentence = []
    if sentence:
        texts.append(" ".join(sentence))
    return texts
