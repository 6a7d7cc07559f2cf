"""Read user data files into plain Python lists, with the file and line of every example kept
for error messages.

Classification: CSV, TSV, JSON lines (or a JSON array of objects), Parquet; the user names the
text and label columns. NER: CoNLL column files (token first, tag last, a blank line between
sentences) and JSON lines with a list of words and a list of tags per line. Files are parsed as
data only (pandas / json): nothing in them is ever executed or unpickled.

Every file is bounded (lab.data.budget) before it is believed, a Parquet file from its metadata before
any row is read; parsed files are kept by content hash, so pages that rerun on every click parse once.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from lab.data import budget
from lab.data.budget import check_cells, check_file_size, check_rows, parsed_once
from lab.errors import DataError, one_line

CLASSIFICATION_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
JSON_SUFFIXES = (".jsonl", ".json")
NER_SUFFIXES = (".conll", ".txt", ".tsv", ".iob", ".bio", *JSON_SUFFIXES)  # read_ner_file reads any, these by name
# Every file type some task reads: what an upload may be.
UPLOAD_SUFFIXES = tuple(dict.fromkeys(CLASSIFICATION_SUFFIXES + NER_SUFFIXES))
_WHOLE_FLOAT = re.compile(r"^-?\d+\.0+$")


@dataclass
class RawExamples:
    """Examples of one split before labels become ids.

    `inputs` holds texts (classification) or word lists (NER); `labels` holds label strings or tag
    lists. `positions[i]` is where example i starts in `origin` (a row, a line or a record), and
    `unit` says which, so `where(i)` can point a user at it.
    """

    origin: str
    inputs: list[Any] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    # "row" (CSV rows count the header as row 1), "line", "record" (JSON array), or "conll":
    # one word per line, so word j of example i sits on line positions[i] + j.
    unit: str = "row"

    def where(self, index: int, word: Optional[int] = None) -> str:
        position = self.positions[index]
        if self.unit == "conll":
            return f"{self.origin}, line {position + (word or 0)}"
        suffix = f", word {word + 1}" if word is not None else ""
        return f"{self.origin}, {self.unit} {position}{suffix}"

    def add(self, inputs: Any, label: Any, position: int) -> None:
        self.inputs.append(inputs)
        self.labels.append(label)
        self.positions.append(position)


# ---- reading bytes -----------------------------------------------------------------------------
def _check_file(path: Path) -> None:
    try:
        exists, is_file = path.exists(), path.is_file()
        size = path.stat().st_size if is_file else 0
    except OSError as exc:  # a name too long for the file system, a folder we may not enter
        raise DataError(f"Data file {path} cannot be read: {exc.strerror or exc}.") from None
    if not exists:
        raise DataError(f"Data file {path} does not exist.", code="file_missing", path=path)
    if not is_file:
        raise DataError(f"Data file {path} is not a file.")
    if size == 0:
        raise DataError(f"Data file {path} is empty.", code="file_empty", path=path)
    check_file_size(path, size)


def _own_copy(raw: RawExamples) -> RawExamples:
    # Callers may rewrite a split's labels (IOB1 -> IOB2); the cached examples must not change with them.
    return dataclasses.replace(raw, inputs=list(raw.inputs), labels=list(raw.labels), positions=list(raw.positions))


def read_text(path: Path) -> str:
    """The file as text; DataError names the line of the first byte that is not UTF-8."""
    _check_file(path)
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(
            f"{path} is UTF-16 text (as Excel's 'Unicode text' saves it). Save it as UTF-8 (CSV UTF-8 in Excel)."
        )
    if b"\x00" in data[:8192]:
        raise DataError(
            f"{path} looks like a binary file (it holds NUL bytes), not text. Give a UTF-8 "
            "text file: CSV, TSV, JSON lines or CoNLL (or a .parquet file for tables)."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}, line {line}: bytes that are not UTF-8 ({data[exc.start : exc.start + 1]!r}). "
            "Save the file as UTF-8 text."
        ) from None
    text = text.removeprefix("\ufeff")  # a byte-order mark that spreadsheet tools add
    if not text.strip():
        raise DataError(f"Data file {path} is empty.", code="file_empty", path=path)
    return text


def _json_records(path: Path) -> tuple[list[tuple[int, dict]], str]:
    """(position, object) pairs from JSON lines, or from one JSON array; and the position unit."""
    text = read_text(path)
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}).") from None
        except RecursionError:
            raise DataError(f"{path}: the JSON is nested too deeply to be a list of records.") from None
        if not isinstance(items, list):
            items = [items]
        check_rows(path, len(items), "records")
        records = list(enumerate(items, start=1))
        unit = "record"
    else:
        records = []
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            check_rows(path, len(records) + 1, "lines")
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}, line {number}: not valid JSON ({exc.msg}). Each line must hold one JSON object."
                ) from None
            except RecursionError:
                raise DataError(
                    f"{path}, line {number}: the JSON is nested too deeply; each line must hold one flat JSON object."
                ) from None
        unit = "line"
    for position, record in records:
        if not isinstance(record, dict):
            raise DataError(f"{path}, {unit} {position}: expected a JSON object, got {type(record).__name__}.")
    return records, unit


def _missing_column(path: Path, name: str, kind: str, columns: list[str]) -> DataError:
    existing = ", ".join(map(repr, columns)) or "none"
    return DataError(
        f"{path} has no {kind} column {name!r}; its columns are: {existing}. Set data.{kind}_column to one of them.",
        code="missing_column",
        path=path,
        kind=kind,
        name=repr(name),
        columns=existing,
    )


# ---- classification ----------------------------------------------------------------------------
Table = tuple[list[str], list[dict[str, Any]], str, int]


def _table(path: Path) -> Table:
    """Column names, rows, position unit and the position of the first row, for a tabular file."""
    return parsed_once("table", path, (), lambda: _parse_table(path))


def _parse_table(path: Path) -> Table:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        import pandas as pd

        text = read_text(path)
        try:
            # One row past the cap is enough to know the file is over it.
            frame = pd.read_csv(
                io.StringIO(text),
                sep="\t" if suffix == ".tsv" else ",",
                dtype=str,
                keep_default_na=False,
                nrows=budget.MAX_ROWS + 1,
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(
                f"{path} is not a valid {suffix[1:].upper()} file: {one_line(exc)}. A text "
                "holding the separator or a line break must be in double quotes."
            ) from None
        check_rows(path, len(frame))
        check_cells(path, frame.size)
        return list(frame.columns), frame.to_dict("records"), "row", 2
    if suffix == ".parquet":
        return _parquet_table(path)
    records, unit = _json_records(path)
    columns = list(dict.fromkeys(key for _, record in records for key in record))
    check_cells(path, len(records) * len(columns))
    rows = [dict(record, __position__=position) for position, record in records]
    return columns, rows, unit, 0


def _parquet_table(path: Path) -> Table:
    """A Parquet file's rows, after its metadata says they fit: a few KB of Parquet can hold millions of rows."""
    import pyarrow.parquet as pq

    _check_file(path)
    try:
        parquet = pq.ParquetFile(path)
        metadata = parquet.metadata
        check_rows(path, metadata.num_rows)
        check_cells(path, metadata.num_rows * metadata.num_columns)
        expanded = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        check_file_size(path, expanded, "expands to")
        frame = parquet.read().to_pandas()
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} is not a readable Parquet file: {one_line(exc)}") from None
    return list(map(str, frame.columns)), frame.to_dict("records"), "row", 1


