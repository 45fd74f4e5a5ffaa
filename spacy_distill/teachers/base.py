"""What a teacher is, and the label mapping every teacher shares."""

from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy

from ..errors import LabelMismatchError
from ..probabilities import log_softmax, logsumexp  # noqa: F401 (log_softmax re-exported)


@runtime_checkable
class Teacher(Protocol):
    """Anything that scores texts over a fixed label set.

    Implement these members (plain attributes are fine) and register a builder in the
    `teachers` registry to use your own teacher with `spacy-distill annotate`. Subclass
    `TeacherBase` to get every optional capability with its default.
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


class TeacherBase:
    """The base of every built-in teacher: the `Teacher` members plus each optional capability
    with its default, so that callers ask (`teacher.supports_hidden`, `teacher.stats()`) instead
    of probing with getattr. A teacher of your own may subclass it, or implement `Teacher` only:
    `as_capable` wraps such a teacher in the defaults."""

    labels: Tuple[str, ...] = ()
    exclusive: bool = True
    teacher_id: str = ""
    batch_size: int = 32
    method: Optional[str] = None
    """How the teacher scored (e.g. "logprobs" or "samples:k" for a server), kept in every target;
    None when there is only one way."""
    supports_hidden: bool = False
    """True when `hidden_settings` and `hidden_states` give the teacher's hidden states."""

    @property
    def fingerprint(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} must define `fingerprint`")

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must define `score`")

    def score_with_members(
        self, texts: Sequence[str]
    ) -> Tuple[numpy.ndarray, Dict[str, numpy.ndarray]]:
        """The scores and, for an ensemble, each member's probabilities (member name -> array
        of shape (len(texts), len(labels))); a single teacher has no members."""
        return self.score(texts), {}

    def stats(self) -> Dict[str, Any]:
        """Counters worth reporting after a run (requests, retries, parse failures); {} if none."""
        return {}

    @property
    def hf_tokenizer(self) -> Optional[Any]:
        """The teacher's Hugging Face tokenizer, if it has one (for teacher-vocabulary vectors)."""
        return None

    def hidden_settings(
        self,
        *,
        layer: Optional[int] = None,
        last_k: Optional[int] = None,
        pooling: Optional[str] = None,
    ) -> Dict[str, Any]:
        """The resolved settings (`layer`, `last_k`, `pooling`, `width`, `model`) that
        `hidden_states` uses with these arguments (None: the teacher's defaults)."""
        raise NotImplementedError(f"teacher {self.teacher_id} has no hidden states")

    def hidden_states(
        self,
        texts: Sequence[str],
        docs: Optional[Sequence[Any]] = None,
        *,
        level: str = "doc",
        layer: Optional[int] = None,
        last_k: Optional[int] = None,
        pooling: Optional[str] = None,
    ) -> List[Any]:
        """One `HiddenStates` per text; token-level vectors are aligned to the tokens of `docs`."""
        raise NotImplementedError(f"teacher {self.teacher_id} has no hidden states")


class _CapableTeacher(TeacherBase):
    """A `Teacher` written without `TeacherBase`, seen through the base class's defaults."""

    def __init__(self, teacher: Teacher) -> None:
        self.wrapped = teacher
        self.labels = tuple(teacher.labels)
        self.exclusive = bool(teacher.exclusive)
        self.teacher_id = str(teacher.teacher_id)
        self.batch_size = teacher.batch_size

    @property
    def fingerprint(self) -> str:
        return self.wrapped.fingerprint

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        return self.wrapped.score(texts)


def as_capable(teacher: Teacher) -> TeacherBase:
    """The teacher itself if it subclasses `TeacherBase`; else the teacher with the base class's
    defaults for every optional capability (a plain `Teacher` has none of them)."""
    if isinstance(teacher, TeacherBase):
        return teacher
    return _CapableTeacher(teacher)


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
