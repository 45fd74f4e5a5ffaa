"""Exact attributions for spaCy's bag-of-words text classifier (`spacy.TextCatBOW`).

`TextCatBOW` is `extract_ngrams >> SparseLinear >> softmax/logistic`: before its activation the
model is linear in the counts of hashed n-grams. The logit of label j is

    b[j] + sum over the doc's distinct n-gram keys k of count(k) * (W[j, h1(k)] + W[j, h2(k)])

with h1, h2 two MurmurHash3 seeds of the key (thinc's `SparseLinear`). So each n-gram's term is
its exact share of the logit, and bias + the terms reproduce the logit up to float rounding.

The terms come from thinc's own `SparseLinear` forward, run on a copy of the layer that shares
its weights `W` but has a zero bias, with every key as a "doc" of its own: hashing, the v1/v2
index layout and the counts are thinc's, never re-implemented here. The keys come from the
model's own n-gram extractor; the n-gram strings are rebuilt with the same hash
(`ops.ngrams`) over the doc's token attributes.

Models with anything else in them (the ensemble's tok2vec half, no output layer) are not linear
in their features: `bow_layers` returns None and the caller falls back to occlusion.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc
from thinc.api import Model, SparseLinear_v2

from ..errors import UnsupportedModelError
from ..ml.logits import (
    ACTIVATION,
    CHAIN,
    RESIZABLE,
    WITH_CPU,
    forward_logits,
    has_readable_logits,
    layer_kind,
    logit_layer,
)

Span = Tuple[int, int]


@dataclass(frozen=True)
class NgramTerm:
    """One distinct n-gram of a doc and its exact share of each logit.

    feature (str): the n-gram as the model sees it (its token attributes joined by spaces).
    spans (Tuple[Span, ...]): character offsets of each occurrence in the text.
    weights (numpy.ndarray): its term in each label's logit (count included), label order.
    """

    feature: str
    spans: Tuple[Span, ...]
    weights: numpy.ndarray


@dataclass(frozen=True)
class LinearDecomposition:
    """A batch's logits split into a bias and per-n-gram terms.

    bias (numpy.ndarray): the intercept per label.
    logits (numpy.ndarray): the model's logits (docs x labels), from its own forward.
    terms (List[List[NgramTerm]]): per doc, its n-grams with nonzero features.
    """

    bias: numpy.ndarray
    logits: numpy.ndarray
    terms: List[List[NgramTerm]]

    def max_error(self, doc_index: int) -> float:
        """Largest |bias + sum of terms - logit| over the labels of one doc."""
        total = self.bias.astype("float64").copy()
        for term in self.terms[doc_index]:
            total += term.weights
        return float(numpy.max(numpy.abs(total - self.logits[doc_index])))


_STRUCTURAL = (CHAIN, WITH_CPU, RESIZABLE, ACTIVATION)


def bow_layers(model: Model) -> Optional[Tuple[Model, Model]]:
    """The n-gram extractor and the SparseLinear layer of a pure bag-of-words textcat model.

    model (Model): a textcat component's model.
    RETURNS (Optional[Tuple[Model, Model]]): (extract_ngrams, sparse_linear), or None when the
        model is anything but n-grams >> SparseLinear >> activation (e.g. an ensemble).
    """
    extractors = [layer for layer in model.walk() if layer.name == "extract_ngrams"]
    linears = [layer for layer in model.walk() if layer.name == "sparse_linear"]
    if len(extractors) != 1 or len(linears) != 1 or not has_readable_logits(model):
        return None
    try:
        if logit_layer(model) is not linears[0]:
            return None
    except UnsupportedModelError:
        return None
    for layer in model.walk():
        if layer is not extractors[0] and layer is not linears[0]:
            if layer_kind(layer) not in _STRUCTURAL:
                return None
    return extractors[0], linears[0]


def decompose_bow(model: Model, docs: List[Doc]) -> LinearDecomposition:
    """Split the logits of a bag-of-words textcat model into bias + one term per n-gram.

    model (Model): a model for which `bow_layers` is not None.
    docs (List[Doc]): the docs (tokenized; the model reads only their token attributes).
    RETURNS (LinearDecomposition): bias, logits and the per-doc n-gram terms.
    """
    layers = bow_layers(model)
    if layers is None:
        raise UnsupportedModelError(
            f"Model '{model.name}' is not a bag-of-words classifier (extract_ngrams >> "
            "SparseLinear >> activation); its logits are not linear in its features"
        )
    extractor, linear = layers
    keys, counts, lengths = (numpy.asarray(x) for x in extractor.predict(docs))
    keys = numpy.ascontiguousarray(keys, dtype="uint64")
    per_key = _term_per_key(linear, keys, numpy.ascontiguousarray(counts, dtype="f"))
    logits, _ = forward_logits(model, docs, False)
    bias = numpy.asarray(linear.get_param("b"), dtype="float64")
    terms: List[List[NgramTerm]] = []
    start = 0
    attr = extractor.attrs["attr"]
    ngram_size = extractor.attrs["ngram_size"]
    for doc, length in zip(docs, lengths.tolist()):
        doc_keys = keys[start : start + length]
        doc_terms = per_key[start : start + length]
        start += length
        names = _ngram_names(extractor, doc, attr, ngram_size)
        # Keys whose weights are all zero (n-grams never seen in training) explain nothing.
        used = numpy.flatnonzero(numpy.any(doc_terms != 0.0, axis=1))
        terms.append(
            [
                NgramTerm(*names.get(key, (f"#{key}", ())), weights=doc_terms[i])
                for key, i in zip(doc_keys[used].tolist(), used.tolist())
            ]
        )
    return LinearDecomposition(bias, numpy.asarray(logits, dtype="float64"), terms)


def _term_per_key(linear: Model, keys: numpy.ndarray, counts: numpy.ndarray) -> numpy.ndarray:
    """count(k) * (W[:, h1(k)] + W[:, h2(k)]) per key, by thinc's own SparseLinear forward."""
    n_out = linear.get_dim("nO")
    # Same forward, same W (shared, not copied), zero bias, each key alone in a row.
    unbiased = SparseLinear_v2(nO=n_out, length=linear.get_dim("length"))
    unbiased.ops = linear.ops
    unbiased.attrs["v1_indexing"] = linear.attrs["v1_indexing"]
    unbiased.set_param("W", linear.get_param("W"))
    unbiased.set_param("b", linear.ops.alloc1f(n_out))
    if not len(keys):
        return numpy.zeros((0, n_out), dtype="float64")
    ones = numpy.ones((len(keys),), dtype="int32")
    return numpy.asarray(unbiased.predict((keys, counts, ones)), dtype="float64")