def _cell_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):  # missing or NaN
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a label column read as floats because of a gap: 1.0 -> "1"
    return str(value)


def _label_text(value: Any) -> str:
    """The label as text; "2.0" (a spreadsheet's float) is the same class as 2 and "2"."""
    text = _cell_text(value).strip()
    return text.split(".")[0] if _WHOLE_FLOAT.match(text) else text


def _is_nested(value: Any) -> bool:
    # JSON objects / lists, and Parquet list columns (numpy arrays): str() would turn them into odd labels.
    return isinstance(value, (dict, list, tuple, set)) or type(value).__name__ == "ndarray"


def read_classification_file(path: str | Path, text_column: str, label_column: str) -> RawExamples:
    """Texts and label strings from a CSV / TSV / JSON(L) / Parquet file."""
    path = Path(path)
    if path.suffix.lower() not in CLASSIFICATION_SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type {path.suffix or '(none)'}; use one of {', '.join(CLASSIFICATION_SUFFIXES)}."
        )
    return _own_copy(
        parsed_once(
            "classification",
            path,
            (text_column, label_column),
            lambda: _read_classification(path, text_column, label_column),
        )
    )


def _read_classification(path: Path, text_column: str, label_column: str) -> RawExamples:
    columns, rows, unit, first = _table(path)
    if len(columns) == 1:
        raise DataError(
            f"{path} has one column only ({columns[0]!r}); classification needs a second column with each text's label."
        )
    if text_column == label_column:
        raise DataError(
            f"{path}: the text and the label are both mapped to column {text_column!r}; "
            "choose the column that holds each text and the one that holds its class."
        )
    for name, kind in ((text_column, "text"), (label_column, "label")):
        if name not in columns:
            raise _missing_column(path, name, kind, columns)
    raw = RawExamples(origin=str(path), unit=unit)
    for index, row in enumerate(rows):
        position = row.get("__position__", index + first)
        for name, kind in ((text_column, "text"), (label_column, "label")):
            if _is_nested(row.get(name)):
                raise DataError(
                    f"{path}, {unit} {position}: the {kind} in column {name!r} is a "
                    f"{type(row.get(name)).__name__}, not a single value; give plain text or a number."
                )
        text, label = _cell_text(row.get(text_column)), _label_text(row.get(label_column))
        if not text.strip():
            raise DataError(f"{path}, {unit} {position}: the text in column {text_column!r} is blank.")
        if not label:
            raise DataError(f"{path}, {unit} {position}: the label in column {label_column!r} is blank.")
        raw.add(text, label, position)
    if not raw.inputs:
        raise DataError(f"{path} has a header but no rows of data.")
    return raw


