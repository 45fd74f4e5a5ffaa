"""A teacher that fuses several teachers' scores: a weighted mean of their probabilities, or of
their log-probabilities (geometric pooling)."""

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy

from ..errors import DistillError, LabelMismatchError
from ..hf.loading import fingerprint_of
from ..probabilities import log_sigmoid, log_softmax, logsumexp, sigmoid
from ..registry import registry
from ..teacher_protocol import Teacher, TeacherBase, as_capable

SPACES = ("probability", "log")


class EnsembleTeacher(TeacherBase):
    """Fuses the scores of named member teachers over one label set.

    Exclusive members: "probability" space returns the log of the weighted mean of the members'
    probabilities; "log" space returns the weighted mean of their log-probabilities, renormalised
    (a weighted geometric mean). Multi-label members: "probability" space returns the logit of the
    weighted mean of the per-label probabilities; "log" space the weighted mean of the logits.

    All members must be exclusive, or all multi-label, and have the same labels; their column
    order may differ (the first member's order is used, the others are aligned by name).
    """

    def __init__(
        self,
        members: Dict[str, Teacher],
        *,
        weights: Optional[Dict[str, float]] = None,
        space: str = "probability",
        batch_size: Optional[int] = None,
        teacher_id: Optional[str] = None,
    ) -> None:
        """
        members (Dict[str, Teacher]): member name -> teacher.
        weights (Optional[Dict[str, float]]): member name -> weight (>= 0); None: equal weights.
            Weights are normalised to sum to 1.
        space (str): "probability" or "log".
        batch_size (Optional[int]): texts per call to `score`; None: the largest member batch size.
            Each member is still called with at most its own batch_size texts at a time.
        teacher_id (Optional[str]): a readable id; defaults to "ensemble(<member names>)".
        """
        if not members:
            raise DistillError("EnsembleTeacher: members is empty; give at least one teacher")
        if space not in SPACES:
            raise DistillError(f"EnsembleTeacher: space must be one of {SPACES}, got {space!r}")
        self.members: Dict[str, Teacher] = dict(members)
        self.names: Tuple[str, ...] = tuple(self.members)
        for name, member in self.members.items():
            if not isinstance(member, Teacher):
                raise DistillError(
                    f"EnsembleTeacher: member {name!r} is a {type(member).__name__}, which lacks "
                    "what a Teacher has (labels, exclusive, teacher_id, batch_size, fingerprint, "
                    "score)"
                )
        self.space = space
        self.weights = _normalised_weights(self.names, weights)
        self.exclusive, self.labels = _shared_labels(self.members)
        self._columns = {
            name: [list(member.labels).index(label) for label in self.labels]
            for name, member in self.members.items()
        }
        self.batch_size = batch_size or max(int(m.batch_size) for m in self.members.values())
        self.teacher_id = teacher_id or f"ensemble({','.join(self.names)})"

    @property
    def fingerprint(self) -> str:
        """sha256 of the members' fingerprints, the weights, the space and the label order."""
        return fingerprint_of(
            [
                "spacy-distill.EnsembleTeacher.v1",
                self.space,
                list(self.labels),
                [[name, self.members[name].fingerprint, self.weights[name]] for name in self.names],
            ]
        )

    def stats(self) -> Dict[str, Any]:
        """The members' own `stats()`, for the members that have any.

        RETURNS (Dict[str, Any]): member name -> its stats.
        """
        stats = {name: as_capable(member).stats() for name, member in self.members.items()}
        return {name: member_stats for name, member_stats in stats.items() if member_stats}

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        """Fused scores: log-probabilities (exclusive) or logits (multi-label).

        texts (Sequence[str]): the texts.
        RETURNS (numpy.ndarray): shape (len(texts), len(self.labels)), float32.
        """
        return self.score_with_members(texts)[0]

    def score_with_members(
        self, texts: Sequence[str]
    ) -> Tuple[numpy.ndarray, Dict[str, numpy.ndarray]]:
        """Fused scores, and each member's probabilities (for provenance).

        texts (Sequence[str]): the texts.
        RETURNS (Tuple[numpy.ndarray, Dict[str, numpy.ndarray]]): the fused scores, as `score`
            returns them, and member name -> its probabilities, shape (len(texts),
            len(self.labels)) in `self.labels` order, float32 (rows sum to 1 when exclusive;
            per-label sigmoids when multi-label).
        """
        texts = list(texts)
        member_scores = {name: self._member_scores(name, texts) for name in self.names}
        fused = self._fuse(member_scores, len(texts))
        probabilities = {
            name: (numpy.exp(scores) if self.exclusive else sigmoid(scores)).astype("float32")
            for name, scores in member_scores.items()
        }
        return fused.astype("float32"), probabilities

    def _member_scores(self, name: str, texts: List[str]) -> numpy.ndarray:
        """One member's scores in the ensemble's column order (float64; log-probabilities
        renormalised when exclusive)."""
        member = self.members[name]
        n_columns = len(member.labels)
        if not texts:
            return numpy.zeros((0, len(self.labels)), dtype="float64")
        step = max(1, int(member.batch_size))
        chunks = []
        for start in range(0, len(texts), step):
            chunk = texts[start : start + step]
            scores = numpy.asarray(member.score(chunk), dtype="float64")
            if scores.shape != (len(chunk), n_columns):
                raise DistillError(
                    f"EnsembleTeacher: member {name!r} returned scores of shape {scores.shape} "
                    f"for {len(chunk)} texts and {n_columns} labels"
                )
            chunks.append(scores)
        scores = numpy.concatenate(chunks, axis=0)[:, self._columns[name]]
        return log_softmax(scores) if self.exclusive else scores

    def _fuse(self, member_scores: Dict[str, numpy.ndarray], n: int) -> numpy.ndarray:
        # Zero-weight members are scored (for provenance) but left out of the fusion, so that a
        # -inf log-probability times 0 cannot turn into NaN.
        used = [name for name in self.names if self.weights[name] > 0]
        weights = numpy.asarray([self.weights[name] for name in used])[:, None, None]
        stacked = numpy.stack([member_scores[name] for name in used])  # (members, n, labels)
        if stacked.size == 0:
            return numpy.zeros((n, len(self.labels)), dtype="float64")
        if self.exclusive and self.space == "probability":
            # log sum_m w_m p_m, in log space; a label no member gives any probability is -inf.
            with numpy.errstate(divide="ignore"):
                return logsumexp(numpy.log(weights) + stacked, axis=0)
        if self.exclusive:
            return log_softmax((weights * stacked).sum(axis=0))
        if self.space == "probability":
            # logit(sum_m w_m sigmoid(z_m)) = log(sum w p) - log(sum w (1 - p)), stably.
            log_w = numpy.log(weights)
            with numpy.errstate(divide="ignore"):
                return logsumexp(log_w + log_sigmoid(stacked), axis=0) - logsumexp(
                    log_w + log_sigmoid(-stacked), axis=0
                )
        return (weights * stacked).sum(axis=0)


