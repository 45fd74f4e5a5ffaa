"""The texts to evaluate on, with gold and (when annotated before) the teacher's outputs."""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy

from ..arguments import check_int_argument
from ..data.records import read_records, split_errors
from ..data.targets import get_target, read_targets
from ..errors import DistillError, LabelMismatchError
from ..probabilities import scores_to_probabilities


@dataclass
class EvaluationData:
    """Texts with gold (NaN where unknown) and, if a target file held them, teacher probabilities.

    texts (List[str]): the texts.
    labels (List[str]): the label order of the arrays.
    gold (numpy.ndarray): (n, L) 0/1 floats, NaN where unknown.
    teacher_probs (Optional[numpy.ndarray]): (n, L) teacher probabilities at T=1, or None.
    teacher_id (Optional[str]): the teacher that produced them.
    source (str): the file read.
    """

    texts: List[str]
    labels: List[str]
    gold: numpy.ndarray
    teacher_probs: Optional[numpy.ndarray]
    teacher_id: Optional[str]
    source: str

    @property
    def n_gold(self) -> int:
        return int((~numpy.isnan(self.gold).all(axis=1)).sum())


def load_evaluation_data(
    path: Union[str, Path], labels: Sequence[str], *, exclusive: bool, limit: int = 0
) -> EvaluationData:
    """Read a JSONL/CSV file or a target file (`.spacy`, or a directory of them).

    path (Union[str, Path]): the data.
    labels (Sequence[str]): the student's labels; arrays follow this order.
    exclusive (bool): the student's kind (an exclusive gold row is one-hot).
    limit (int): read the first N texts only (0: all).
    RETURNS (EvaluationData): texts, gold and any stored teacher outputs.
    """
    # A negative limit would slice records off the end instead.
    check_int_argument("limit", limit, 0)
    path = Path(path)
    labels = list(labels)
    texts: List[str] = []
    gold_rows: List[numpy.ndarray] = []
    teacher_rows: List[Optional[numpy.ndarray]] = []
    teacher_ids = set()
    if path.is_dir() or path.suffix == ".spacy":
        for doc in read_targets(path):
            target = get_target(doc)
            assert target is not None
            if set(target.labels) != set(labels) or target.exclusive != exclusive:
                raise LabelMismatchError(
                    f"{path}: labels {list(target.labels)} (exclusive={target.exclusive}) do not "
                    f"match the student's {labels} (exclusive={exclusive})"
                )
            texts.append(doc.text)
            gold_rows.append(_gold_row(doc.cats, labels))
            if target.has_teacher:
                probs = dict(zip(target.labels, target.probabilities()))
                teacher_rows.append(numpy.asarray([probs[label] for label in labels]))
                teacher_ids.add(target.teacher_id)
            else:
                teacher_rows.append(None)
            if limit and len(texts) >= limit:
                break
    else:
        # Ids play no part in evaluation: a record whose id repeats is still a text to score.
        records, errors = split_errors(read_records(path, unique_ids=False))
        if errors:
            raise DistillError(f"{len(errors)} bad record(s), the first: {errors[0]}")
        for record in records[: limit or None]:
            unknown = [label for label in record.labels or () if label not in labels]
            if unknown:
                raise LabelMismatchError(
                    f"{record.source}:{record.line}: unknown label(s) {unknown}; the student's labels are {labels}"
                )
            texts.append(record.text)
            cats = (
                None
                if record.labels is None
                else {label: float(label in record.labels) for label in labels}
            )
            gold_rows.append(_gold_row(cats or {}, labels))
            teacher_rows.append(None)
    if not texts:
        raise DistillError(f"{path}: no texts to evaluate on")
    teacher_probs = None
    if all(row is not None for row in teacher_rows):
        teacher_probs = numpy.stack(teacher_rows)  # type: ignore[arg-type]
    return EvaluationData(
        texts=texts,
        labels=labels,
        gold=numpy.stack(gold_rows),
        teacher_probs=teacher_probs,
        teacher_id=", ".join(sorted(teacher_ids)) or None,
        source=str(path),
    )


def _gold_row(cats, labels: Sequence[str]) -> numpy.ndarray:
    return numpy.asarray(
        [cats.get(label, numpy.nan) if cats else numpy.nan for label in labels], dtype="float64"
    )


def teacher_probabilities(scores: numpy.ndarray, exclusive: bool) -> numpy.ndarray:
    """Teacher scores (log-probabilities or logits) to probabilities at T=1."""
    return scores_to_probabilities(scores, exclusive)
