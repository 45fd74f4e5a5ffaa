"""What a teacher is: the `Teacher` protocol, and `TeacherBase`, which declares every optional
capability with its default, so that callers ask a teacher instead of probing it. Below every
layer that handles teachers (hidden states, vectors, annotation), so none of them needs the
`teachers` package and its modules."""

from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy


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