def _normalised_weights(
    names: Sequence[str], weights: Optional[Dict[str, float]]
) -> Dict[str, float]:
    if weights is None:
        return {name: 1.0 / len(names) for name in names}
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise DistillError(
            f"EnsembleTeacher: weights name member(s) {unknown} that are not in members "
            f"{list(names)}"
        )
    missing = [name for name in names if name not in weights]
    if missing:
        raise DistillError(
            f"EnsembleTeacher: weights has no weight for member(s) {missing}; give every member "
            "a weight (0 leaves a member out of the fusion), or leave weights out for equal weights"
        )
    for name in names:
        value = weights[name]
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise DistillError(
                f"EnsembleTeacher: the weight of member {name!r} must be a finite number >= 0, "
                f"got {value!r}"
            )
    total = float(sum(weights[name] for name in names))
    if total <= 0:
        raise DistillError("EnsembleTeacher: the weights add up to 0; give one member a weight > 0")
    return {name: float(weights[name]) / total for name in names}


def _shared_labels(members: Dict[str, Teacher]) -> Tuple[bool, Tuple[str, ...]]:
    names = list(members)
    first = names[0]
    exclusive = bool(members[first].exclusive)
    labels = tuple(members[first].labels)
    for name, member in members.items():
        member_labels = tuple(member.labels)
        duplicates = sorted({label for label in member_labels if member_labels.count(label) > 1})
        if duplicates:
            raise LabelMismatchError(
                f"EnsembleTeacher: member {name!r} has label(s) {duplicates} more than once"
            )
        if bool(member.exclusive) != exclusive:
            kinds = {n: ("exclusive" if m.exclusive else "multi-label") for n, m in members.items()}
            raise LabelMismatchError(
                f"EnsembleTeacher: member {name!r} is "
                f"{'exclusive' if member.exclusive else 'multi-label'} but {first!r} is not; "
                f"all members must be of one kind ({kinds})"
            )
        if set(member_labels) != set(labels):
            missing = sorted(set(labels) - set(member_labels))
            extra = sorted(set(member_labels) - set(labels))
            raise LabelMismatchError(
                f"EnsembleTeacher: member {name!r} has labels {list(member_labels)}, member "
                f"{first!r} has {list(labels)} ({name!r} lacks {missing}, has extra {extra}); "
                "give the members the same label set, e.g. with each member's label_map"
            )
    return exclusive, labels


@registry.spacy_distill_teachers("spacy-distill.EnsembleTeacher.v1")
def configure_ensemble_teacher(
    # Any, not Teacher: confection validates the arguments before it builds the nested
    # `@teachers` blocks, and a Protocol cannot describe an unbuilt block. EnsembleTeacher checks.
    members: Dict[str, Any],
    weights: Optional[Dict[str, float]] = None,
    space: str = "probability",
    batch_size: Optional[int] = None,
) -> EnsembleTeacher:
    """Several teachers fused into one.

    members (Dict[str, Teacher]): member name -> teacher, e.g. a `[teacher.members.a]` block
        with its own `@teachers = ...`.
    weights (Optional[Dict[str, float]]): member name -> weight (normalised); None: equal weights.
    space (str): "probability" (weighted mean of probabilities) or "log" (weighted mean of
        log-probabilities / logits: geometric pooling).
    batch_size (Optional[int]): texts per call; None: the largest member batch size.
    RETURNS (EnsembleTeacher): the teacher.
    """
    return EnsembleTeacher(members, weights=weights, space=space, batch_size=batch_size)
