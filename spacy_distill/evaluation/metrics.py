"""Metrics that score one model against gold, and how much of the teacher's score a student keeps.

All functions take dense arrays, one row per doc and one column per label, in the order of
`labels` (gold with NaN where unknown, probabilities of one model: see
`spacy_distill.evaluation.inputs`). Precision, recall, F1, accuracy, ROC-AUC and confusion counts
come from scikit-learn (imported when first needed), on the cells whose gold is known, with
`zero_division=0`: a label that is never predicted has precision 0.0, a label absent from gold
has recall 0.0 and support 0, and both still count in the macro averages. `calibration` stays
numpy (scikit-learn has no expected calibration error, and `spacy_distill.training.calibration` reads it
on the core install). Results hold plain Python floats, ints and None, so they can be written
as JSON directly.

The teacher-vs-student metrics live in `teacher_metrics` and are re-exported here.
"""

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy

from .inputs import (
    Threshold,
    check_gold_values,
    check_pair,
    decisions,
    exclusive_gold_rows,
    known_cells,
)
from .teacher_metrics import agreement, mean_kl, teacher_bias_audit

__all__ = [
    "Threshold",
    "agreement",
    "calibration",
    "classification_metrics",
    "confusion_matrix",
    "decisions",
    "mean_kl",
    "retention",
    "teacher_bias_audit",
]


def classification_metrics(
    gold: Any,
    probs: Any,
    labels: Sequence[str],
    *,
    exclusive: bool,
    threshold: Threshold = 0.5,
) -> Dict[str, Any]:
    """Gold-label metrics of one model over the docs that have gold.

    gold (array-like): (n, L) 0/1 gold values, NaN where unknown.
    probs (array-like): (n, L) probabilities of the model.
    labels (Sequence[str]): the L label names.
    exclusive (bool): whether the labels are mutually exclusive.
    threshold (float, Dict[str, float] or array-like): multi-label decision threshold.
    RETURNS (Dict[str, Any]): n_docs (docs with gold; multi-label: with at least one known
        label), accuracy (exclusive: argmax equals the gold label; multi-label: exact match over
        the docs whose whole row is known, None if there are none), label_accuracy (share of
        correct known (doc, label) decisions; exclusive: equal to accuracy), macro_f1,
        micro_f1, macro_precision, macro_recall, per_label ({label: {precision, recall, f1,
        support}}), roc_auc and per_label_auc ({label: float or None}). per_label_auc is
        one-vs-rest over the docs (multi-label: the cells) whose gold is known, None where
        only one class is present. roc_auc is, for exclusive binary labels, the AUC of
        `labels[1]` as the positive class (order the labels so that the positive one comes
        second); otherwise the macro mean of the per-label AUCs that exist, None if none does.
        With exclusive labels micro_f1 equals accuracy. Scores are None when no doc has gold.
    """
    labels = list(labels)
    gold, probs = check_pair("gold", gold, "probs", probs, labels)
    known, y, pred = known_cells(gold, probs, labels, exclusive, threshold)
    n_docs = int(known.any(axis=1).sum())
    if n_docs == 0:
        return {
            "n_docs": 0,
            "accuracy": None,
            "label_accuracy": None,
            "macro_f1": None,
            "micro_f1": None,
            "macro_precision": None,
            "macro_recall": None,
            "per_label": {
                label: {"precision": None, "recall": None, "f1": None, "support": 0}
                for label in labels
            },
            "roc_auc": None,
            "per_label_auc": {label: None for label in labels},
        }
    sk = _sklearn_metrics()
    per_label: Dict[str, Dict[str, Any]] = {}
    per_label_auc: Dict[str, Optional[float]] = {}
    for i, label in enumerate(labels):
        # Unknown cells count as neither right nor wrong: each label is scored on its known cells.
        yi, pi, si = y[known[:, i], i], pred[known[:, i], i], probs[known[:, i], i]
        precision = recall = f1 = 0.0
        if yi.size:
            precision, recall, f1, _ = sk.precision_recall_fscore_support(
                yi, pi, average="binary", pos_label=1, zero_division=0
            )
        per_label[label] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(yi.sum()),
        }
        # AUC needs both classes; with one, it is undefined (sklearn raises).
        has_both = 0 < int(yi.sum()) < yi.size
        per_label_auc[label] = float(sk.roc_auc_score(yi, si)) if has_both else None
    # Pooling every known (doc, label) decision gives the micro average (exclusive: accuracy).
    micro_f1 = sk.f1_score(y[known], pred[known], average="binary", pos_label=1, zero_division=0)
    label_accuracy = float(sk.accuracy_score(y[known], pred[known]))
    if exclusive:
        rows = known[:, 0]
        accuracy: Optional[float] = float(sk.accuracy_score(y[rows], pred[rows]))
        label_accuracy = accuracy
    else:
        full = known.all(axis=1)
        # On indicator rows accuracy_score is the exact-match (subset) accuracy.
        accuracy = float(sk.accuracy_score(y[full], pred[full])) if full.any() else None
    if exclusive and len(labels) == 2:
        roc_auc = per_label_auc[labels[1]]
    else:
        aucs = [auc for auc in per_label_auc.values() if auc is not None]
        roc_auc = float(numpy.mean(aucs)) if aucs else None
    return {
        "n_docs": n_docs,
        "accuracy": accuracy,
        "label_accuracy": label_accuracy,
        "macro_f1": float(numpy.mean([row["f1"] for row in per_label.values()])),
        "micro_f1": float(micro_f1),
        "macro_precision": float(numpy.mean([row["precision"] for row in per_label.values()])),
        "macro_recall": float(numpy.mean([row["recall"] for row in per_label.values()])),
        "per_label": per_label,
        "roc_auc": roc_auc,
        "per_label_auc": per_label_auc,
    }


