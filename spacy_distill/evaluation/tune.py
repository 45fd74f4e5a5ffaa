"""Per-label decision thresholds for a target the user chooses, stored with the pipeline.

The thresholds live in the pipeline's `meta.json` (label -> threshold: decide the label when its
probability >= threshold; the layout: `spacy_distill.pipeline.meta`), where the
`semantic_filter` runtime reads them; `get_thresholds(nlp)` returns them. `tune_student`
(`spacy_distill.evaluation.tune_student`) runs the whole tuning of a saved student.

For exclusive classes the default objective (F1) is judged on the filter's own decisions: the
`DecisionRule` with the filter's actions, where a label over its threshold can take a doc from
the argmax. Per-label thresholds chosen one label at a time can lower accuracy that way (a low
`offensive` threshold that `block` then enforces over every other label), so a label's threshold
is kept only where it raises the decisions' macro-F1 on dev without lowering their accuracy
below the argmax's: tuning never makes the filter worse than argmax on dev. Precision and recall
targets are the user's explicit request and are kept per label as asked.
"""

from typing import Any, Dict, List, Optional, Sequence

import numpy
from spacy.language import Language

from ..errors import DistillError
from ..filter.decision import ALLOW, DecisionRule
from ..pipeline.meta import (
    stored_actions,
    stored_cascade,
    stored_default_action,
    stored_thresholds,
    write_actions,
    write_cascade,
    write_thresholds,
)

OBJECTIVES = ("f1", "precision", "recall")