def _ngram_names(
    extractor: Model, doc: Doc, attr: int, ngram_size: int
) -> Dict[int, Tuple[str, Tuple[Span, ...]]]:
    """key -> (n-gram string, its character spans) for every n-gram the extractor sees."""
    if not len(doc):
        return {}
    # Arrays rather than Token objects: making a Token costs more than the rest of this loop.
    columns = doc.to_array([attr, IDX, LENGTH]).astype("uint64")
    unigrams = numpy.ascontiguousarray(columns[:, 0])
    starts = columns[:, 1].tolist()
    ends = (columns[:, 1] + columns[:, 2]).tolist()
    strings = doc.vocab.strings
    words = [
        strings[key] if key in strings else doc.text[start:end]
        for key, start, end in zip(unigrams.tolist(), starts, ends)
    ]
    found: Dict[int, Tuple[str, List[Span]]] = {}
    for n in range(1, min(ngram_size, len(doc)) + 1):
        hashed = unigrams if n == 1 else numpy.asarray(extractor.ops.ngrams(n, unigrams))
        for i, key in enumerate(hashed.tolist()):
            entry = found.setdefault(key, (" ".join(words[i : i + n]), []))
            entry[1].append((starts[i], ends[i + n - 1]))
    return {key: (name, tuple(spans)) for key, (name, spans) in found.items()}
