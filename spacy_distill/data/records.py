"""Input records: texts with optional gold labels and ids, read from JSONL or CSV.

JSONL: one object per line, `{"text": ..., "label": "spam"}` (one label) or
`{"text": ..., "labels": ["a", "b"]}` (multi-label), optional `"id"`.
CSV: a header row with `text` and optional `label`, `labels` (separated by `|`) and `id`.
Augmented texts (written by `spacy-distill augment`) also carry `"parent"` (the seed's id),
`"method"` (the augmenter's registered name) and `"params"` (an object; a JSON string in CSV),
which `annotate` copies into each target's provenance.
Malformed records come back as `RecordError`s with the file and line, never dropped silently:
a line that is not UTF-8, text with a lone surrogate (valid JSON, "\\ud800", but no character:
it cannot be encoded, tokenized or cached), text longer than spaCy makes into a doc, and a
record whose id an earlier record of the same file has. Files are UTF-8, with or without a
byte-order mark.
"""

import codecs
import csv
import hashlib
import json
import re
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from ..errors import RecordError

CSV_LABEL_SEPARATOR = "|"
# A field may hold a long text (a whole document); csv's default limit is 128 KiB.
CSV_FIELD_LIMIT = 2**31 - 1
# Ids of a file kept in a dict (about 120 bytes each: 60 MB); past this many they move to
# SQLite on disk (slower per record), so that memory stays bounded however long the file.
IDS_IN_MEMORY = 500_000
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
# spaCy's default `nlp.max_length`: `make_doc` refuses longer texts (E088), in annotate, convert
# and training alike, so a longer one is reported with its line instead.
MAX_TEXT_LENGTH = 1_000_000


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
    path: Union[str, Path],
    *,
    text_field: str = "text",
    id_field: str = "id",
    unique_ids: bool = True,
) -> Iterator[Union[Record, RecordError]]:
    """Read records from a JSONL or CSV file (by extension; anything but .csv/.tsv is JSONL).

    The file is streamed line by line; a line that is not UTF-8 is reported, not fatal.

    path (Union[str, Path]): the input file.
    text_field (str): the field holding the text.
    id_field (str): the field holding the record id.
    unique_ids (bool): report a record whose id an earlier record of the file has (the first is
        kept), so that an id names one record wherever it is used (provenance, a variant's
        parent). False reads every record (e.g. to index all texts of an evaluation set).
    YIELDS (Union[Record, RecordError]): a record, or the error of a malformed line.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: input file not found")
    if path.suffix.lower() in (".csv", ".tsv"):
        items = _read_csv(path, text_field, id_field)
    else:
        items = _read_jsonl(path, text_field, id_field)
    if not unique_ids:
        yield from items
        return
    with _FirstLines() as first_lines:
        for item in items:
            if isinstance(item, Record) and item.id is not None:
                first = first_lines.first(item.id, item.line)
                if first is not None:
                    item = RecordError(
                        f"{path}:{item.line}: field '{id_field}': id {item.id!r} on line {item.line} "
                        f"repeats line {first}; give each record its own id"
                    )
            yield item


class _FirstLines:
    """The line each id was first seen on: in a dict, moved to SQLite past IDS_IN_MEMORY ids."""

    def __init__(self) -> None:
        self._lines: Dict[str, int] = {}
        self._dir: Optional[tempfile.TemporaryDirectory] = None
        self._db: Optional[sqlite3.Connection] = None

    def first(self, key: str, line: int) -> Optional[int]:
        """Note `key` on `line`. RETURNS (Optional[int]): the line it was seen on before, if any."""
        if self._db is None:
            first = self._lines.setdefault(key, line)
            if first != line:
                return first
            if len(self._lines) > IDS_IN_MEMORY:
                self._spill()
            return None
        digest = self._digest(key)
        if (
            self._db.execute("INSERT OR IGNORE INTO ids VALUES (?, ?)", (digest, line)).rowcount
            == 1
        ):
            return None
        return self._db.execute("SELECT line FROM ids WHERE digest = ?", (digest,)).fetchone()[0]

    @staticmethod
    def _digest(key: str) -> bytes:
        # As `seen.DiskSet`: two different ids share a 16-byte digest after about 2^64 ids.
        return hashlib.blake2b(key.encode("utf8"), digest_size=16).digest()

    def _spill(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="spacy-distill-ids-")
        self._db = sqlite3.connect(str(Path(self._dir.name) / "ids.sqlite"))
        # A scratch file: durability buys nothing.
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE ids (digest BLOB PRIMARY KEY, line INTEGER) WITHOUT ROWID")
        rows = ((self._digest(key), line) for key, line in self._lines.items())
        self._db.executemany("INSERT INTO ids VALUES (?, ?)", rows)
        self._lines = {}

    def __enter__(self) -> "_FirstLines":
        return self

    def __exit__(self, *exc) -> None:
        if self._db is not None:
            self._db.close()
        if self._dir is not None:
            self._dir.cleanup()


def _decoded_lines(path: Path) -> Iterator[Tuple[int, str, Optional[RecordError]]]:
    """(line number, text, error) per line, the text with its line break. A line that is not
    UTF-8 comes with its error, and its text decoded with replacement characters (which CSV
    needs to find where the record ends)."""
    with path.open("rb") as file_:
        for number, raw in enumerate(file_, start=1):
            if number == 1:
                if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    raise RecordError(f"{path}:1: the file is UTF-16 encoded; save it as UTF-8")
                if raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
            try:
                yield number, raw.decode("utf8"), None
            except UnicodeDecodeError as err:
                error = RecordError(
                    f"{path}:{number}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte "
                    f"{err.start + 1} of the line); save the file as UTF-8"
                )
                yield number, raw.decode("utf8", errors="replace"), error


def _read_jsonl(path: Path, text_field: str, id_field: str) -> Iterator[Union[Record, RecordError]]:
    for line_number, line, error in _decoded_lines(path):
        if error is not None:
            yield error
            continue
        if not line.strip():
            continue  # blank lines hold no record
        try:
            # Without its line break: a line cut short is reported at its own end, not at
            # "column 1" of a next line.
            data = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as err:
            yield RecordError(
                f"{path}:{line_number}: invalid JSON ({err.msg} at column {err.colno})"
            )
            continue
        except RecursionError:
            yield RecordError(f"{path}:{line_number}: invalid JSON (nested too deeply)")
            continue
        if not isinstance(data, dict):
            yield RecordError(
                f"{path}:{line_number}: expected a JSON object, got {type(data).__name__}"
            )
            continue
        # Strictly decoded UTF-8 holds no surrogate: only a JSON escape can make one.
        escaped = "\\u" in line
        yield _make_record(
            data, path, line_number, text_field, id_field, from_csv=False, escaped=escaped
        )


def _read_csv(path: Path, text_field: str, id_field: str) -> Iterator[Union[Record, RecordError]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    # The lines the reader took since the last row: a row starts at the first that is not blank
    # (the reader skips blank lines) and is bad if any of its lines is not UTF-8.
    taken: List[Tuple[int, str, Optional[RecordError]]] = []

    def lines() -> Iterator[str]:
        for item in _decoded_lines(path):
            taken.append(item)
            yield item[1]

    # strict: a quote in the wrong place is an error on its line, not text silently changed.
    reader = csv.DictReader(lines(), delimiter=delimiter, strict=True)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as err:
        raise RecordError(f"{path}:1: the header is not valid CSV ({err})") from err
    if taken and taken[0][2] is not None:
        raise RecordError(str(taken[0][2]))
    if fieldnames is None:
        raise RecordError(f"{path}: empty file (no header row with a '{text_field}' column)")
    if text_field not in fieldnames:
        raise RecordError(
            f"{path}:1: the header has no '{text_field}' column (columns: {fieldnames})"
        )
    taken.clear()
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            row = err
        start = next((number for number, text, _ in taken if text.strip("\r\n")), taken[0][0])
        end = taken[-1][0]
        decode_error = next((error for _, _, error in taken if error is not None), None)
        taken.clear()
        if isinstance(row, csv.Error):
            if str(row) == "unexpected end of data":
                yield RecordError(
                    f"{path}:{start}: a quoted field that starts here is never closed (it runs to "
                    f"line {end}, the end of the file); close or escape (double) its quote"
                )
            else:
                yield RecordError(
                    f"{path}:{start}: not valid CSV ({row}); quote fields holding quotes, "
                    'and double the quotes inside them ("")'
                )
        elif decode_error is not None:
            yield decode_error
        elif None in row:
            yield RecordError(f"{path}:{start}: more fields than the header has columns")
        else:
            # Only the JSON of 'params' can hold an escape that makes a surrogate.
            escaped = "\\u" in (row.get("params") or "")
            yield _make_record(
                row, path, start, text_field, id_field, from_csv=True, escaped=escaped
            )


def _make_record(
    data: dict,
    path: Path,
    line: int,
    text_field: str,
    id_field: str,
    from_csv: bool,
    escaped: bool = True,
) -> Union[Record, RecordError]:
    where = f"{path}:{line}"
    text = data.get(text_field)
    if not isinstance(text, str):
        return RecordError(f"{where}: field '{text_field}': expected a string, got {text!r}")
    if not text.strip():
        return RecordError(f"{where}: field '{text_field}': empty text")
    if len(text) > MAX_TEXT_LENGTH:
        return RecordError(
            f"{where}: field '{text_field}': {len(text):,} characters, more than spaCy makes into "
            f"one doc ({MAX_TEXT_LENGTH:,}, its max_length); split the text into several records"
        )
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
            return RecordError(
                f"{where}: field 'label': expected a non-empty string, got {label!r}"
            )
        gold = (label,)
    elif labels is not None:
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            return RecordError(
                f"{where}: field 'labels': expected a list of label names, got {labels!r}"
            )
        gold = tuple(dict.fromkeys(labels))
    record_id = data.get(id_field)
    if record_id is not None and not isinstance(record_id, (str, int)):
        return RecordError(
            f"{where}: field '{id_field}': expected a string or integer, got {record_id!r}"
        )
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
    fields = (
        (text_field, text),
        ("labels" if labels is not None else "label", gold),
        (id_field, record_id),
        ("parent", parent),
        ("method", method),
        ("params", params),
    )
    for name, value in fields if escaped else ():
        found = _lone_surrogate(value)
        if found is not None:
            return RecordError(
                f"{where}: field '{name}': {found}, half of a UTF-16 pair and not a character (the "
                "text was cut or mis-encoded where it was written); fix the record or drop it"
            )
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


def _lone_surrogate(value: Any) -> Optional[str]:
    """Where a lone surrogate sits in a string, or in the strings of a JSON value; else None."""
    if isinstance(value, str):
        match = LONE_SURROGATE.search(value)
        if match is None:
            return None
        return f"lone surrogate U+{ord(match.group()):04X} at character {match.start() + 1}"
    if isinstance(value, dict):
        value = [part for item in value.items() for part in item]
    if isinstance(value, (list, tuple)):
        return next((found for found in map(_lone_surrogate, value) if found is not None), None)
    return None


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