def threshold_curve(gold: numpy.ndarray, probs: numpy.ndarray) -> Dict[str, numpy.ndarray]:
    """Precision, recall and F1 of `probs >= t` for every distinct score t (one label).

    gold (numpy.ndarray): (n,) 0/1 gold values (no NaN).
    probs (numpy.ndarray): (n,) probabilities of the label.
    RETURNS (Dict[str, numpy.ndarray]): thresholds (descending distinct scores) with
        precision, recall and f1, and `cut`: a threshold halfway to the next lower score (0
        below the lowest) that makes the same decisions with a margin.
    """
    order = numpy.argsort(-probs, kind="stable")
    p_sorted, y_sorted = probs[order], gold[order]
    # The last index of each distinct score: predicting "p >= t" includes all ties of t.
    distinct = numpy.flatnonzero(numpy.r_[p_sorted[1:] != p_sorted[:-1], True])
    tp = numpy.cumsum(y_sorted)[distinct]
    predicted = distinct + 1
    positives = y_sorted.sum()
    precision = tp / predicted
    recall = tp / positives if positives > 0 else numpy.zeros_like(tp, dtype="float64")
    with numpy.errstate(divide="ignore", invalid="ignore"):
        f1 = numpy.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    thresholds = p_sorted[distinct]
    # A cut halfway to the next lower score survives float rounding (meta.json keeps ~10
    # digits) and sits in the gap between the dev scores rather than on one of them.
    cut = (thresholds + numpy.r_[thresholds[1:], 0.0]) / 2
    return {
        "thresholds": thresholds,
        "cut": cut,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def tune_thresholds(
    gold: numpy.ndarray,
    probs: numpy.ndarray,
    labels: Sequence[str],
    *,
    objective: str = "f1",
    value: Optional[float] = None,
) -> Dict[str, Dict[str, Any]]:
    """Choose a threshold per label (one label against the rest).

    gold (numpy.ndarray): (n, L) 0/1 gold, NaN where unknown.
    probs (numpy.ndarray): (n, L) probabilities.
    labels (Sequence[str]): the label names.
    objective (str): "f1" (best F1), "precision" (precision >= value with the best recall) or
        "recall" (recall >= value with the best precision).
    value (Optional[float]): the target of "precision" / "recall".
    RETURNS (Dict[str, Dict[str, Any]]): per label: threshold, precision, recall, f1, met
        (whether the target was reached on this data) and support.
    """
    if objective not in OBJECTIVES:
        raise DistillError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective != "f1" and (value is None or not 0.0 <= value <= 1.0):
        raise DistillError(f"objective {objective!r} needs a target value in [0, 1], got {value!r}")
    chosen: Dict[str, Dict[str, Any]] = {}
    for j, label in enumerate(labels):
        known = ~numpy.isnan(gold[:, j])
        y, p = gold[known, j], probs[known, j]
        if y.sum() == 0:
            chosen[label] = {
                "threshold": None,
                "precision": None,
                "recall": None,
                "f1": None,
                "met": False,
                "support": 0,
            }
            continue
        curve = threshold_curve(y, p)
        if objective == "f1":
            candidates = numpy.arange(len(curve["f1"]))
            met = True
            best = candidates[numpy.argmax(curve["f1"])]
        else:
            reached = curve[objective] >= value - 1e-12
            met = bool(reached.any())
            other = "recall" if objective == "precision" else "precision"
            if met:
                # Among thresholds that reach the target, the one best on the other measure.
                candidates = numpy.flatnonzero(reached)
                best = candidates[numpy.argmax(curve[other][candidates])]
            else:
                best = int(numpy.argmax(curve[objective]))
        chosen[label] = {
            "threshold": float(curve["cut"][best]),
            "precision": float(curve["precision"][best]),
            "recall": float(curve["recall"][best]),
            "f1": float(curve["f1"][best]),
            "met": met,
            "support": int(y.sum()),
        }
    return chosen


def decision_quality(
    gold: numpy.ndarray, probs: numpy.ndarray, rule: DecisionRule
) -> Dict[str, Any]:
    """Accuracy and macro-F1 of a rule's decisions (the labels it keeps) on docs with gold.

    gold (numpy.ndarray): (n, L) 0/1, NaN where unknown (rows with any NaN are left out).
    probs (numpy.ndarray): (n, L) probabilities in the rule's label order.
    rule (DecisionRule): the decision rule.
    RETURNS (Dict[str, Any]): n, accuracy (exclusive: the kept label is the gold one, a doc with
        no label kept is wrong; multi-label: the exact label set), macro_f1 over labels and
        no_label_rate (docs that kept no label).
    """
    known = ~numpy.isnan(gold).any(axis=1)
    if not known.any():
        return {"n": 0, "accuracy": None, "macro_f1": None, "no_label_rate": None}
    truth = gold[known] >= 0.5
    kept = rule.kept(probs[known])
    correct = (kept & truth).any(axis=1) if rule.exclusive else (kept == truth).all(axis=1)
    tp = (kept & truth).sum(axis=0)
    fp = (kept & ~truth).sum(axis=0)
    fn = (~kept & truth).sum(axis=0)
    with numpy.errstate(divide="ignore", invalid="ignore"):
        f1 = numpy.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return {
        "n": int(known.sum()),
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1.mean()),
        "no_label_rate": float((~kept.any(axis=1)).mean()),
    }


