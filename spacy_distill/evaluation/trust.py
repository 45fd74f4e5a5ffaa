"""How far to trust the teacher, per label, from its outputs on data with gold.

A teacher can be blind on a class (a MiniLM trained for a fixed 300 steps never predicted a
76-example class, nor hate speech), and a student distilled from it copies the blindness:
distillation then ends *below* a gold-only student. Before distilling, the teacher's outputs
that `annotate` stored for dev docs that have gold tell, per label, how good it is; this module
turns them into a report (per-label precision, recall, F1 and support), warnings for the labels
where the teacher is weak, and a trust per label (its F1) for `spacy-distill.SoftTargetLoss.v2`,
which scales alpha by the trust of each doc's gold label.
"""

from pathlib import Path
from typing import Any, Dict, List, Union

import numpy

from ..arguments import check_float_argument
from ..data.targets import read_target_summary
from ..errors import DistillError

# Below this dev F1 a label's teacher is reported as weak.
WEAK_F1 = 0.5


def teacher_quality(path: Union[str, Path]) -> Dict[str, Any]:
    """The teacher's per-label quality on the docs of a target file that have gold.

    path (Union[str, Path]): a target file (or directory) with teacher outputs and gold cats.
    RETURNS (Dict[str, Any]): labels, exclusive, n (docs with both), accuracy (exclusive), and
        per_label {label: precision, recall, f1, support, predicted}.
    """
    from .data import load_evaluation_data

    summary = read_target_summary(path)
    labels, exclusive = summary["labels"], bool(summary["exclusive"])
    data = load_evaluation_data(path, labels, exclusive=exclusive)
    if data.teacher_probs is None:
        raise DistillError(f"{path}: holds no teacher outputs; annotate it with the teacher first")
    both = ~numpy.isnan(data.gold).any(axis=1)
    if not both.any():
        raise DistillError(
            f"{path}: no doc has gold labels, so the teacher cannot be checked against them"
        )
    gold = data.gold[both] >= 0.5
    probs = data.teacher_probs[both]
    if exclusive:
        predicted = numpy.zeros_like(gold)
        predicted[numpy.arange(len(probs)), probs.argmax(axis=1)] = True
    else:
        predicted = probs >= 0.5
    per_label: Dict[str, Dict[str, float]] = {}
    for j, label in enumerate(labels):
        tp = float((predicted[:, j] & gold[:, j]).sum())
        n_pred, n_gold = float(predicted[:, j].sum()), float(gold[:, j].sum())
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(n_gold),
            "predicted": int(n_pred),
        }
    result: Dict[str, Any] = {
        "labels": labels,
        "exclusive": exclusive,
        "n": int(both.sum()),
        "per_label": per_label,
    }
    if exclusive:
        result["accuracy"] = float((predicted & gold).any(axis=1).mean())
    return result


def weak_labels(quality: Dict[str, Any], threshold: float = WEAK_F1) -> List[str]:
    """Labels (with gold support) whose teacher F1 is below `threshold`.

    quality (Dict[str, Any]): the report of `teacher_quality`.
    threshold (float): the F1 below which a label is weak, in [0, 1].
    RETURNS (List[str]): the weak labels.
    """
    # An F1 lies in [0, 1]: a threshold outside it would call every label weak, or none.
    check_float_argument("threshold", threshold, 0.0, 1.0)
    return [
        label for label, q in quality["per_label"].items() if q["support"] and q["f1"] < threshold
    ]


def label_trust(quality: Dict[str, Any]) -> Dict[str, float]:
    """Trust per label for `SoftTargetLoss.v2`: the teacher's F1 on it (1.0 without support:
    nothing says the teacher is wrong there)."""
    return {
        label: (round(q["f1"], 4) if q["support"] else 1.0)
        for label, q in quality["per_label"].items()
    }


__all__ = ["WEAK_F1", "label_trust", "teacher_quality", "weak_labels"]