def confusion_matrix(
    gold: Any,
    probs: Any,
    labels: Sequence[str],
    *,
    exclusive: bool,
    threshold: Threshold = 0.5,
) -> Dict[str, Any]:
    """Confusion counts of one model over the docs (or, multi-label, cells) with gold.

    gold (array-like): (n, L) 0/1 gold values, NaN where unknown.
    probs (array-like): (n, L) probabilities of the model.
    labels (Sequence[str]): the L label names.
    exclusive (bool): whether the labels are mutually exclusive.
    threshold (float, Dict[str, float] or array-like): multi-label decision threshold.
    RETURNS (Dict[str, Any]): exclusive: {"labels", "matrix"}, matrix an L x L list of ints
        with rows = gold label and columns = predicted label; multi-label: {"labels",
        "per_label": {label: [[tn, fp], [fn, tp]]}} (scikit-learn's layout).
    """
    labels = list(labels)
    gold, probs = check_pair("gold", gold, "probs", probs, labels)
    known, y, pred = known_cells(gold, probs, labels, exclusive, threshold)
    sk = _sklearn_metrics()
    if exclusive:
        rows = known[:, 0]
        n_labels = len(labels)
        if not rows.any():  # sklearn refuses empty input
            return {"labels": labels, "matrix": [[0] * n_labels for _ in range(n_labels)]}
        matrix = sk.confusion_matrix(
            y[rows].argmax(axis=1), pred[rows].argmax(axis=1), labels=list(range(n_labels))
        )
        return {"labels": labels, "matrix": matrix.astype("int64").tolist()}
    per_label = {}
    for i, label in enumerate(labels):
        yi, pi = y[known[:, i], i], pred[known[:, i], i]
        counts = sk.confusion_matrix(yi, pi, labels=[0, 1]) if yi.size else numpy.zeros((2, 2))
        per_label[label] = counts.astype("int64").tolist()
    return {"labels": labels, "per_label": per_label}


