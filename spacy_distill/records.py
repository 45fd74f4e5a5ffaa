"""Input records: texts with optional gold labels and ids, read from JSONL or CSV.

JSONL: one object per line, `{"text": ..., "label": "spam"}` (one label) or
`{"text": ..., "labels": ["a", "b"]}` (multi-label), optional `"id"`.
CSV: a header row with `text` and optional `label`, `labels` (separated by `|`) and `id`.
Augmented texts (written by `spacy-distill augment`) also carry `"parent"` (the seed's id),
`"method"` (the augmenter's registered name) and `"params"` (an object; a JSON string in CSV),
which `annotate` copies into each target's provenance.
Malformed records come back as `RecordError`s with the file and line, never dropped silently.
"""
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from .errors import RecordError

CSV_LABEL_SEPARATOR = "|"


@dataclass
class Record:
    """One input text.

    text (str): the text.
    labels (Optional[Tuple[str, ...]]): gold labels, or None when unlabelled.
    multi_label (bool): whether the gold came as a `labels` list.
    id (Optional[str]): the record's id, if the input gave one.
    source (str): the input file.
    line (int): the 1-based line the record starts on.
    parent (Optional[str]): for an augmented text, the key of the record it was made from.
    method (Optional[str]): for an augmented text, the augmenter that made it.
    params (Optional[Dict[str, Any]]): for an augmented text, the augmenter's parameters.
    """

    text: str
    labels: Optional[Tuple[str, ...]]
    multi_label: bool
    id: Optional[str]
    source: str
    line: int
    parent: Optional[str] = None
    method: Optional[str] = None
    params: Optional[Dict[str, Any]] = None

    @property
    def key(self) -> str:
        """The record's id, or "<file stem>:<line>" when it has none (see `record_key`)."""
        return record_key(self.id, self.source, self.line)


def record_key(record_id: Optional[str], source: Optional[str], line: Optional[int]) -> str:
    """How augmented texts name their parent and the leakage guard names records: the id when
    there is one (ids are meant to be unique across a dataset's files), else the file's stem and
    the line ("train:12"), which stays the same wherever the file is moved."""
    if record_id is not None:
        return str(record_id)
    return f"{Path(source).stem if source else '?'}:{line}"


def read_records(
    path: Union[str, Path], *, text_field: str = "text", id_field: str = "id"
) -> Iterator[Union[Record, RecordError]]:
    """Read records from a JSONL or CSV file (by extension; anything but .csv/.tsv is JSONL).

    path (Union[str, Path]): the input file.
    text_field (str): the field holding the text.
    id_field (str): the field holding the record id.
    YIELDS (Union[Record, RecordError]): a record, or the error of a malformed line.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: input file not found")
    if path.suffix.lower() in (".csv", ".tsv"):
        yield from _read_csv(path, text_field, id_field)
    else:
        yield from _read_jsonl(path, text_field, id_field)


def _read_jsonl(path: Path, text_field: str, id_field: str) -> Iterator[Union[Record, RecordError]]:
    with path.open("r", encoding="utf8") as file_:
        for line_number, line in enumerate(file_, start=1):
            if not line.strip():
                continue  # blank lines hold no record
            try:
                # Without its line break: a line cut short is reported at its own end, not at
                # "column 1" of a next line.
                data = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as err:
                yield RecordError(f"{path}:{line_number}: invalid JSON ({err.msg} at column {err.colno})")
                continue
            if not isinstance(data, dict):
                yield RecordError(f"{path}:{line_number}: expected a JSON object, got {type(data).__name__}")
                continue
            yield _make_record(data, path, line_number, text_field, id_field, from_csv=False)


def _read_csv(path: Path, text_field: str, id_field: str) -> Iterator[Union[Record, RecordError]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open("r", encoding="utf8", newline="") as file_:
        reader = csv.DictReader(file_, delimiter=delimiter)
        if reader.fieldnames is None or text_field not in reader.fieldnames:
            raise RecordError(
                f"{path}:1: the header has no '{text_field}' column (columns: {reader.fieldnames})"
            )
        start_line = 2
        for row in reader:
            line_number, start_line = start_line, reader.line_num + 1
            if None in row:
                yield RecordError(f"{path}:{line_number}: more fields than the header has columns")
                continue
            yield _make_record(row, path, line_number, text_field, id_field, from_csv=True)


def _make_record(
    data: dict, path: Path, line: int, text_field: str, id_field: str, from_csv: bool
) -> Union[Record, RecordError]:
    where = f"{path}:{line}"
    text = data.get(text_field)
    if not isinstance(text, str):
        return RecordError(f"{where}: field '{text_field}': expected a string, got {text!r}")
    if not text.strip():
        return RecordError(f"{where}: field '{text_field}': empty text")
    label = data.get("label")
    labels = data.get("labels")
    if from_csv:
        label = label or None
        labels = [part.strip() for part in labels.split(CSV_LABEL_SEPARATOR)] if labels else None
    if label is not None and labels is not None:
        return RecordError(f"{where}: give either 'label' or 'labels', not both")
    gold: Optional[Tuple[str, ...]] = None
    if label is not None:
        if not isinstance(label, str) or not label:
            return RecordError(f"{where}: field 'label': expected a non-empty string, got {label!r}")
        gold = (label,)
    elif labels is not None:
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            return RecordError(f"{where}: field 'labels': expected a list of label names, got {labels!r}")
        gold = tuple(dict.fromkeys(labels))
    record_id = data.get(id_field)
    if record_id is not None and not isinstance(record_id, (str, int)):
        return RecordError(f"{where}: field '{id_field}': expected a string or integer, got {record_id!r}")
    parent, method, params = data.get("parent"), data.get("method"), data.get("params")
    if from_csv:
        parent, method = parent or None, method or None
        if params:
            try:
                params = json.loads(params)
            except json.JSONDecodeError as err:
                return RecordError(f"{where}: field 'params': not a JSON object ({err.msg})")
        else:
            params = None
    if parent is not None and not isinstance(parent, (str, int)):
        return RecordError(f"{where}: field 'parent': expected a string or integer, got {parent!r}")
    if method is not None and not isinstance(method, str):
        return RecordError(f"{where}: field 'method': expected a string, got {method!r}")
    if params is not None and not isinstance(params, dict):
        return RecordError(f"{where}: field 'params': expected an object, got {params!r}")
    return Record(
        text=text,
        labels=gold,
        multi_label=labels is not None,
        id=None if record_id in (None, "") else str(record_id),
        source=str(path),
        line=line,
        parent=None if parent in (None, "") else str(parent),
        method=method,
        params=params,
    )


def split_errors(
    items: Iterator[Union[Record, RecordError]],
) -> Tuple[List[Record], List[RecordError]]:
    """Separate records from errors, keeping the order of each."""
    records: List[Record] = []
    errors: List[RecordError] = []
    for item in items:
        (errors if isinstance(item, RecordError) else records).append(item)  # type: ignore[arg-type]
    return records, errors


def label_set(paths) -> Tuple[Tuple[str, ...], bool]:
    """The labels the records of these files use (sorted) and whether they are exclusive (no
    record gives a `labels` list): one label set for every split of a dataset, so that a class
    that dev or test happens to lack keeps its column. Malformed records are left out here (the
    conversion itself reports them)."""
    labels, multi = set(), False
    for path in paths:
        for item in read_records(path):
            if isinstance(item, Record):
                labels.update(item.labels or ())
                multi = multi or item.multi_label
    return tuple(sorted(labels)), not multi