def select_exclusive_thresholds(
    gold: numpy.ndarray,
    probs: numpy.ndarray,
    labels: Sequence[str],
    candidates: Dict[str, Optional[float]],
    *,
    actions: Optional[Dict[str, str]] = None,
    default_action: str = ALLOW,
) -> Dict[str, Any]:
    """Which of the per-label thresholds to keep for exclusive classes: the subset whose
    decisions have the best macro-F1 while their accuracy stays at or above the argmax's (the
    empty subset, the argmax itself, if none does better).

    Subsets are searched by hill-climbing (add or drop one label's threshold at a time) from
    both ends, no thresholds and all of them: thresholds interact through the exclusive choice
    (binary labels need both or neither), so neither end alone finds the best.

    candidates (Dict[str, Optional[float]]): label -> its one-vs-rest threshold (None: none).
    actions, default_action: the filter's, whose precedence the decisions follow.
    RETURNS (Dict[str, Any]): thresholds (the kept ones), argmax and tuned decision_quality,
        and rejected (labels whose threshold did not help).
    """
    usable = {label: t for label, t in candidates.items() if t is not None}
    cache: Dict[frozenset, Dict[str, Any]] = {}

    def quality(subset: frozenset) -> Dict[str, Any]:
        if subset not in cache:
            thresholds = {label: usable[label] for label in subset}
            cache[subset] = decision_quality(
                gold, probs, DecisionRule(labels, True, thresholds, actions, default_action)
            )
        return cache[subset]

    argmax = quality(frozenset())
    if not argmax["n"]:
        return {"thresholds": {}, "argmax": argmax, "tuned": argmax, "rejected": sorted(usable)}

    def rank(subset: frozenset):
        q = quality(subset)
        if q["accuracy"] < argmax["accuracy"] - 1e-12:
            return None
        # Ties go to fewer thresholds: the argmax unless a threshold earns its place.
        return (round(q["macro_f1"], 12), round(q["accuracy"], 12), -len(subset))

    best = frozenset()
    for start in (frozenset(), frozenset(usable)):
        current = start if rank(start) is not None else frozenset()
        while True:
            moves = [current ^ {label} for label in usable]
            ranked = [(rank(m), m) for m in moves if rank(m) is not None]
            if not ranked:
                break
            top_rank, top = max(ranked, key=lambda item: item[0])
            if top_rank <= rank(current):
                break
            current = top
        if rank(current) > rank(best):
            best = current
    return {
        "thresholds": {label: usable[label] for label in sorted(best)},
        "argmax": argmax,
        "tuned": quality(best),
        "rejected": sorted(set(usable) - best),
    }


def save_thresholds(
    nlp: Language,
    chosen: Dict[str, Dict[str, Any]],
    *,
    objective: str,
    value: Optional[float],
    data: str,
    decisions: Optional[Dict[str, Any]] = None,
) -> None:
    """Store tuned thresholds in `nlp.meta` (written to meta.json by `nlp.to_disk`), with how
    the decisions compared with the argmax on the tuning data (`decisions`)."""
    thresholds = {
        label: info["threshold"] for label, info in chosen.items() if info["threshold"] is not None
    }
    tuning = {
        "objective": objective,
        "value": value,
        "data": data,
        "per_label": chosen,
        "decisions": decisions,
    }
    write_thresholds(nlp.meta, thresholds, tuning)


def save_actions(nlp: Language, actions: Dict[str, str], default_action: str) -> None:
    """Store the filter actions the thresholds were tuned for (read by the exported filter)."""
    write_actions(nlp.meta, actions, default_action)


def get_actions(nlp: Language) -> Dict[str, Any]:
    """The stored filter actions: {"actions": {...}, "default_action": str} (empty if none)."""
    actions = stored_actions(nlp.meta)
    if actions is None:
        return {}
    return {"actions": actions, "default_action": stored_default_action(nlp.meta) or ALLOW}


def get_thresholds(nlp: Language) -> Dict[str, float]:
    """The tuned thresholds stored with a pipeline (empty if it was never tuned)."""
    return stored_thresholds(nlp.meta)


def save_cascade(
    nlp: Language, band: Dict[str, Any], *, objective: str, value: float, data: str
) -> None:
    """Store the cascade band (`margin`, read by `semantic_filter`) and how it was chosen."""
    write_cascade(nlp.meta, band["margin"], objective=objective, value=value, data=data, dev=band)


def get_cascade(nlp: Language) -> Dict[str, Any]:
    """The cascade band stored with a pipeline (empty if none was tuned)."""
    return stored_cascade(nlp.meta)


def unmet_targets(chosen: Dict[str, Dict[str, Any]]) -> List[str]:
    """Labels whose target was not reached."""
    return [label for label, info in chosen.items() if not info["met"]]
