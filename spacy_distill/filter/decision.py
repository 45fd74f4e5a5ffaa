"""From class probabilities to a filter's decision: which labels hold, and the verdict.

One rule serves the runtime component, threshold and band tuning, and evaluation, so that what
`tune` and `evaluate` measure is what `semantic_filter` does:

* a label holds when its probability reaches its threshold. Labels without a threshold fall back
  to spaCy's own decision: the argmax for exclusive classes, p >= 0.5 for multi-label;
* exclusive classes keep one label: among those that hold, the one whose action comes first
  (`block`, then `review`, then any other action, then `allow`), then the most probable;
* the verdict is the action of the labels kept (a label without an action is `allow`), the
  most severe one for multi-label; with no label, `default_action`;
* a doc's margin is how far its probabilities are from their decision boundaries (the smallest
  |p - threshold|; p_top - p_second for an exclusive label without a threshold). The student is
  in doubt when the margin is below the escalation margin: the band around the thresholds;
* scores that are not probabilities decide nothing: no label, `default_action`, and an infinite
  margin (never in doubt, never escalated). For exclusive classes they must be finite, in
  [0, 1] and sum to 1; spaCy's textcat gives an empty doc all zeros, which is no distribution.
  Multi-label scores must be finite and in [0, 1].
"""

import operator
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy

from ..errors import DistillError

ALLOW, REVIEW, BLOCK = "allow", "review", "block"
_RANK = {BLOCK: 3, REVIEW: 2, ALLOW: 0}
_CUSTOM_RANK = 1
DEFAULT_MULTILABEL_THRESHOLD = 0.5
# Softmax outputs sum to 1 up to float32 rounding (1e-7 per label); all zeros (spaCy's empty doc)
# or a NaN is far outside this.
DISTRIBUTION_TOLERANCE = 1e-3


def action_rank(action: str) -> int:
    """How an action ranks when several labels hold: block > review > other actions > allow."""
    return _RANK.get(action, _CUSTOM_RANK)


@dataclass(frozen=True)
class Decision:
    """What a rule decided for one doc.

    verdict (str): the action: allow, block, review, or a label's own action.
    labels (Tuple[str, ...]): the labels that hold (at most one for exclusive classes).
    margin (float): distance of the probabilities from the decision boundaries.
    """

    verdict: str
    labels: Tuple[str, ...]
    margin: float


