"""Bag-of-words features for a whole batch at once: spaCy's `extract_ngrams`, vectorised.

spaCy's `extract_ngrams` (the features of `TextCatBOW` and of the ensemble's BOW part) loops over
the docs and calls `numpy.unique` once per doc: on short texts (tweets, SMS) those per-doc numpy
calls cost more than tokenizing the text. This forward computes the same output for the whole
batch with one n-gram hash per order and one sort:

* the docs' token attributes are concatenated; n-grams are hashed over the concatenation with
  thinc's own `ops.ngrams` (the same hash), and the windows that straddle two docs are dropped;
* one `lexsort` on (doc, key) groups each doc's keys in ascending order, as `numpy.unique` returns
  them; run boundaries give the counts.

The output (keys, counts, lengths) is identical to spaCy's, key for key, so the weights and the
scores are unchanged; an empty doc simply has no features (spaCy's own forward crashes on it in a
mixed batch with `ngram_size >= 2`, see `empty_docs`). On any array backend other than numpy the
per-doc loop is kept.
"""

from typing import List, Tuple

import numpy
from spacy.tokens import Doc
from thinc.api import Model, NumpyOps


def extract_ngrams_batched(model: Model, docs: List[Doc], is_train: bool) -> Tuple[tuple, callable]:
    """Forward of an `extract_ngrams` layer over a batch (same output as spaCy's)."""
    if not isinstance(model.ops, NumpyOps):
        return _extract_ngrams_per_doc(model, docs, is_train)
    attr = model.attrs["attr"]
    n_docs = len(docs)
    lengths = numpy.fromiter((len(doc) for doc in docs), dtype="int64", count=n_docs)
    if not lengths.sum():
        return _features(
            numpy.zeros((0,), dtype="uint64"),
            numpy.zeros((0,), dtype="f"),
            numpy.zeros((n_docs,), dtype="int32"),
        )
    unigrams = numpy.concatenate([doc.to_array(attr) for doc in docs if len(doc)]).astype(
        "uint64", copy=False
    )
    doc_of_token = numpy.repeat(numpy.arange(n_docs, dtype="int64"), lengths)
    keys = [unigrams]
    owners = [doc_of_token]
    for n in range(2, model.attrs["ngram_size"] + 1):
        if len(unigrams) < n:
            break
        hashed = numpy.asarray(model.ops.ngrams(n, unigrams))
        # A window is an n-gram of one doc when its first and last tokens belong to that doc.
        first, last = doc_of_token[: len(hashed)], doc_of_token[n - 1 :]
        inside = first == last
        keys.append(hashed[inside])
        owners.append(first[inside])
    all_keys = numpy.concatenate(keys)
    all_owners = numpy.concatenate(owners)
    order = numpy.lexsort((all_keys, all_owners))
    sorted_keys, sorted_owners = all_keys[order], all_owners[order]
    starts = numpy.flatnonzero(
        numpy.r_[
            True, (sorted_keys[1:] != sorted_keys[:-1]) | (sorted_owners[1:] != sorted_owners[:-1])
        ]
    )
    counts = numpy.diff(numpy.r_[starts, len(sorted_keys)]).astype("f")
    per_doc = numpy.bincount(sorted_owners[starts], minlength=n_docs).astype("int32")
    return _features(sorted_keys[starts], counts, per_doc)


def _features(keys: numpy.ndarray, vals: numpy.ndarray, lengths: numpy.ndarray):
    def backprop(dY):
        return []

    return (keys, vals, lengths), backprop


def _extract_ngrams_per_doc(model: Model, docs: List[Doc], is_train: bool):
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


extract_ngrams_batched.spacy_distill_guard = True  # type: ignore[attr-defined]

__all__ = ["extract_ngrams_batched"]
