"""Targets for dropped duplicates: a near-copy of a labelled text inherits its teacher scores.

`select` drops pool texts that repeat an earlier text and lists them in a duplicates file (see
`dedupe.write_duplicate_line`). Once the kept texts are annotated, each dropped text can take
its representative's teacher scores instead of costing a teacher call: `inherit_targets` writes
them as a target file that trains like any other.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, Union

import spacy
from spacy.vocab import Vocab

from ..data.records import record_key
from ..data.targets import (
    Provenance,
    TargetFileWriter,
    TeacherTarget,
    get_target,
    iter_target_files,
    read_targets,
    set_target,
)
from ..errors import DistillError
from .dedupe import DUPLICATE_KINDS, Duplicate

INHERITED_METHOD = "inherited"


@dataclass
class DuplicateLine:
    """One line of a duplicates file: a dropped pool text and what it repeats.

    key (str): the dropped text's key.
    text (str): its text.
    duplicate (Duplicate): its representative, kind and similarity.
    line (int): the 1-based line of the file.
    """

    key: str
    text: str
    duplicate: Duplicate
    line: int


def read_duplicate_lines(path: Union[str, Path]) -> Iterator[DuplicateLine]:
    """Read and validate a duplicates file, streamed; blank lines are skipped.

    path (Union[str, Path]): the JSONL file `write_duplicate_line` wrote.
    YIELDS (DuplicateLine): one per line.
    """
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"{path}: duplicates file not found")
    with path.open(encoding="utf8") as file:
        for number, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as err:
                raise DistillError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(data, dict):
                raise DistillError(f"{where}: expected a JSON object, got {type(data).__name__}")
            for field in ("id", "text", "duplicate_of"):
                value = data.get(field)
                if not isinstance(value, str) or (field != "text" and not value):
                    expected = "a string" if field == "text" else "a non-empty string"
                    raise DistillError(
                        f"{where}: field '{field}': expected {expected}, got {value!r}"
                    )
            kind = data.get("kind")
            if kind not in DUPLICATE_KINDS:
                raise DistillError(
                    f"{where}: field 'kind': expected one of {list(DUPLICATE_KINDS)}, got {kind!r}"
                )
            similarity = data.get("similarity")
            if (
                not isinstance(similarity, (int, float))
                or isinstance(similarity, bool)
                or not 0.0 <= similarity <= 1.0
            ):
                raise DistillError(
                    f"{where}: field 'similarity': expected a number in [0, 1], got {similarity!r}"
                )
            duplicate = Duplicate(data["duplicate_of"], kind, float(similarity))
            yield DuplicateLine(data["id"], data["text"], duplicate, number)


@dataclass
class InheritSummary:
    """What `inherit_targets` wrote.

    n_written (int): duplicates written with their representative's teacher scores.
    n_missing (int): duplicates skipped because their representative has no teacher scores in
        the target files (not annotated, or gold only).
    path (Path): the target file written.
    """

    n_written: int
    n_missing: int
    path: Path


def index_teacher_targets(
    target_paths: Iterable[Union[str, Path]],
) -> Dict[str, TeacherTarget]:
    """The teacher targets of annotated target files, by record key (`record_key` of each doc's
    provenance). Held in a dict: memory grows with the labelled set (a few hundred bytes per
    doc), which is what the teacher was paid for, not with the pool.

    target_paths (Iterable[Union[str, Path]]): `.spacy` target files or folders of them.
    RETURNS (Dict[str, TeacherTarget]): the targets with teacher scores; the first doc of a key
        wins.
    """
    index: Dict[str, TeacherTarget] = {}
    vocab = Vocab()
    for path in target_paths:
        for file_path in iter_target_files(path):
            for i, doc in enumerate(read_targets(file_path, vocab)):
                target = get_target(doc, f"{file_path}: doc {i}")
                if target is None or not target.has_teacher:
                    continue
                prov = target.provenance
                index.setdefault(record_key(prov.id, prov.source, prov.line), target)
    return index


def inherit_targets(
    target_paths: Iterable[Union[str, Path]],
    duplicates_path: Union[str, Path],
    output_path: Union[str, Path],
    *,
    lang: str = "en",
) -> InheritSummary:
    """Write a target file in which each dropped duplicate carries its representative's teacher
    scores.

    Each doc holds the duplicate's own text, the representative's labels, scores and teacher,
    no gold (a gold label belongs to the text that was read) and no hidden states (they are of
    the representative's tokens), and a provenance with id = the duplicate's key, parent = the
    representative's key and method "inherited" with params {"from", "kind", "similarity"}.

    target_paths (Iterable[Union[str, Path]]): the annotated target files of the kept texts.
    duplicates_path (Union[str, Path]): the duplicates file (JSONL) the select run wrote.
    output_path (Union[str, Path]): the `.spacy` target file to write.
    lang (str): the language of the blank tokenizer that makes the docs.
    RETURNS (InheritSummary): how many were written and how many had no annotated
        representative.
    """
    targets = index_teacher_targets(target_paths)
    nlp = spacy.blank(lang)
    writer = TargetFileWriter(output_path)
    n_missing = 0
    for item in read_duplicate_lines(duplicates_path):
        source = targets.get(item.duplicate.of)
        if source is None:
            n_missing += 1
            continue
        provenance = Provenance(
            id=item.key,
            parent=item.duplicate.of,
            method=INHERITED_METHOD,
            params={
                "from": item.duplicate.of,
                "kind": item.duplicate.kind,
                "similarity": item.duplicate.similarity,
            },
        )
        target = TeacherTarget(
            labels=source.labels,
            exclusive=source.exclusive,
            scores=source.scores,
            teacher_id=source.teacher_id,
            fingerprint=source.fingerprint,
            provenance=provenance,
            teacher_info=dict(source.teacher_info),
        )
        writer.add(set_target(nlp.make_doc(item.text), target))
    path = writer.write()
    return InheritSummary(n_written=len(writer), n_missing=n_missing, path=path)


__all__ = [
    "INHERITED_METHOD",
    "DuplicateLine",
    "InheritSummary",
    "index_teacher_targets",
    "inherit_targets",
    "read_duplicate_lines",
]
