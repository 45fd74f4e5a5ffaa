"""Soft-target distillation loss (Hinton et al. 2015) as a thinc `Loss`.

Per doc, with student logits z, teacher scores t, temperature T and weight alpha:

    exclusive:    alpha * T^2 * KL(softmax(t/T) || softmax(z/T)) + (1 - alpha) * CE(gold, softmax(z))
    multi-label:  per label, alpha * T^2 * KL_bernoulli(sigmoid(t/T) || sigmoid(z/T))
                  + (1 - alpha) * BCE(gold, sigmoid(z))

The multi-label teacher term is the tempered binary cross-entropy minus the teacher's own
entropy (a constant), so it has the same gradient and is 0 when the student matches.
A doc (or, multi-label, a label) with a teacher target but no gold uses the teacher term
alone at full weight (T^2 * KL); one with gold but no teacher uses the gold term alone. The
loss is averaged over the docs of the batch and its gradient is exact.

`spacy-distill.SoftTargetLoss.v2` adds per-label trust in the teacher: where a doc has gold
and a teacher target, alpha is scaled by the trust of the doc's gold label (exclusive) or of each
label (multi-label), e.g. the teacher's dev F1 per label (`spacy_distill.evaluation.trust`). A teacher that
never predicts a rare class then stops overruling the gold of that class, so distillation with
gold does not end below gold alone where the teacher is blind.
"""

from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy
from thinc.loss import Loss
from thinc.types import Floats1d, Floats2d
from thinc.util import get_array_module

from ..registry import registry


class SoftTargets(NamedTuple):
    """The truths of a batch, one row per doc, columns in the student's label order.

    teacher (Floats2d): teacher scores (log-probabilities if exclusive, else logits); rows
        without a teacher are ignored.
    teacher_mask (Floats1d): 1.0 where the doc has teacher scores.
    gold (Floats2d): gold values (0/1).
    gold_mask (Floats2d): 1.0 where the gold value of that doc and label is known.
    exclusive (bool): softmax over labels (True) or one sigmoid per label (False).
    labels (Tuple[str, ...]): the label of each column (needed by per-label trust only).
    """

    teacher: Floats2d
    teacher_mask: Floats1d
    gold: Floats2d
    gold_mask: Floats2d
    exclusive: bool
    labels: Tuple[str, ...] = ()