# ---- NER ---------------------------------------------------------------------------------------
def read_conll(path: str | Path, origin: Optional[str] = None) -> RawExamples:
    """Sentences from a CoNLL column file: token first, tag last, blank line between sentences."""
    path = Path(path)
    raw = RawExamples(origin=origin or str(path), unit="conll")
    words: list[str] = []
    tags: list[str] = []
    expected: Optional[tuple[int, int]] = None  # (column count, line it was first seen on)
    start = words_read = 0
    # Split on "\n" only: str.splitlines would also break inside tokens at rare Unicode separators.
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if words:
                raw.add(words, tags, start)
            words, tags = [], []
            continue
        if expected is None:
            expected = (len(columns), number)
        if len(columns) != expected[0]:
            raise DataError(
                f"{path}, line {number}: {len(columns)} columns, but line {expected[1]} has "
                f"{expected[0]}. Every line needs the same columns (token first, tag last)."
            )
        if len(columns) < 2:
            raise DataError(
                f"{path}, line {number}: one column only; CoNLL lines need a token and a tag separated by whitespace."
            )
        if not words:
            start = number
            check_rows(path, len(raw.inputs) + 1, "sentences")
        words_read += 1
        check_cells(path, words_read, "words")
        words.append(columns[0])
        tags.append(columns[-1])
    if words:
        raw.add(words, tags, start)
    if not raw.inputs:
        raise DataError(f"{path} holds no sentences (only blank or -DOCSTART- lines).")
    return raw


def read_ner_jsonl(path: str | Path, tokens_column: str, tags_column: str) -> RawExamples:
    """Sentences from JSON lines holding a list of words and a list of tags of the same length."""
    path = Path(path)
    records, unit = _json_records(path)
    raw = RawExamples(origin=str(path), unit=unit)
    words_read = 0
    for position, record in records:
        for name, kind in ((tokens_column, "tokens"), (tags_column, "tags")):
            if name not in record:
                raise DataError(
                    f"{path}, {unit} {position}: no {kind} key {name!r}; this object has "
                    f"{', '.join(map(repr, record)) or 'no keys'}. Set data.{kind}_column."
                )
        words, tags = record[tokens_column], record[tags_column]
        if not _is_text_list(words) or not _is_text_list(tags):
            raise DataError(
                f"{path}, {unit} {position}: {tokens_column!r} and {tags_column!r} must be lists "
                "of strings (tags spelled like 'B-PER', not numbers)."
            )
        if len(words) != len(tags):
            raise DataError(f"{path}, {unit} {position}: {len(words)} words but {len(tags)} tags.")
        if not words:
            raise DataError(f"{path}, {unit} {position}: the sentence has no words.")
        words_read += len(words)
        check_cells(path, words_read, "words")
        raw.add(list(words), list(tags), position)
    if not raw.inputs:
        raise DataError(f"{path} holds no sentences.")
    return raw


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) and item.strip() for item in value)


def read_ner_file(path: str | Path, tokens_column: str, tags_column: str) -> RawExamples:
    """JSON lines for .jsonl / .json files, CoNLL columns for anything else (.conll, .txt, .tsv, .iob)."""
    path = Path(path)
    if path.suffix.lower() in JSON_SUFFIXES:
        parsed = parsed_once(
            "ner", path, (tokens_column, tags_column), lambda: read_ner_jsonl(path, tokens_column, tags_column)
        )
    else:
        parsed = parsed_once("conll", path, (), lambda: read_conll(path))
    return _own_copy(parsed)
