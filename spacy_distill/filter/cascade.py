"""The cascade in numbers: which docs the student escalates, and what that buys.

The student screens every doc and escalates those whose margin (see `decision`) is below the
escalation margin; the teacher's decision replaces the student's for those. Escalating the k
least certain docs gives one point of the accuracy vs escalation-rate curve; a margin that
escalates a target fraction, or reaches a target accuracy, is chosen on dev data whose teacher
outputs were stored by `annotate` (no teacher run needed).
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy

from ..errors import DistillError
from .decision import DecisionRule

DEFAULT_RATES = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)
# Margins live in [0, 1]; this one escalates every doc.
ESCALATE_ALL = 1.0 + 1e-6


def correct_decisions(
    rule: DecisionRule, probs: numpy.ndarray, gold: numpy.ndarray
) -> numpy.ndarray:
    """(n,) whether the rule's labels match gold: the gold label (exclusive) or the exact
    gold label set (multi-label). Rows of `gold` must be known (no NaN)."""
    kept = rule.kept(probs)
    truth = gold >= 0.5
    if rule.exclusive:
        # A doc whose threshold kept no label is wrong: it was not given its gold label.
        return (kept & truth).any(axis=1)
    return (kept == truth).all(axis=1)


def escalation_order(margins: numpy.ndarray) -> numpy.ndarray:
    """Doc indices from least to most certain (the order in which a wider band takes them)."""
    return numpy.argsort(margins, kind="stable")


def margin_for_count(margins: numpy.ndarray, k: int) -> float:
    """A margin that escalates exactly the k least certain docs (ties aside): halfway between
    the k-th and (k+1)-th smallest margins, so that it survives rounding."""
    ordered = numpy.sort(numpy.asarray(margins, dtype="float64"))
    n = len(ordered)
    if k <= 0:
        return 0.0
    if k >= n:
        return ESCALATE_ALL
    # Docs whose scores are not probabilities have an infinite margin (never escalated): a band
    # that reaches them escalates every other doc, and stays a finite number in meta.json.
    return float(min((ordered[k - 1] + ordered[k]) / 2, ESCALATE_ALL))


def margin_for_rate(margins: numpy.ndarray, rate: float) -> float:
    """The margin that escalates a fraction `rate` of these docs."""
    if not 0.0 <= rate <= 1.0:
        raise DistillError(f"escalation rate must be in [0, 1], got {rate}")
    return margin_for_count(margins, int(round(rate * len(margins))))


def cascade_accuracy_by_count(
    student_correct: numpy.ndarray, teacher_correct: numpy.ndarray, margins: numpy.ndarray
) -> numpy.ndarray:
    """(n + 1,) cascade accuracy when the k least certain docs go to the teacher, k = 0..n."""
    order = escalation_order(margins)
    s = student_correct[order].astype("float64")
    t = teacher_correct[order].astype("float64")
    n = len(order)
    teacher_part = numpy.r_[0.0, numpy.cumsum(t)]
    student_part = numpy.r_[s.sum(), s.sum() - numpy.cumsum(s)]
    return (teacher_part + student_part) / max(n, 1)


def _cascade_on_gold(gold, student_probs, teacher_probs, student_rule, teacher_rule):
    """On the docs with gold: the student's margins, which decisions of each model are right,
    and the cascade accuracy by number of escalated docs."""
    known = ~numpy.isnan(gold).any(axis=1)
    if not known.any():
        raise DistillError("no docs with gold labels: the cascade's accuracy cannot be measured")
    g, sp, tp = gold[known], student_probs[known], teacher_probs[known]
    margins = student_rule.margins(sp)
    s_ok = correct_decisions(student_rule, sp, g)
    t_ok = correct_decisions(teacher_rule, tp, g)
    return margins, s_ok, t_ok, cascade_accuracy_by_count(s_ok, t_ok, margins)


def cascade_curve(
    gold: numpy.ndarray,
    student_probs: numpy.ndarray,
    teacher_probs: numpy.ndarray,
    student_rule: DecisionRule,
    teacher_rule: DecisionRule,
    rates: Sequence[float] = DEFAULT_RATES,
    extra_margins: Sequence[Tuple[str, float]] = (),
) -> Dict[str, Any]:
    """Accuracy vs escalation rate on docs with gold.

    gold (numpy.ndarray): (n, L) 0/1, NaN where unknown (rows with any NaN are left out).
    student_probs, teacher_probs (numpy.ndarray): (n, L) probabilities.
    student_rule, teacher_rule (DecisionRule): how each decides.
    rates (Sequence[float]): escalation rates to report.
    extra_margins (Sequence[Tuple[str, float]]): named margins (e.g. the tuned one) to report too.
    RETURNS (Dict[str, Any]): student_accuracy, teacher_accuracy, points (rate, margin,
        escalation_rate, accuracy) and named (the extra margins' points).
    """
    margins, s_ok, t_ok, by_count = _cascade_on_gold(
        gold, student_probs, teacher_probs, student_rule, teacher_rule
    )
    n = len(margins)
    points = []
    for rate in rates:
        k = int(round(rate * n))
        points.append(
            {
                "target_rate": float(rate),
                "margin": margin_for_count(margins, k),
                "escalation_rate": k / n,
                "accuracy": float(by_count[k]),
            }
        )
    named = {}
    for name, margin in extra_margins:
        escalated = margins < margin
        acc = numpy.where(escalated, t_ok, s_ok).mean()
        named[name] = {
            "margin": float(margin),
            "escalation_rate": float(escalated.mean()),
            "accuracy": float(acc),
        }
    return {
        "n": n,
        "student_accuracy": float(s_ok.mean()),
        "teacher_accuracy": float(t_ok.mean()),
        "points": points,
        "named": named,
    }


def margin_for_accuracy(
    gold: numpy.ndarray,
    student_probs: numpy.ndarray,
    teacher_probs: numpy.ndarray,
    student_rule: DecisionRule,
    teacher_rule: DecisionRule,
    target: float,
) -> Dict[str, Any]:
    """The narrowest band whose cascade reaches `target` accuracy on these docs.

    RETURNS (Dict[str, Any]): margin, met, escalation_rate and accuracy on these docs, and the
        student's and teacher's accuracy alone. When the target is out of reach, the band of
        the best accuracy is kept and `met` is False.
    """
    if not 0.0 <= target <= 1.0:
        raise DistillError(f"target accuracy must be in [0, 1], got {target}")
    margins, s_ok, t_ok, by_count = _cascade_on_gold(
        gold, student_probs, teacher_probs, student_rule, teacher_rule
    )
    reached = numpy.flatnonzero(by_count >= target - 1e-12)
    met = bool(len(reached))
    k = int(reached[0]) if met else int(numpy.argmax(by_count))
    n = len(margins)
    return {
        "margin": margin_for_count(margins, k),
        "met": met,
        "escalation_rate": k / n,
        "accuracy": float(by_count[k]),
        "student_accuracy": float(s_ok.mean()),
        "teacher_accuracy": float(t_ok.mean()),
        "n": n,
    }


def escalation_summary(margins: numpy.ndarray, margin: Optional[float]) -> Dict[str, Any]:
    """How many docs a margin escalates."""
    if margin is None:
        return {"margin": None, "escalation_rate": 0.0}
    return {
        "margin": float(margin),
        "escalation_rate": float((numpy.asarray(margins) < margin).mean()),
    }


__all__: List[str] = [
    "DEFAULT_RATES",
    "cascade_curve",
    "correct_decisions",
    "margin_for_accuracy",
    "margin_for_count",
    "margin_for_rate",
    "escalation_summary",
]
