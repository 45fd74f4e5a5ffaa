"""The arrays every evaluation metric reads: checked (n, L) gold and probabilities, and the
0/1 decisions a model makes from its probabilities.

gold (n, L):   0/1 floats, NaN where the gold value is unknown. A doc without gold is a NaN
               row; a multi-label doc may leave single labels NaN. An exclusive doc counts as
               gold only if its whole row is known (exactly one 1.0).
probs (n, L):  probabilities of one model (rows sum to 1 if the labels are exclusive).

Decisions follow spaCy's textcat: exclusive labels take the argmax (ties go to the lowest label
index, as `numpy.argmax`), multi-label decisions are `p >= threshold`. Numpy only: the training
scorer (`spacy_distill.training.scoring`) reads teacher agreement through these on the core install.
"""

from typing import Any, Mapping, Optional, Sequence, Tuple, Union

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
    probs = check_probs("probs", probs)
    n_labels = probs.shape[1]
    if exclusive:
        out = numpy.zeros(probs.shape, dtype="int64")
        if probs.shape[0] and n_labels:
            out[numpy.arange(probs.shape[0]), probs.argmax(axis=1)] = 1
        return out
    thresholds = thresholds_per_label(threshold, n_labels, labels)
    return (probs >= thresholds[None, :]).astype("int64")


def check_2d(name: str, value: Any) -> numpy.ndarray:
    try:
        array = numpy.asarray(value, dtype="float64")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric (n_docs, n_labels) array: {err}") from None
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-d (n_docs, n_labels) array, got shape {array.shape}.")
    if array.shape[1] == 0:
        raise ValueError(f"{name} must have at least one label column, got shape {array.shape}.")
    return array


def check_probs(name: str, value: Any) -> numpy.ndarray:
    array = check_2d(name, value)
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


def check_pair(
    name_a: str,
    a: Any,
    name_b: str,
    b: Any,
    labels: Optional[Sequence[str]] = None,
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Check two (n, L) arrays; the first is gold (NaN allowed) unless its name ends in probs."""
    a = check_probs(name_a, a) if name_a.endswith("probs") else check_2d(name_a, a)
    b = check_probs(name_b, b)
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


def check_gold_values(gold: numpy.ndarray) -> None:
    known = ~numpy.isnan(gold)
    bad = known & (gold != 0.0) & (gold != 1.0)
    if bad.any():
        row, col = numpy.argwhere(bad)[0]
        raise ValueError(
            f"gold must hold 0.0, 1.0 or NaN (unknown), but row {row}, column {col} is "
            f"{gold[row, col]}."
        )


def exclusive_gold_rows(gold: numpy.ndarray) -> numpy.ndarray:
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


def known_cells(
    gold: numpy.ndarray,
    probs: numpy.ndarray,
    labels: Sequence[str],
    exclusive: bool,
    threshold: Threshold,
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """The (n, L) mask of cells with gold, the gold as ints (0 where unknown) and decisions."""
    check_gold_values(gold)
    if exclusive:
        rows = exclusive_gold_rows(gold)
        known = numpy.repeat(rows[:, None], gold.shape[1], axis=1)
    else:
        known = ~numpy.isnan(gold)
    y = numpy.where(known, numpy.nan_to_num(gold), 0).astype("int64")
    return known, y, decide(probs, exclusive, threshold, labels)


def decide(
    probs: numpy.ndarray, exclusive: bool, threshold: Threshold, labels: Optional[Sequence[str]]
) -> numpy.ndarray:
    return decisions(probs, exclusive, threshold, labels=labels)


def thresholds_per_label(
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


def or_default(value: Optional[Threshold], default: Threshold) -> Threshold:
    return default if value is None else value