def calibration(gold: Any, probs: Any, *, exclusive: bool, n_bins: int = 10) -> Dict[str, Any]:
    """Expected calibration error, Brier score and a reliability table.

    gold (array-like): (n, L) 0/1 gold values, NaN where unknown.
    probs (array-like): (n, L) probabilities of the model.
    exclusive (bool): exclusive labels are scored by the top-label confidence against whether
        the argmax is right, per doc with gold; multi-label scores every known (doc, label)
        cell as a binary prediction p of the gold value.
    n_bins (int): the number of equal-width bins on [0, 1]. Bin i holds the confidences in
        (i / n_bins, (i + 1) / n_bins], the first also 0.0 (as scikit-learn's
        `calibration_curve`).
    RETURNS (Dict[str, Any]): n (docs, or multi-label: cells, scored), ece (sum over bins of
        count / n * |accuracy - confidence|), brier (exclusive: mean over docs of the sum over
        labels of (p - y)^2; multi-label: mean over known cells of (p - y)^2) and bins, a list
        of {lo, hi, count, confidence, accuracy} per bin (confidence and accuracy are the
        bin's means, None for an empty bin). ece and brier are None when n is 0.
    """
    gold, probs = check_pair("gold", gold, "probs", probs)
    if not isinstance(n_bins, (int, numpy.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    check_gold_values(gold)
    if exclusive:
        rows = exclusive_gold_rows(gold)
        y, p = gold[rows], probs[rows]
        confidence = p.max(axis=1)
        correct = (p.argmax(axis=1) == y.argmax(axis=1)).astype("float64")
        squared = ((p - y) ** 2).sum(axis=1)
    else:
        known = ~numpy.isnan(gold)
        confidence, correct = probs[known], gold[known]
        squared = (confidence - correct) ** 2
    n = int(confidence.shape[0])
    edges = numpy.linspace(0.0, 1.0, n_bins + 1)
    bin_ids = numpy.searchsorted(edges[1:-1], confidence, side="left")
    bins: List[Dict[str, Any]] = []
    ece = 0.0
    for b in range(n_bins):
        in_bin = bin_ids == b
        count = int(in_bin.sum())
        conf = float(confidence[in_bin].mean()) if count else None
        acc = float(correct[in_bin].mean()) if count else None
        if count:
            ece += count / n * abs(acc - conf)  # type: ignore[operator]
        bins.append(
            {
                "lo": float(edges[b]),
                "hi": float(edges[b + 1]),
                "count": count,
                "confidence": conf,
                "accuracy": acc,
            }
        )
    return {
        "n": n,
        "ece": float(ece) if n else None,
        "brier": float(squared.mean()) if n else None,
        "bins": bins,
    }


def retention(
    student: Mapping[str, Any],
    teacher: Mapping[str, Any],
    keys: Iterable[str] = ("accuracy", "macro_f1", "roc_auc"),
) -> Dict[str, Optional[float]]:
    """How much of the teacher's score the student keeps.

    student (Mapping[str, Any]): the student's scores, e.g. from `classification_metrics`.
    teacher (Mapping[str, Any]): the teacher's scores on the same docs.
    keys (Iterable[str]): the scores to compare.
    RETURNS (Dict[str, Optional[float]]): student[key] / teacher[key] per key; None where
        either score is missing or None, or the teacher's score is not > 0.
    """
    out: Dict[str, Optional[float]] = {}
    for key in keys:
        s, t = student.get(key), teacher.get(key)
        out[key] = float(s) / float(t) if s is not None and t is not None and t > 0 else None
    return out


def _sklearn_metrics():
    """sklearn.metrics, imported on first use so that `import spacy_distill` does not load it."""
    try:
        from sklearn import metrics
    except ImportError as err:  # pragma: no cover - scikit-learn is a dependency of evaluation
        raise ImportError(
            "spacy-distill's evaluation metrics need scikit-learn: pip install scikit-learn"
        ) from err
    return metrics
