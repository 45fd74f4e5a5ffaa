"""Metrics that compare a distilled student and its teacher on the same texts.

Pure numpy, so that evaluation needs neither spaCy nor scikit-learn at runtime. All functions
take dense arrays, one row per doc and one column per label, in the order of `labels`:

    gold (n, L):   0/1 floats, NaN where the gold value is unknown. A doc without gold is a
                   NaN row; a multi-label doc may leave single labels NaN. An exclusive doc
                   counts as gold only if its whole row is known (exactly one 1.0).
    probs (n, L):  probabilities of one model (rows sum to 1 if the labels are exclusive).

Decisions follow spaCy's textcat: exclusive labels take the argmax (ties go to the lowest
label index, as `numpy.argmax`), multi-label decisions are `p >= threshold`. Precision,
recall and F1 follow scikit-learn's `zero_division=0` convention: a label that is never
predicted has precision 0.0, a label absent from gold has recall 0.0 and support 0, and both
still count in the macro averages. Results hold plain Python floats, ints and None, so they
can be written as JSON directly.
"""
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy

Threshold = Union[float, Mapping[str, float], Sequence[float], numpy.ndarray]


def decisions(
    probs: Any,
    exclusive: bool,
    threshold: Threshold = 0.5,
    *,
    labels: Optional[Sequence[str]] = None,
) -> numpy.ndarray:
    """The 0/1 decisions of a model.

    probs (array-like): (n, L) probabilities.
    exclusive (bool): one-hot argmax per row (ties go to the lowest index) if True, else one
        `p >= threshold` decision per label.
    threshold (float, Dict[str, float] or array-like): the multi-label decision threshold, one
        for all labels, per label name (needs `labels`) or per column; ignored if exclusive.
    labels (Optional[Sequence[str]]): the label names, needed only for a dict threshold.
    RETURNS (numpy.ndarray): (n, L) int array of 0/1 decisions.
    """
    probs = _check_probs("probs", probs)
    n_labels = probs.shape[1]
    if exclusive:
        out = numpy.zeros(probs.shape, dtype="int64")
        if probs.shape[0] and n_labels:
            out[numpy.arange(probs.shape[0]), probs.argmax(axis=1)] = 1
        return out
    thresholds = _thresholds(threshold, n_labels, labels)
    return (probs >= thresholds[None, :]).astype("int64")


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
    gold, probs = _check_pair("gold", gold, "probs", probs, labels)
    known, y, pred = _known_cells(gold, probs, labels, exclusive, threshold)
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
    # Unknown cells count as neither right nor wrong: mask them out of every count.
    tp = ((pred == 1) & (y == 1) & known).sum(axis=0)
    fp = ((pred == 1) & (y == 0) & known).sum(axis=0)
    fn = ((pred == 0) & (y == 1) & known).sum(axis=0)
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    per_label = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(tp[i] + fn[i]),
        }
        for i, label in enumerate(labels)
    }
    correct = (pred == y) & known
    label_accuracy = float(correct.sum() / known.sum())
    if exclusive:
        accuracy: Optional[float] = float(correct.all(axis=1)[known[:, 0]].mean())
        label_accuracy = accuracy
    else:
        full = known.all(axis=1)
        accuracy = float(correct[full].all(axis=1).mean()) if full.any() else None
    per_label_auc = {
        label: _roc_auc(y[known[:, i], i], probs[known[:, i], i]) for i, label in enumerate(labels)
    }
    if exclusive and len(labels) == 2:
        roc_auc = per_label_auc[labels[1]]
    else:
        aucs = [auc for auc in per_label_auc.values() if auc is not None]
        roc_auc = float(numpy.mean(aucs)) if aucs else None
    micro_tp, micro_fp, micro_fn = int(tp.sum()), int(fp.sum()), int(fn.sum())
    return {
        "n_docs": n_docs,
        "accuracy": accuracy,
        "label_accuracy": label_accuracy,
        "macro_f1": float(f1.mean()),
        "micro_f1": float(_safe_div(2 * micro_tp, 2 * micro_tp + micro_fp + micro_fn)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
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
    gold, probs = _check_pair("gold", gold, "probs", probs, labels)
    known, y, pred = _known_cells(gold, probs, labels, exclusive, threshold)
    if exclusive:
        rows = known[:, 0]
        n_labels = len(labels)
        matrix = numpy.zeros((n_labels, n_labels), dtype="int64")
        numpy.add.at(matrix, (y[rows].argmax(axis=1), pred[rows].argmax(axis=1)), 1)
        return {"labels": labels, "matrix": matrix.tolist()}
    per_label = {}
    for i, label in enumerate(labels):
        yi, pi = y[known[:, i], i], pred[known[:, i], i]
        per_label[label] = [
            [int(((yi == 0) & (pi == 0)).sum()), int(((yi == 0) & (pi == 1)).sum())],
            [int(((yi == 1) & (pi == 0)).sum()), int(((yi == 1) & (pi == 1)).sum())],
        ]
    return {"labels": labels, "per_label": per_label}


def agreement(
    student_probs: Any,
    teacher_probs: Any,
    labels: Sequence[str],
    *,
    exclusive: bool,
    threshold: Threshold = 0.5,
    teacher_threshold: Optional[Threshold] = None,
) -> Dict[str, Any]:
    """How often the student decides as the teacher does, over all docs (gold is not needed).

    student_probs (array-like): (n, L) probabilities of the student.
    teacher_probs (array-like): (n, L) probabilities of the teacher.
    labels (Sequence[str]): the L label names.
    exclusive (bool): whether the labels are mutually exclusive.
    threshold (float, Dict[str, float] or array-like): multi-label decision threshold.
    teacher_threshold (Optional[...]): the teacher's threshold if it differs; defaults to
        `threshold`.
    RETURNS (Dict[str, Any]): n_docs; argmax (exclusive: share of docs with the same argmax;
        multi-label: share of docs whose whole decision vector agrees); per_label ({label:
        share of docs where both make the same decision for that label}). Shares are None
        when there are no docs.
    """
    labels = list(labels)
    student_probs, teacher_probs = _check_pair(
        "student_probs", student_probs, "teacher_probs", teacher_probs, labels
    )
    same = _decide(student_probs, exclusive, threshold, labels) == _decide(
        teacher_probs, exclusive, _or(teacher_threshold, threshold), labels
    )
    n_docs = same.shape[0]
    if n_docs == 0:
        return {"n_docs": 0, "argmax": None, "per_label": {label: None for label in labels}}
    return {
        "n_docs": int(n_docs),
        "argmax": float(same.all(axis=1).mean()),
        "per_label": {label: float(same[:, i].mean()) for i, label in enumerate(labels)},
    }


def mean_kl(
    teacher_probs: Any, student_probs: Any, *, exclusive: bool, eps: float = 1e-7
) -> Optional[float]:
    """Mean over docs of KL(teacher || student), the divergence distillation minimises.

    teacher_probs (array-like): (n, L) probabilities of the teacher.
    student_probs (array-like): (n, L) probabilities of the student.
    exclusive (bool): categorical KL per doc (True) or, per doc, the sum over labels of the
        Bernoulli KL of each label (False).
    eps (float): inside the logarithms, teacher and student probabilities are clipped to
        [eps, 1] and renormalised (exclusive) or clipped to [eps, 1 - eps] (multi-label), so
        that a confident zero gives a large but finite divergence. The terms are weighted by
        the unclipped teacher probabilities (a teacher zero contributes 0), so the result is
        exact when no probability is below eps.
    RETURNS (Optional[float]): the mean KL in nats; None when there are no docs.
    """
    teacher, student = _check_pair("teacher_probs", teacher_probs, "student_probs", student_probs)
    if teacher.shape[0] == 0:
        return None
    # Teacher and student are clipped alike, so that KL(p || p) is exactly 0; the weights stay
    # the unclipped teacher probabilities, so a teacher zero contributes nothing.
    if exclusive:
        p_log = _clipped_log_categorical(teacher, eps)
        q_log = _clipped_log_categorical(student, eps)
        kl = (teacher * (p_log - q_log)).sum(axis=1)
    else:
        p = numpy.clip(teacher, eps, 1.0 - eps)
        q = numpy.clip(student, eps, 1.0 - eps)
        kl = (
            teacher * (numpy.log(p) - numpy.log(q))
            + (1.0 - teacher) * (numpy.log1p(-p) - numpy.log1p(-q))
        ).sum(axis=1)
    # Clipping can leave a divergence a rounding error below 0.
    kl = numpy.maximum(kl, 0.0)
    return float(kl.mean())


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
    gold, probs = _check_pair("gold", gold, "probs", probs)
    if not isinstance(n_bins, (int, numpy.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    _check_gold_values(gold)
    if exclusive:
        rows = _exclusive_gold_rows(gold)
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


def teacher_bias_audit(
    gold: Any,
    teacher_probs: Any,
    student_probs: Any,
    *,
    exclusive: bool,
    threshold: Threshold = 0.5,
    labels: Optional[Sequence[str]] = None,
    teacher_threshold: Optional[Threshold] = None,
) -> Dict[str, Any]:
    """Whether the student inherits the teacher's mistakes, measured against gold.

    gold (array-like): (n, L) 0/1 gold values, NaN where unknown.
    teacher_probs (array-like): (n, L) probabilities of the teacher.
    student_probs (array-like): (n, L) probabilities of the student.
    exclusive (bool): audit each doc's argmax (True) or each known (doc, label) decision.
    threshold (float, Dict[str, float] or array-like): multi-label decision threshold.
    labels (Optional[Sequence[str]]): label names, needed only for a dict threshold.
    teacher_threshold (Optional[...]): the teacher's threshold if it differs; defaults to
        `threshold`.
    RETURNS (Dict[str, Any]): n (docs or cells audited); teacher_wrong (count);
        student_copies_teacher_error (share of those where the student makes the same wrong
        decision); student_right_where_teacher_wrong (share of those where the student is
        right; with 3+ exclusive labels the two shares need not add up to 1, as the student
        can be wrong differently); teacher_right (count); student_loses (share of those where
        the student is wrong). Shares are None when their count is 0.
    """
    gold, teacher = _check_pair("gold", gold, "teacher_probs", teacher_probs, labels)
    _, student = _check_pair("gold", gold, "student_probs", student_probs, labels)
    _check_gold_values(gold)
    t_pred = _decide(teacher, exclusive, _or(teacher_threshold, threshold), labels)
    s_pred = _decide(student, exclusive, threshold, labels)
    if exclusive:
        rows = _exclusive_gold_rows(gold)
        y = gold[rows].argmax(axis=1)
        t, s = t_pred[rows].argmax(axis=1), s_pred[rows].argmax(axis=1)
    else:
        known = ~numpy.isnan(gold)
        y, t, s = gold[known].astype("int64"), t_pred[known], s_pred[known]
    teacher_wrong = t != y
    n_wrong = int(teacher_wrong.sum())
    n_right = int((~teacher_wrong).sum())
    return {
        "n": int(y.shape[0]),
        "teacher_wrong": n_wrong,
        "student_copies_teacher_error": _share((s == t)[teacher_wrong]),
        "student_right_where_teacher_wrong": _share((s == y)[teacher_wrong]),
        "teacher_right": n_right,
        "student_loses": _share((s != y)[~teacher_wrong]),
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


# Helpers


def _check_2d(name: str, value: Any) -> numpy.ndarray:
    try:
        array = numpy.asarray(value, dtype="float64")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric (n_docs, n_labels) array: {err}") from None
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-d (n_docs, n_labels) array, got shape {array.shape}."
        )
    if array.shape[1] == 0:
        raise ValueError(f"{name} must have at least one label column, got shape {array.shape}.")
    return array


def _check_probs(name: str, value: Any) -> numpy.ndarray:
    array = _check_2d(name, value)
    if not numpy.isfinite(array).all():
        bad = numpy.argwhere(~numpy.isfinite(array))[0]
        raise ValueError(
            f"{name} must be finite, but row {bad[0]}, column {bad[1]} is {array[tuple(bad)]}."
        )
    # A little slack for float32 softmax outputs that land just outside [0, 1].
    if array.size and (array.min() < -1e-6 or array.max() > 1 + 1e-6):
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], got values in "
            f"[{array.min()}, {array.max()}]; apply softmax/sigmoid to logits first."
        )
    return numpy.clip(array, 0.0, 1.0)


def _check_pair(
    name_a: str,
    a: Any,
    name_b: str,
    b: Any,
    labels: Optional[Sequence[str]] = None,
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Check two (n, L) arrays; the first is gold (NaN allowed) unless its name ends in probs."""
    a = _check_probs(name_a, a) if name_a.endswith("probs") else _check_2d(name_a, a)
    b = _check_probs(name_b, b)
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {name_a} {a.shape} and "
            f"{name_b} {b.shape}."
        )
    if labels is not None and a.shape[1] != len(labels):
        raise ValueError(
            f"{name_a} and {name_b} have {a.shape[1]} columns (shape {a.shape}) but labels has "
            f"{len(labels)} names: {list(labels)}."
        )
    return a, b


def _check_gold_values(gold: numpy.ndarray) -> None:
    known = ~numpy.isnan(gold)
    bad = known & (gold != 0.0) & (gold != 1.0)
    if bad.any():
        row, col = numpy.argwhere(bad)[0]
        raise ValueError(
            f"gold must hold 0.0, 1.0 or NaN (unknown), but row {row}, column {col} is "
            f"{gold[row, col]}."
        )


def _exclusive_gold_rows(gold: numpy.ndarray) -> numpy.ndarray:
    """Rows with exclusive gold: fully known and exactly one 1.0 (checked)."""
    rows = ~numpy.isnan(gold).any(axis=1)
    n_pos = numpy.where(rows, numpy.nan_to_num(gold).sum(axis=1), 1)
    if (n_pos != 1).any():
        row = int(numpy.flatnonzero(n_pos != 1)[0])
        raise ValueError(
            f"gold row {row} has {int(n_pos[row])} labels set to 1.0, but exclusive labels need "
            f"exactly one; mark a doc without gold with a NaN row, or use exclusive=False."
        )
    return rows


def _known_cells(
    gold: numpy.ndarray,
    probs: numpy.ndarray,
    labels: Sequence[str],
    exclusive: bool,
    threshold: Threshold,
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """The (n, L) mask of cells with gold, the gold as ints (0 where unknown) and decisions."""
    _check_gold_values(gold)
    if exclusive:
        rows = _exclusive_gold_rows(gold)
        known = numpy.repeat(rows[:, None], gold.shape[1], axis=1)
    else:
        known = ~numpy.isnan(gold)
    y = numpy.where(known, numpy.nan_to_num(gold), 0).astype("int64")
    return known, y, _decide(probs, exclusive, threshold, labels)


def _decide(
    probs: numpy.ndarray, exclusive: bool, threshold: Threshold, labels: Optional[Sequence[str]]
) -> numpy.ndarray:
    return decisions(probs, exclusive, threshold, labels=labels)


def _thresholds(
    threshold: Threshold, n_labels: int, labels: Optional[Sequence[str]]
) -> numpy.ndarray:
    if isinstance(threshold, Mapping):
        if labels is None:
            raise ValueError("A per-label threshold dict needs the label names: pass labels=.")
        unknown = sorted(set(threshold) - set(labels))
        missing = [label for label in labels if label not in threshold]
        if unknown or missing:
            raise ValueError(
                f"threshold must give one value per label: missing {missing}, unknown {unknown}."
            )
        return numpy.asarray([float(threshold[label]) for label in labels], dtype="float64")
    values = numpy.asarray(threshold, dtype="float64")
    if values.ndim == 0:
        return numpy.full(n_labels, float(values))
    if values.shape != (n_labels,):
        raise ValueError(
            f"threshold must be a float or have one value per label ({n_labels},), got shape "
            f"{values.shape}."
        )
    return values


def _or(value: Optional[Threshold], default: Threshold) -> Threshold:
    return default if value is None else value


def _clipped_log_categorical(probs: numpy.ndarray, eps: float) -> numpy.ndarray:
    clipped = numpy.clip(probs, eps, 1.0)
    return numpy.log(clipped / clipped.sum(axis=1, keepdims=True))


def _safe_div(num: Any, den: Any) -> numpy.ndarray:
    """num / den, 0.0 where den is 0 (scikit-learn's zero_division=0)."""
    num = numpy.asarray(num, dtype="float64")
    den = numpy.asarray(den, dtype="float64")
    return numpy.divide(num, den, out=numpy.zeros_like(num), where=den != 0)


def _share(flags: numpy.ndarray) -> Optional[float]:
    return float(flags.mean()) if flags.size else None


def _average_ranks(values: numpy.ndarray) -> numpy.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks (scipy's rankdata)."""
    order = numpy.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = numpy.flatnonzero(numpy.r_[True, ordered[1:] != ordered[:-1]])
    ends = numpy.r_[starts[1:], len(values)]
    ranks = numpy.empty(len(values), dtype="float64")
    # A tie group at 0-based positions start..end-1 holds ranks start+1..end.
    ranks[order] = numpy.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _roc_auc(y: numpy.ndarray, scores: numpy.ndarray) -> Optional[float]:
    """ROC-AUC as the Mann-Whitney U statistic: a tied positive/negative pair counts 1/2."""
    positive = y == 1
    n_pos = int(positive.sum())
    n_neg = int(y.shape[0] - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(scores)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))
