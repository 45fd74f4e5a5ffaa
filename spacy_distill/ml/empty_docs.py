"""Empty docs in a batch crash spaCy's text classifiers; this guard fixes that in place.

With spaCy 3.8 / thinc 8.3, when a batch mixes an empty doc (`nlp("")`) with non-empty ones:
* `spacy.TextCatBOW` (and the ensemble around it) with `ngram_size` >= 2 raises
  `IndexError: Out of bounds on buffer access` from `NumpyOps.ngrams`;
* `spacy.TextCatReduce` raises `ValueError: all sequence lengths must be > 0` from
  `reduce_max` (and other reductions misbehave on empty sequences).
spaCy's textcat only special-cases batches where every doc is empty. A filter sees empty
messages in production, so every pipeline that spacy-distill trains or exports carries this
guard.

The guard gives those layers another forward, in place, through thinc's public
`Model.replace_callbacks`: n-gram extractors get the batched forward of `batched_ngrams` (the
same features, computed for the whole batch at once; an empty doc has none), reductions one that
gives an empty doc a zero vector around thinc's own reduction. The layers stay where they are, so
the model keeps its structure, names and serialized form (a pipeline saved guarded or unguarded
loads into either); every other doc is scored exactly as before and the weights are untouched.
Exported pipelines apply it through `[nlp.after_pipeline_creation]`.

An empty doc in a mixed batch is scored from no features, i.e. from the model's biases; alone
(or among empty docs only) spaCy's textcat gives it all-zero scores without running the model.
The guard leaves that as it is (an exported pipeline must score as the trained one does);
`semantic_filter` gives empty docs all-zero `doc.cats` and its default action in any batch.
"""

from typing import Callable, Dict, Set

import numpy
from spacy.language import Language
from spacy.util import registry
from thinc.api import Model
from thinc.layers.reduce_first import forward as reduce_first_forward
from thinc.layers.reduce_last import forward as reduce_last_forward
from thinc.layers.reduce_max import forward as reduce_max_forward
from thinc.layers.reduce_mean import forward as reduce_mean_forward
from thinc.layers.reduce_sum import forward as reduce_sum_forward
from thinc.types import Ragged

from .batched_ngrams import extract_ngrams_batched

GUARD_CALLBACK = "spacy-distill.guard_empty_docs.v1"

# thinc's own forward of each reduction, by the layer's name (thinc keeps a layer's forward
# private, so the guard wraps these rather than whatever the layer currently runs: guarding
# twice installs the same forward again).
_REDUCTION_FORWARDS: Dict[str, Callable] = {
    "reduce_first": reduce_first_forward,
    "reduce_last": reduce_last_forward,
    "reduce_max": reduce_max_forward,
    "reduce_mean": reduce_mean_forward,
    "reduce_sum": reduce_sum_forward,
}
REDUCTIONS = tuple(_REDUCTION_FORWARDS)

# The ids of the layers guarded in this process, so that `guard_empty_docs` can say how many it
# guarded now. Not stored on the layer: thinc serializes `attrs`, and a flag saved with the
# weights would claim a guard on a model loaded without one.
_GUARDED: Set[int] = set()


class _ReductionSkippingEmpty:
    """A reduction's forward that gives empty sequences a zero vector. A class rather than a
    closure so that a guarded model still pickles (`nlp.pipe(n_process=...)` under spawn)."""

    def __init__(self, original: Callable) -> None:
        self.original = original

    def __call__(self, model: Model, Xr: Ragged, is_train: bool):
        original = self.original
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


def _guardable(layer: Model) -> bool:
    # Every n-gram extractor gets the batched forward: it is the guard for ngram_size >= 2 and
    # faster than spaCy's per-doc loop for any size.
    return layer.name == "extract_ngrams" or layer.name in _REDUCTION_FORWARDS


def guard_empty_docs(model: Model) -> int:
    """Make the model's n-gram extractors and reductions safe for empty docs, in place.

    model (Model): any model (a textcat's, typically).
    RETURNS (int): how many layers were guarded now (0 if already guarded).
    """
    guarded = 0
    for layer in model.walk():
        if not _guardable(layer) or layer.id in _GUARDED:
            continue
        if layer.name == "extract_ngrams":
            forward: Callable = extract_ngrams_batched
        else:
            forward = _ReductionSkippingEmpty(_REDUCTION_FORWARDS[layer.name])
        layer.replace_callbacks(forward, init=layer.init)
        _GUARDED.add(layer.id)
        guarded += 1
    return guarded


def needs_guard(model: Model) -> bool:
    """Whether the model has layers the guard replaces (guarded or not): n-gram extractors
    (which crash on empty docs from ngram_size 2, and run faster batched at any size) and
    reductions."""
    return any(_guardable(layer) for layer in model.walk())


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
