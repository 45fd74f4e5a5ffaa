"""The mapping layer and the loss of hidden-state distillation.

`spacy-distill.HiddenProjector.v1` maps the student's token vectors (from its shared tok2vec,
through a listener) to the teacher's width: pooled per doc first (doc level), or per token.
`spacy-distill.HiddenStateLoss.v1` compares the mapped vectors with the teacher's stored ones
(MSE, cosine distance, or both), skipping rows without a teacher vector.
"""

from typing import List, Optional, Tuple

import numpy
from spacy.tokens import Doc
from spacy.util import registry as spacy_registry
from thinc.api import Linear, Maxout, Model, chain, list2ragged, reduce_mean, with_array
from thinc.loss import Loss
from thinc.types import Floats2d
from thinc.util import get_array_module

from ..registry import registry

LEVELS = ("doc", "token")
PROJECTORS = ("linear", "maxout")
LOSS_KINDS = ("mse", "cosine", "both")


@spacy_registry.architectures("spacy-distill.HiddenProjector.v1")
def build_hidden_projector(
    tok2vec: Model[List[Doc], List[Floats2d]],
    nO: Optional[int] = None,
    level: str = "doc",
    kind: str = "linear",
    nP: int = 3,
) -> Model:
    """Map the student's tok2vec output to the teacher's hidden width.

    tok2vec (Model[List[Doc], List[Floats2d]]): the student's token vectors, usually a
        `spacy.Tok2VecListener.v1` on its shared `tok2vec` component.
    nO (Optional[int]): the teacher's (stored) width; None: read from the stored states when
        the component is initialized.
    level (str): "doc" (mean of the token vectors, then the map: a (n_docs, nO) array) or
        "token" (the map on every token: one (n_tokens, nO) array per doc).
    kind (str): "linear" or "maxout" (nP pieces).
    nP (int): maxout pieces.
    RETURNS (Model): the projector; its `projection` and `tok2vec` are named refs.
    """
    if level not in LEVELS:
        raise ValueError(f"HiddenProjector: level must be one of {LEVELS}, got {level!r}")
    if kind not in PROJECTORS:
        raise ValueError(f"HiddenProjector: kind must be one of {PROJECTORS}, got {kind!r}")
    projection = Linear(nO=nO) if kind == "linear" else Maxout(nO=nO, nP=nP)
    if level == "doc":
        model = chain(tok2vec, list2ragged(), reduce_mean(), projection)
    else:
        model = chain(tok2vec, with_array(projection))
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("projection", projection)
    model.attrs["hidden_level"] = level
    return model


class HiddenStateLoss(Loss):
    """Distance between mapped student vectors and teacher vectors, row by row.

    Per row r with student vector s and teacher vector t, and mask m (1: the teacher has t):
        mse:     mean_j (s_j - t_j)^2
        cosine:  1 - cos(s, t)
        both:    the sum of the two
    The loss is weight * sum_r m_r * row_loss_r / sum_r m_r (0 when no row has a teacher
    vector), and its gradient is exact.
    """

    def __init__(self, *, kind: str = "mse", weight: float = 1.0, eps: float = 1e-8) -> None:
        """
        kind (str): "mse", "cosine" or "both".
        weight (float): scales the loss and its gradient (against the soft-label loss).
        eps (float): keeps the cosine finite for zero vectors.
        """
        if kind not in LOSS_KINDS:
            raise ValueError(f"HiddenStateLoss: kind must be one of {LOSS_KINDS}, got {kind!r}")
        if not weight >= 0:
            raise ValueError(f"HiddenStateLoss: weight must be >= 0, got {weight}")
        self.kind = kind
        self.weight = float(weight)
        self.eps = float(eps)

    def __call__(
        self, guesses: Floats2d, truths: Tuple[Floats2d, numpy.ndarray]
    ) -> Tuple[Floats2d, float]:
        return self.get_grad_and_loss(guesses, truths)

    def get_grad(self, guesses: Floats2d, truths: Tuple[Floats2d, numpy.ndarray]) -> Floats2d:
        return self.get_grad_and_loss(guesses, truths)[0]

    def get_loss(self, guesses: Floats2d, truths: Tuple[Floats2d, numpy.ndarray]) -> float:
        return self.get_grad_and_loss(guesses, truths)[1]

    def get_grad_and_loss(
        self, guesses: Floats2d, truths: Tuple[Floats2d, numpy.ndarray]
    ) -> Tuple[Floats2d, float]:
        """guesses (Floats2d): (n, width) mapped student vectors.
        truths (Tuple[Floats2d, numpy.ndarray]): (n, width) teacher vectors and the (n,) mask.
        RETURNS (Tuple[Floats2d, float]): the gradient w.r.t. guesses, and the loss.
        """
        xp = get_array_module(guesses)
        target, mask = truths
        s = xp.asarray(guesses, dtype="float64")
        t = xp.asarray(target, dtype="float64")
        m = xp.asarray(mask, dtype="float64").reshape((-1, 1))
        if s.ndim != 2 or t.shape != s.shape or m.shape[0] != s.shape[0]:
            raise ValueError(
                f"HiddenStateLoss: shapes differ: student {s.shape}, teacher {t.shape}, mask "
                f"{tuple(mask.shape)}"
            )
        n_rows = float(m.sum())
        if n_rows == 0:
            return xp.zeros(guesses.shape, dtype=guesses.dtype), 0.0
        width = s.shape[1]
        loss_rows = xp.zeros((s.shape[0], 1), dtype="float64")
        grad = xp.zeros(s.shape, dtype="float64")
        if self.kind in ("mse", "both"):
            diff = s - t
            loss_rows += (diff**2).sum(axis=1, keepdims=True) / width
            grad += 2.0 * diff / width
        if self.kind in ("cosine", "both"):
            s_norm = xp.sqrt((s**2).sum(axis=1, keepdims=True) + self.eps)
            t_norm = xp.sqrt((t**2).sum(axis=1, keepdims=True) + self.eps)
            dot = (s * t).sum(axis=1, keepdims=True)
            cos = dot / (s_norm * t_norm)
            loss_rows += 1.0 - cos
            # d cos / d s = t / (|s||t|) - cos * s / |s|^2
            grad += -(t / (s_norm * t_norm) - cos * s / (s_norm**2))
        scale = self.weight / n_rows
        loss = float((m * loss_rows).sum()) * scale
        return xp.asarray(grad * m * scale, dtype=guesses.dtype), loss


@registry.losses("spacy-distill.HiddenStateLoss.v1")
def configure_hidden_state_loss(kind: str = "mse", weight: float = 1.0) -> HiddenStateLoss:
    """The hidden-state distillation loss.

    kind (str): "mse" (mean squared error per dim), "cosine" (1 - cosine similarity) or "both".
    weight (float): scales the loss (and so its gradient into the shared tok2vec).
    RETURNS (HiddenStateLoss): the loss.
    """
    return HiddenStateLoss(kind=kind, weight=weight)