class SoftTargetLoss(Loss):
    """Temperature-scaled KL to the teacher mixed with cross-entropy to gold labels."""

    def __init__(
        self,
        *,
        temperature: float = 1.0,
        alpha: float = 0.5,
        normalize: bool = True,
        label_trust: Optional[Dict[str, float]] = None,
    ):
        """
        temperature (float): T > 0 that softens both distributions in the teacher term.
        alpha (float): weight of the teacher term when a doc has gold too, in [0, 1].
        normalize (bool): average over the docs of the batch (else sum).
        label_trust (Optional[Dict[str, float]]): label -> trust in [0, 1] that scales alpha
            where the doc has gold (exclusive: the trust of its gold label); labels left out: 1.
        """
        for label, value in dict(label_trust or {}).items():
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(
                    f"SoftTargetLoss: label_trust.{label} must be in [0, 1], got {value}"
                )
        if not temperature > 0:
            raise ValueError(f"SoftTargetLoss: temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"SoftTargetLoss: alpha must be in [0, 1], got {alpha}")
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.normalize = normalize
        self.label_trust = {str(k): float(v) for k, v in dict(label_trust or {}).items()}

    def __call__(self, guesses: Floats2d, truths: SoftTargets) -> Tuple[Floats2d, float]:
        return self.get_grad_and_loss(guesses, truths)

    def get_grad(self, guesses: Floats2d, truths: SoftTargets) -> Floats2d:
        return self.get_grad_and_loss(guesses, truths)[0]

    def get_loss(self, guesses: Floats2d, truths: SoftTargets) -> float:
        return self.get_grad_and_loss(guesses, truths)[1]

    def get_grad_and_loss(self, guesses: Floats2d, truths: SoftTargets) -> Tuple[Floats2d, float]:
        """Loss and its gradient with respect to the student logits `guesses`."""
        xp = get_array_module(guesses)
        z = xp.asarray(guesses, dtype="float64")
        if z.ndim != 2 or truths.teacher.shape != z.shape or truths.gold.shape != z.shape:
            raise ValueError(
                f"SoftTargetLoss: shapes differ: student {z.shape}, teacher "
                f"{truths.teacher.shape}, gold {truths.gold.shape}"
            )
        teacher = xp.asarray(truths.teacher, dtype="float64")
        has_teacher = xp.asarray(truths.teacher_mask, dtype="float64").reshape((-1, 1))
        gold = xp.asarray(truths.gold, dtype="float64")
        gold_mask = xp.asarray(truths.gold_mask, dtype="float64")
        T = self.temperature
        if truths.exclusive:
            # One weight per doc: a doc with any gold counts as labelled.
            has_gold = (gold_mask.max(axis=1, keepdims=True) > 0).astype("float64")
        else:
            has_gold = gold_mask
        # Where both are present they mix by alpha (scaled by the trust in the teacher on that
        # gold label); where one is missing the other takes it all.
        alpha = self._alpha(xp, gold, truths)
        teacher_weight = has_teacher * xp.where(has_gold > 0, alpha, 1.0)
        gold_weight = has_gold * xp.where(has_teacher > 0, 1.0 - alpha, 1.0)
        if truths.exclusive:
            log_q_T = _log_softmax(xp, z / T)
            log_p_T = _log_softmax(xp, teacher / T)
            p_T = xp.exp(log_p_T)
            kl = (p_T * (log_p_T - log_q_T)).sum(axis=1, keepdims=True)
            d_kl = T * (xp.exp(log_q_T) - p_T)  # d(T^2 * KL)/dz
            log_q = _log_softmax(xp, z)
            gold_total = gold.sum(axis=1, keepdims=True)
            ce = -(gold * log_q).sum(axis=1, keepdims=True)
            d_ce = xp.exp(log_q) * gold_total - gold
            loss_rows = teacher_weight * T * T * kl + gold_weight * ce
            grad = teacher_weight * d_kl + gold_weight * d_ce
        else:
            p_T = _sigmoid(xp, teacher / T)
            q_T = _sigmoid(xp, z / T)
            # Bernoulli KL(p || q) from logits, stable: softplus terms instead of logs of sigmoids.
            kl = p_T * (_softplus(xp, -z / T) - _softplus(xp, -teacher / T)) + (1 - p_T) * (
                _softplus(xp, z / T) - _softplus(xp, teacher / T)
            )
            d_kl = T * (q_T - p_T)
            bce = gold * _softplus(xp, -z) + (1 - gold) * _softplus(xp, z)
            d_bce = _sigmoid(xp, z) - gold
            loss_rows = teacher_weight * T * T * kl + gold_weight * bce
            grad = teacher_weight * d_kl + gold_weight * d_bce
        loss = float(loss_rows.sum())
        if self.normalize and z.shape[0] > 0:
            loss /= z.shape[0]
            grad = grad / z.shape[0]
        return xp.asarray(grad, dtype=guesses.dtype), loss

    def _alpha(self, xp, gold, truths: SoftTargets):
        """alpha, or with label_trust: (n, 1) per doc (exclusive) or (n, L) per cell."""
        if not self.label_trust:
            return self.alpha
        if len(truths.labels) != gold.shape[1]:
            raise ValueError(
                "SoftTargetLoss: label_trust needs the label of each column; the component passed "
                f"{len(truths.labels)} labels for {gold.shape[1]} columns"
            )
        unknown = sorted(set(self.label_trust) - set(truths.labels))
        if unknown:
            raise ValueError(
                f"SoftTargetLoss: label_trust names labels {unknown} that the component lacks ({list(truths.labels)})"
            )
        trust = xp.asarray(
            [self.label_trust.get(label, 1.0) for label in truths.labels], dtype="float64"
        )
        if truths.exclusive:
            # The trust of the doc's gold label (docs without gold do not mix: value unused).
            return self.alpha * trust[gold.argmax(axis=1)].reshape((-1, 1))
        return self.alpha * trust.reshape((1, -1))


# The loss runs on thinc's arrays, which are cupy arrays on GPU: these three take the array
# module `xp` instead of using `spacy_distill.probabilities` (numpy only, float64 host arrays),
# so the loss and its gradient stay on the device.
def _log_softmax(xp, x):
    x = x - x.max(axis=1, keepdims=True)
    return x - xp.log(xp.exp(x).sum(axis=1, keepdims=True))


def _softplus(xp, x):
    return xp.logaddexp(0.0, x)


def _sigmoid(xp, x):
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


@registry.losses("spacy-distill.SoftTargetLoss.v1")
def configure_soft_target_loss(
    temperature: float = 2.0, alpha: float = 0.5, normalize: bool = True
) -> SoftTargetLoss:
    """Soft-target distillation loss: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(gold).

    temperature (float): T, applied to teacher and student logits in the teacher term.
    alpha (float): weight of the teacher term for docs that also have gold labels.
    normalize (bool): average over the docs of a batch.
    RETURNS (SoftTargetLoss): the loss.
    """
    return SoftTargetLoss(temperature=temperature, alpha=alpha, normalize=normalize)


@registry.losses("spacy-distill.SoftTargetLoss.v2")
def configure_soft_target_loss_v2(
    temperature: float = 2.0,
    alpha: float = 0.5,
    normalize: bool = True,
    label_trust: Optional[Dict[str, float]] = None,
) -> SoftTargetLoss:
    """v1 plus per-label trust in the teacher: where a doc has gold, alpha is scaled by the trust
    of its gold label (`spacy-distill init-config --label-trust` fills it from the teacher's dev F1).

    temperature (float): T, applied to teacher and student logits in the teacher term.
    alpha (float): weight of the teacher term for docs that also have gold labels.
    normalize (bool): average over the docs of a batch.
    label_trust (Optional[Dict[str, float]]): label -> trust in [0, 1]; labels left out: 1.
    RETURNS (SoftTargetLoss): the loss.
    """
    return SoftTargetLoss(
        temperature=temperature, alpha=alpha, normalize=normalize, label_trust=label_trust
    )


def make_soft_targets(
    n_docs: int, n_labels: int, exclusive: bool, labels: Sequence[str] = ()
) -> SoftTargets:
    """Empty truths (nothing known) for a batch; fill rows in place."""
    return SoftTargets(
        teacher=numpy.zeros((n_docs, n_labels), dtype="float32"),
        teacher_mask=numpy.zeros((n_docs,), dtype="float32"),
        gold=numpy.zeros((n_docs, n_labels), dtype="float32"),
        gold_mask=numpy.zeros((n_docs, n_labels), dtype="float32"),
        exclusive=exclusive,
        labels=tuple(labels),
    )


__all__ = [
    "SoftTargetLoss",
    "SoftTargets",
    "configure_soft_target_loss",
    "configure_soft_target_loss_v2",
    "make_soft_targets",
]
