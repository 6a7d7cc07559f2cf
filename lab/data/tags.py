"""NER tagging schemes: checking tags, detecting the scheme, converting IOB1 to IOB2.

A tag is "O" or PREFIX-TYPE. IOB1 and IOB2 use the prefixes B and I; BIOES adds E (end) and S
(single). IOB2 starts every entity with B-; IOB1 starts with I- and uses B- only between two
adjacent entities of the same type. Training and evaluation run on IOB2 or BIOES: IOB1 input is
converted to IOB2 (the same entities, spelled the IOB2 way); BIOES stays BIOES, because converting
it would lose nothing but seqeval can score it as it is (`seqeval` scheme IOBES).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from lab.errors import DataError

SCHEME_PREFIXES = {"IOB1": ("B", "I"), "IOB2": ("B", "I"), "BIOES": ("B", "I", "E", "S")}

# Says where a tag came from (file and line) for error messages: where(sentence_index, word_index).
Locator = Callable[[int, int], str]


def split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER", ("O", "") for "O"; the type may itself contain dashes (B-geo-loc)."""
    if tag == "O":
        return "O", ""
    prefix, _, entity_type = tag.partition("-")
    return prefix, entity_type


def check_tags(sentences: Sequence[Sequence[str]], scheme: str, where: Locator) -> None:
    """Raise DataError at the first tag that the scheme does not allow."""
    allowed = SCHEME_PREFIXES[scheme]
    for i, tags in enumerate(sentences):
        for j, tag in enumerate(tags):
            prefix, entity_type = split_tag(tag)
            if tag == "O" or (prefix in allowed and entity_type):
                continue
            raise DataError(
                f"{where(i, j)}: tag {tag!r} is not valid in the {scheme} scheme; tags are 'O' or "
                f"PREFIX-TYPE with PREFIX one of {', '.join(allowed)} (e.g. {allowed[0]}-PER)."
            )


def _starts_with_inside(tags: Sequence[str]) -> bool:
    """True when an entity opens with I- (after O, at the start, or after another type): IOB1 style."""
    previous = "O"
    for tag in tags:
        prefix, entity_type = split_tag(tag)
        if prefix == "I" and split_tag(previous)[1] != entity_type:
            return True
        previous = tag
    return False


def detect_scheme(sentences: Iterable[Sequence[str]]) -> str:
    """BIOES if any E- or S- tag appears; IOB1 if an entity opens with I-; else IOB2."""
    sentences = list(sentences)
    prefixes = {split_tag(tag)[0] for tags in sentences for tag in tags}
    if prefixes & {"E", "S"}:
        return "BIOES"
    if any(_starts_with_inside(tags) for tags in sentences):
        return "IOB1"
    return "IOB2"


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """Rewrite an IOB1 sentence as IOB2: an I- that opens an entity becomes B-."""
    converted: list[str] = []
    previous = "O"
    for tag in tags:
        prefix, entity_type = split_tag(tag)
        if prefix == "I" and split_tag(previous)[1] != entity_type:
            tag = f"B-{entity_type}"
        converted.append(tag)
        previous = tag
    return converted


def ner_label_names(sentences: Iterable[Sequence[str]]) -> list[str]:
    """ "O" first, then the other tags sorted by entity type, then prefix (B-LOC, I-LOC, B-PER, ...)."""
    seen = {tag for tags in sentences for tag in tags} - {"O"}
    ordered = sorted(seen, key=lambda tag: (split_tag(tag)[1], split_tag(tag)[0]))
    return ["O", *ordered]
