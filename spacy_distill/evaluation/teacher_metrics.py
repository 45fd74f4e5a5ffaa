"""How a student compares with its teacher: decision agreement, KL divergence and whether it
inherits the teacher's mistakes.

The one definition of teacher agreement and teacher KL: `spacy-distill evaluate` reports them and
the training scorer (`spacy_distill.training.scoring`) logs them. Numpy only, so training needs neither
scikit-learn nor scipy. Inputs as in `spacy_distill.evaluation.inputs`.
"""

from typing import Any, Dict, Optional, Sequence

import numpy

from .inputs import (
    Threshold,
    check_gold_values,
    check_pair,
    decide,
    exclusive_gold_rows,
    or_default,
)


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
    student_probs, teacher_probs = check_pair(
        "student_probs", student_probs, "teacher_probs", teacher_probs, labels
    )
    same = decide(student_probs, exclusive, threshold, labels) == decide(
        teacher_probs, exclusive, or_default(teacher_threshold, threshold), labels
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
    teacher, student = check_pair("teacher_probs", teacher_probs, "student_probs", student_probs)
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
    gold, teacher = check_pair("gold", gold, "teacher_probs", teacher_probs, labels)
    _, student = check_pair("gold", gold, "student_probs", student_probs, labels)
    check_gold_values(gold)
    t_pred = decide(teacher, exclusive, or_default(teacher_threshold, threshold), labels)
    s_pred = decide(student, exclusive, threshold, labels)
    if exclusive:
        rows = exclusive_gold_rows(gold)
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


def _clipped_log_categorical(probs: numpy.ndarray, eps: float) -> numpy.ndarray:
    clipped = numpy.clip(probs, eps, 1.0)
    return numpy.log(clipped / clipped.sum(axis=1, keepdims=True))


def _share(flags: numpy.ndarray) -> Optional[float]:
    return float(flags.mean()) if flags.size else None
