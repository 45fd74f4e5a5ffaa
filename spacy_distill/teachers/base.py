"""The label mapping every teacher shares (what a teacher is: `spacy_distill.teacher_protocol`)."""

from typing import Dict, Optional, Sequence

import numpy

from ..errors import LabelMismatchError
from ..probabilities import log_softmax, logsumexp  # noqa: F401 (log_softmax re-exported)


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
            [logsumexp(scores[:, self._columns[label]]) for label in self.labels], axis=1
        )
        return log_softmax(merged)
