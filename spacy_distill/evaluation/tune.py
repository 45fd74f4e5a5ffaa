"""Per-label decision thresholds for a target the user chooses, stored with the pipeline.

The thresholds live in the pipeline's `meta.json` under `spacy_distill.thresholds`
(label -> threshold: decide the label when its probability >= threshold), where the
`semantic_filter` runtime reads them; `get_thresholds(nlp)` returns them.
"""
from typing import Any, Dict, List, Optional, Sequence

import numpy
from spacy.language import Language

from ..errors import DistillError

OBJECTIVES = ("f1", "precision", "recall")
META_KEY = "spacy_distill"


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
    return {"thresholds": thresholds, "cut": cut, "precision": precision, "recall": recall, "f1": f1}


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
            chosen[label] = {"threshold": None, "precision": None, "recall": None, "f1": None,
                             "met": False, "support": 0}
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


def save_thresholds(
    nlp: Language, chosen: Dict[str, Dict[str, Any]], *, objective: str, value: Optional[float], data: str
) -> None:
    """Store tuned thresholds in `nlp.meta` (written to meta.json by `nlp.to_disk`)."""
    section = dict(nlp.meta.get(META_KEY) or {})
    section["thresholds"] = {
        label: info["threshold"] for label, info in chosen.items() if info["threshold"] is not None
    }
    section["threshold_tuning"] = {
        "objective": objective,
        "value": value,
        "data": data,
        "per_label": chosen,
    }
    nlp.meta[META_KEY] = section


def get_thresholds(nlp: Language) -> Dict[str, float]:
    """The tuned thresholds stored with a pipeline (empty if it was never tuned)."""
    return dict((nlp.meta.get(META_KEY) or {}).get("thresholds") or {})


def save_cascade(nlp: Language, band: Dict[str, Any], *, objective: str, value: float, data: str) -> None:
    """Store the cascade band (`margin`, read by `semantic_filter`) and how it was chosen."""
    section = dict(nlp.meta.get(META_KEY) or {})
    section["cascade"] = {"margin": band["margin"], "objective": objective, "value": value, "data": data, "dev": band}
    nlp.meta[META_KEY] = section


def get_cascade(nlp: Language) -> Dict[str, Any]:
    """The cascade band stored with a pipeline (empty if none was tuned)."""
    return dict((nlp.meta.get(META_KEY) or {}).get("cascade") or {})


def unmet_targets(chosen: Dict[str, Dict[str, Any]]) -> List[str]:
    """Labels whose target was not reached."""
    return [label for label, info in chosen.items() if not info["met"]]
