"""Escalation logs as targets: what the cascade teacher decided in production becomes a target
file, so that `spacy train` (with the `spacy-distill.TargetCorpus.v1` reader) learns the texts
the student doubted, with no second teacher call.

The log holds the teacher's probabilities over the student's labels; a target file holds
scores, as `annotate` stores them: log-probabilities for exclusive labels (re-normalised over
the student's labels, which a teacher with more labels did not sum to 1 over), logits for
multi-label. Each target's provenance is the log file and line, with method "cascade".
"""

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
import spacy

from ..data.targets import Provenance, TeacherTarget, set_target, write_targets
from ..errors import DistillError
from ..filter.escalations import EscalationLine, escalation_files, read_escalation_file
from ..probabilities import log_softmax
from ..training.calibration import logits_from_probabilities

PROVENANCE_METHOD = "cascade"


@dataclass
class EscalationSummary:
    """What a conversion read and wrote."""

    output: Path
    labels: Tuple[str, ...]
    exclusive: bool
    files: List[Path] = field(default_factory=list)
    n_records: int = 0
    """Records read from the logs."""
    n_written: int = 0
    """Targets written: one per distinct text."""
    teachers: List[str] = field(default_factory=list)

    @property
    def n_duplicates(self) -> int:
        """Records replaced by a later record of the same text."""
        return self.n_records - self.n_written


def escalations_to_targets(
    log_paths: Union[str, Path, Iterable[Union[str, Path]]],
    output_path: Union[str, Path],
    *,
    labels: Optional[Sequence[str]] = None,
    lang: str = "en",
) -> EscalationSummary:
    """Write the teacher's decisions from escalation logs as a `.spacy` target file.

    A text escalated more than once keeps its latest record (by `time`; in the order written
    when the times are equal).

    log_paths: a log (with its rotated files), a rotated file, a directory of logs, a glob
        pattern, or a list of them (see `spacy_distill.filter.escalations.escalation_files`).
    output_path (Union[str, Path]): the target file to write.
    labels (Optional[Sequence[str]]): the label order of the targets: the logs' labels,
        reordered; None: the order of the first record.
    lang (str): the language whose tokenizer makes the docs.
    RETURNS (EscalationSummary): the files read, the counts and the teachers named.
    """
    files = escalation_files(log_paths)
    latest: Dict[str, Tuple[Tuple[datetime, int], EscalationLine]] = {}
    first: Optional[EscalationLine] = None
    n_records = 0
    entries = (entry for path in files for entry in read_escalation_file(path))
    for order, entry in enumerate(entries):
        record = entry.record
        if first is None:
            first = entry
        else:
            _check_same_labels(entry, first)
        n_records += 1
        key = (datetime.fromisoformat(record["time"]), order)
        kept = latest.get(record["text"])
        if kept is None or key >= kept[0]:
            latest[record["text"]] = (key, entry)
    if first is None:
        raise DistillError(f"{', '.join(map(str, files))}: no escalation records")
    log_labels = list(first.record["labels"])
    exclusive = bool(first.record["exclusive"])
    order_of = _label_columns(log_labels, labels, first)
    target_labels = tuple(log_labels[i] for i in order_of)
    kept_entries = [entry for _, entry in sorted(latest.values(), key=lambda item: item[0][1])]
    probs = numpy.asarray([entry.record["teacher"] for entry in kept_entries], dtype="float64")
    scores = _scores(probs[:, order_of], exclusive)
    nlp = spacy.blank(lang)
    docs = []
    for entry, row in zip(kept_entries, scores):
        record = entry.record
        target = TeacherTarget(
            labels=target_labels,
            exclusive=exclusive,
            scores=row.astype("float32"),
            teacher_id=record["teacher_id"],
            provenance=Provenance(
                source=str(entry.path),
                line=entry.line,
                method=PROVENANCE_METHOD,
                params=_params(record),
            ),
        )
        docs.append(set_target(nlp.make_doc(record["text"]), target))
    output = write_targets(docs, output_path)
    return EscalationSummary(
        output=output,
        labels=target_labels,
        exclusive=exclusive,
        files=files,
        n_records=n_records,
        n_written=len(docs),
        teachers=sorted({entry.record["teacher_id"] for entry in kept_entries}),
    )


def _scores(probs: numpy.ndarray, exclusive: bool) -> numpy.ndarray:
    """Target scores from probabilities, as `annotate` stores a teacher's (module docstring)."""
    logits = logits_from_probabilities(probs, exclusive)
    return log_softmax(logits) if exclusive else logits


def _params(record: Dict[str, Any]) -> Dict[str, Any]:
    """What the provenance keeps of the escalation: when, where, and how doubtful the student was."""
    return {
        "component": record["component"],
        "time": record["time"],
        "margin": record["margin"],
        "verdict": record["verdict"],
    }


def _check_same_labels(entry: EscalationLine, first: EscalationLine) -> None:
    record, expected = entry.record, first.record
    where = f"{entry.path}:{entry.line}"
    if record["labels"] != expected["labels"]:
        raise DistillError(
            f"{where}: field 'labels': {record['labels']} differs from {expected['labels']} of "
            f"{first.path}:{first.line}; convert logs of one label set together"
        )
    if record["exclusive"] != expected["exclusive"]:
        raise DistillError(
            f"{where}: field 'exclusive': {record['exclusive']} differs from "
            f"{expected['exclusive']} of {first.path}:{first.line}"
        )


def _label_columns(
    log_labels: List[str], labels: Optional[Sequence[str]], first: EscalationLine
) -> List[int]:
    """The log's column of each target label."""
    if labels is None:
        return list(range(len(log_labels)))
    if sorted(labels) != sorted(log_labels) or len(set(labels)) != len(labels):
        raise DistillError(
            f"labels {list(labels)}: the logs hold {log_labels} ({first.path}:{first.line}); "
            "give the same labels in any order"
        )
    return [log_labels.index(label) for label in labels]


__all__ = ["EscalationSummary", "PROVENANCE_METHOD", "escalations_to_targets"]
