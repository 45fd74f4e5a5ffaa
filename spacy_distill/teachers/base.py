"""What a teacher is, and the label mapping every teacher shares."""
from typing import Dict, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy

from ..errors import LabelMismatchError


@runtime_checkable
class Teacher(Protocol):
    """Anything that scores texts over a fixed label set.

    Implement these members (plain attributes are fine) and register a builder in the
    `teachers` registry to use your own teacher with `spacy-distill annotate`.
    """

    labels: Tuple[str, ...]
    """The labels, in the order of the columns that `score` returns (student names)."""
    exclusive: bool
    """True: one label per text; False: multi-label."""
    teacher_id: str
    """A readable name, e.g. the model's name or path."""
    batch_size: int
    """How many texts to pass to `score` at a time."""

    @property
    def fingerprint(self) -> str:
        """A hash of everything that changes the teacher's output (weights, prompt, mapping)."""
        ...

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        """Scores of shape (len(texts), len(labels)): log-probabilities (exclusive, rows
        log-sum-exp to 0) or logits (multi-label)."""
        ...


class LabelMapping:
    """Maps a teacher's labels to the student's: rename, merge (exclusive) or drop.

    label_map (Dict[str, Optional[str]]): teacher label -> student label, or None to drop it.
        Labels not in the map keep their name.
    """

    def __init__(
        self,
        teacher_labels: Sequence[str],
        label_map: Optional[Dict[str, Optional[str]]],
        exclusive: bool,
    ) -> None:
        label_map = dict(label_map or {})
        unknown = sorted(set(label_map) - set(teacher_labels))
        if unknown:
            raise LabelMismatchError(
                f"label_map names teacher label(s) {unknown} that the teacher does not have; "
                f"its labels are {list(teacher_labels)}"
            )
        self.teacher_labels = tuple(teacher_labels)
        self.exclusive = exclusive
        student_labels = []
        self._columns: Dict[str, list] = {}
        for index, label in enumerate(teacher_labels):
            mapped = label_map.get(label, label)
            if mapped is None:
                continue
            if mapped not in self._columns:
                student_labels.append(mapped)
                self._columns[mapped] = []
            self._columns[mapped].append(index)
        if len(student_labels) < 2 and exclusive:
            raise LabelMismatchError(
                f"label_map leaves {student_labels}: an exclusive teacher needs two labels or more"
            )
        if not student_labels:
            raise LabelMismatchError("label_map drops every label of the teacher")
        if not exclusive:
            merged = [label for label, cols in self._columns.items() if len(cols) > 1]
            if merged:
                raise LabelMismatchError(
                    f"label_map merges several teacher labels into {merged}: merging is only "
                    "defined for exclusive teachers (probabilities add up)"
                )
        self.labels = tuple(student_labels)
        self.is_identity = self.labels == self.teacher_labels

    def apply(self, scores: numpy.ndarray) -> numpy.ndarray:
        """Teacher scores (log-probabilities or logits, teacher order) -> student columns."""
        if self.is_identity:
            return scores
        if not self.exclusive:
            return scores[:, [self._columns[label][0] for label in self.labels]]
        # Merged labels add their probabilities; dropped labels are renormalised away.
        merged = numpy.stack(
            [_logsumexp(scores[:, self._columns[label]]) for label in self.labels], axis=1
        )
        return merged - _logsumexp(merged)[:, None]


def _logsumexp(x: numpy.ndarray) -> numpy.ndarray:
    top = x.max(axis=1)
    return top + numpy.log(numpy.exp(x - top[:, None]).sum(axis=1))


def log_softmax(x: numpy.ndarray) -> numpy.ndarray:
    """Row-wise log-softmax in float64."""
    x = numpy.asarray(x, dtype="float64")
    return x - _logsumexp(x)[:, None]