class DecisionRule:
    """Thresholds and actions over a fixed label order.

    labels (Sequence[str]): the labels, in the column order of the probabilities.
    exclusive (bool): exclusive classes (one label per doc) or multi-label.
    thresholds (Optional[Mapping[str, float]]): label -> threshold in [0, 1]; labels left out
        use the argmax (exclusive) or 0.5 (multi-label).
    actions (Optional[Mapping[str, str]]): label -> action; labels left out are `allow`.
    default_action (str): the verdict when no label holds.
    """

    def __init__(
        self,
        labels: Sequence[str],
        exclusive: bool,
        thresholds: Optional[Mapping[str, float]] = None,
        actions: Optional[Mapping[str, str]] = None,
        default_action: str = ALLOW,
    ) -> None:
        self.labels = tuple(labels)
        self.exclusive = bool(exclusive)
        self.thresholds = {str(k): float(v) for k, v in dict(thresholds or {}).items()}
        self.actions = {str(k): str(v) for k, v in dict(actions or {}).items()}
        self.default_action = str(default_action)
        for field, mapping in (("thresholds", self.thresholds), ("actions", self.actions)):
            unknown = sorted(set(mapping) - set(self.labels))
            if unknown:
                raise DistillError(
                    f"{field} names label(s) {unknown} that the classifier does not have; "
                    f"its labels are {list(self.labels)}"
                )
        for label, value in self.thresholds.items():
            if not 0.0 <= value <= 1.0:
                raise DistillError(f"thresholds.{label} must be in [0, 1], got {value}")
        for label, action in self.actions.items():
            if not action.strip():
                raise DistillError(
                    f"actions.{label} is empty; use e.g. 'allow', 'block' or 'review'"
                )
        self._cut = numpy.asarray(
            [self.thresholds.get(label, numpy.nan) for label in self.labels], dtype="float64"
        )
        if not self.exclusive:
            self._cut = numpy.where(numpy.isnan(self._cut), DEFAULT_MULTILABEL_THRESHOLD, self._cut)
        self._label_actions = [self.actions.get(label, ALLOW) for label in self.labels]
        self._label_ranks = numpy.asarray([action_rank(a) for a in self._label_actions])

    def scored(self, probs: numpy.ndarray) -> numpy.ndarray:
        """(n,) booleans: which rows are probabilities the rule can decide on (see the module
        docstring); the others keep no label and are never in doubt."""
        probs = self._check(probs)
        with numpy.errstate(invalid="ignore"):
            valid = (numpy.isfinite(probs) & (probs >= 0.0) & (probs <= 1.0)).all(axis=1)
            if self.exclusive and probs.shape[1]:
                valid &= numpy.abs(probs.sum(axis=1) - 1.0) <= DISTRIBUTION_TOLERANCE
        return valid

    def holds(self, probs: numpy.ndarray) -> numpy.ndarray:
        """(n, L) booleans: which labels reach their threshold (before exclusive choice); none
        for rows that are not probabilities."""
        probs = self._check(probs)
        with numpy.errstate(invalid="ignore"):
            holds = probs >= self._cut
        if self.exclusive:
            no_cut = numpy.isnan(self._cut)
            if no_cut.any():
                top = numpy.zeros_like(holds)
                top[numpy.arange(len(probs)), probs.argmax(axis=1)] = True
                holds = numpy.where(no_cut, top, holds)
        holds &= self.scored(probs)[:, None]
        return holds

    def kept(self, probs: numpy.ndarray) -> numpy.ndarray:
        """(n, L) booleans: the labels a doc ends up with (one at most for exclusive classes)."""
        holds = self.holds(probs)
        if not self.exclusive:
            return holds
        probs = self._check(probs)
        # Rank by action first, then probability: a spam label over its threshold blocks even
        # where ham also clears its own threshold.
        key = numpy.where(holds, self._label_ranks * 2.0 + probs, -numpy.inf)
        kept = numpy.zeros_like(holds)
        rows = numpy.flatnonzero(holds.any(axis=1))
        kept[rows, key[rows].argmax(axis=1)] = True
        return kept

    def margins(self, probs: numpy.ndarray) -> numpy.ndarray:
        """(n,) distance of each doc's probabilities from the nearest decision boundary."""
        probs = self._check(probs)
        distance = numpy.abs(probs - self._cut)
        if self.exclusive and numpy.isnan(self._cut).any():
            if probs.shape[1] > 1:
                top2 = -numpy.partition(-probs, 1, axis=1)[:, :2]
                gap = top2[:, 0] - top2[:, 1]
            else:
                gap = numpy.ones(len(probs))
            distance = numpy.where(numpy.isnan(self._cut), gap[:, None], distance)
        margins = distance.min(axis=1) if distance.size else numpy.ones(len(probs))
        return numpy.where(self.scored(probs), margins, numpy.inf)

    def verdict_indices(self, kept: numpy.ndarray, probs: numpy.ndarray) -> numpy.ndarray:
        """(n,) each doc's verdict as an index into `verdict_names`: the action of the kept
        label that ranks first (then the most probable), or `default_action` (the last name)
        when no label is kept."""
        key = numpy.where(kept, self._label_ranks * 2.0 + probs, -numpy.inf)
        best = key.argmax(axis=1) if key.size else numpy.zeros(len(probs), dtype="int64")
        return numpy.where(kept.any(axis=1), best, len(self.labels))

    @property
    def verdict_names(self) -> Tuple[str, ...]:
        """The action of each label, in label order, then `default_action`."""
        return tuple(self._label_actions) + (self.default_action,)

    def verdicts(self, kept: numpy.ndarray, probs: numpy.ndarray) -> List[str]:
        """The verdict of each doc from the labels it kept."""
        names = self.verdict_names
        return [names[i] for i in self.verdict_indices(kept, probs).tolist()]

    def kept_labels(self, kept: numpy.ndarray) -> List[Tuple[str, ...]]:
        """The names of the labels each doc kept."""
        if self.exclusive:
            # One label at most: a lookup per doc instead of a nonzero() per row.
            names = tuple((label,) for label in self.labels) + ((),)
            index = (
                numpy.where(kept.any(axis=1), kept.argmax(axis=1), len(self.labels))
                if kept.size
                else []
            )
            return [names[i] for i in numpy.asarray(index, dtype="int64").tolist()]
        return [tuple(self.labels[j] for j in numpy.flatnonzero(row)) for row in kept]

    def decide(self, probs: numpy.ndarray) -> List[Decision]:
        """The decision for each row of probabilities (n, L) in this rule's label order."""
        probs = self._check(probs)
        kept = self.kept(probs)
        margins = self.margins(probs)
        return [
            Decision(verdict, labels, margin)
            for verdict, labels, margin in zip(
                self.verdicts(kept, probs), self.kept_labels(kept), margins.tolist()
            )
        ]

    def probabilities(self, cats: Sequence[Mapping[str, float]]) -> numpy.ndarray:
        """(n, L) probabilities from `doc.cats` dicts, in this rule's label order."""
        read = (
            operator.itemgetter(*self.labels)
            if len(self.labels) > 1
            else (lambda c: (c[self.labels[0]],))
        )
        try:
            return numpy.asarray([read(c) for c in cats], dtype="float64").reshape(
                len(cats), len(self.labels)
            )
        except KeyError as err:
            raise DistillError(
                f"doc.cats lacks label {err.args[0]!r}; the filter expects {list(self.labels)}"
            ) from None

    def to_dict(self) -> Dict[str, object]:
        return {
            "labels": list(self.labels),
            "exclusive": self.exclusive,
            "thresholds": dict(self.thresholds),
            "actions": dict(self.actions),
            "default_action": self.default_action,
        }

    def _check(self, probs: numpy.ndarray) -> numpy.ndarray:
        probs = numpy.asarray(probs, dtype="float64")
        if probs.ndim != 2 or probs.shape[1] != len(self.labels):
            raise DistillError(
                f"expected probabilities of shape (n, {len(self.labels)}) for labels "
                f"{list(self.labels)}, got {probs.shape}"
            )
        return probs
