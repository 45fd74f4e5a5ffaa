"""Empty docs in a batch crash spaCy's text classifiers; this guard fixes that in place.

With spaCy 3.8 / thinc 8.3, when a batch mixes an empty doc (`nlp("")`) with non-empty ones:
* `spacy.TextCatBOW` (and the ensemble around it) with `ngram_size` >= 2 raises
  `IndexError: Out of bounds on buffer access` from `NumpyOps.ngrams`;
* `spacy.TextCatReduce` raises `ValueError: all sequence lengths must be > 0` from
  `reduce_max` (and other reductions misbehave on empty sequences).
spaCy's textcat only special-cases batches where every doc is empty. A filter sees empty
messages in production, so every pipeline that spacy-distill trains or exports carries this
guard.

The guard swaps the forward function of those layers, in place, for one that leaves empty docs
out: no n-grams (what spaCy computes with `ngram_size = 1`), and a zero vector from a
reduction. Every other doc is scored exactly as before and the weights are untouched.
Exported pipelines apply it through `[nlp.after_pipeline_creation]`.
"""
from typing import Callable

import numpy

from spacy.language import Language
from spacy.util import registry
from thinc.api import Model
from thinc.types import Ragged

GUARD_CALLBACK = "spacy-distill.guard_empty_docs.v1"


def _forward_skipping_empty_docs(model: Model, docs, is_train: bool):
    xp = model.ops.xp
    batch_keys = []
    batch_vals = []
    for doc in docs:
        unigrams = model.ops.asarray(doc.to_array([model.attrs["attr"]]))
        ngrams = [unigrams]
        if unigrams.shape[0]:
            for n in range(2, model.attrs["ngram_size"] + 1):
                ngrams.append(model.ops.ngrams(n, unigrams))  # type: ignore[arg-type]
        keys, vals = xp.unique(xp.concatenate(ngrams), return_counts=True)
        batch_keys.append(keys)
        batch_vals.append(vals)
    lengths = model.ops.asarray([arr.shape[0] for arr in batch_keys], dtype="int32")
    keys = xp.concatenate(batch_keys)
    vals = model.ops.asarray(xp.concatenate(batch_vals), dtype="f")

    def backprop(dY):
        return []

    return (keys, vals, lengths), backprop


REDUCTIONS = ("reduce_max", "reduce_mean", "reduce_sum", "reduce_first", "reduce_last")


def _reduction_skipping_empty(original: Callable) -> Callable:
    def forward(model: Model, Xr: Ragged, is_train: bool):
        lengths = model.ops.to_numpy(Xr.lengths)
        if lengths.all():
            return original(model, Xr, is_train)
        keep = numpy.flatnonzero(lengths)
        width = Xr.data.shape[1]
        Y = model.ops.alloc2f(len(lengths), width)
        if len(keep):
            # Empty sequences own no rows of Xr.data, so the rest reduce as a batch of their own.
            Y_kept, backprop_kept = original(model, Ragged(Xr.data, Xr.lengths[keep]), is_train)
            Y[keep] = Y_kept

        def backprop(dY):
            if not len(keep):
                return Ragged(model.ops.alloc2f(*Xr.data.shape), Xr.lengths)
            return Ragged(backprop_kept(dY[keep]).data, Xr.lengths)

        return Y, backprop

    forward.spacy_distill_guard = True  # type: ignore[attr-defined]
    return forward


_forward_skipping_empty_docs.spacy_distill_guard = True  # type: ignore[attr-defined]


def _unguarded(layer: Model) -> bool:
    if getattr(layer._func, "spacy_distill_guard", False):
        return False
    if layer.name == "extract_ngrams":
        return layer.attrs.get("ngram_size", 1) > 1
    return layer.name in REDUCTIONS


def guard_empty_docs(model: Model) -> int:
    """Make the model's n-gram extractors and reductions safe for empty docs, in place.

    model (Model): any model (a textcat's, typically).
    RETURNS (int): how many layers were guarded now (0 if already guarded).
    """
    guarded = 0
    for layer in model.walk():
        if not _unguarded(layer):
            continue
        if layer.name == "extract_ngrams":
            layer._func = _forward_skipping_empty_docs
        else:
            layer._func = _reduction_skipping_empty(layer._func)
        guarded += 1
    return guarded


def needs_guard(model: Model) -> bool:
    """Whether the model has layers that empty docs would crash (guarded or not)."""
    return any(
        (layer.name == "extract_ngrams" and layer.attrs.get("ngram_size", 1) > 1) or layer.name in REDUCTIONS
        for layer in model.walk()
    )


def guard_pipeline(nlp: Language) -> Language:
    """Guard the models of every component of a pipeline, in place."""
    for _, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if isinstance(model, Model):
            guard_empty_docs(model)
    return nlp


@registry.callbacks(GUARD_CALLBACK)
def make_guard_empty_docs() -> Callable[[Language], Language]:
    """`[nlp.after_pipeline_creation]` callback: guard every component's model."""
    return guard_pipeline
