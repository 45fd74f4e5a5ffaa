"""Explanations of a text classifier's verdicts: which tokens and n-grams pushed each label.

Two methods, named on every explanation:

* "exact-linear": spaCy's bag-of-words textcat (`TextCatBOW`, the `bow` student) is linear in its
  n-gram counts before the activation, so each n-gram's weight is its exact term in the label's
  logit (softmax input, or sigmoid input for multi-label). `Explanation.check` reports
  max |bias + sum of all weights - logit| (float rounding only). See `linear_attribution`.
* "occlusion": for any textcat, leave one token out: a token's weight is the label's log-odds,
  log(p / (1 - p)), with the doc as it is minus its log-odds without that token (positive: the
  token pushed the label up). Log-odds rather than probabilities because a confident model's
  probabilities saturate near 0 and 1, where removing any single token barely moves them. Not
  additive: the weights need not sum to anything; `check` is None.

`method="auto"` takes the exact method where the model allows it and occlusion otherwise.
"""

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
from spacy.language import Language
from spacy.tokens import Doc

from ..errors import DistillError
from ..pipeline.textcat_lookup import find_textcat
from .linear_attribution import Span, bow_layers, decompose_bow

EXACT_LINEAR = "exact-linear"
OCCLUSION = "occlusion"
METHODS = ("auto", EXACT_LINEAR, OCCLUSION)
_EPSILON = 1e-7


@dataclass(frozen=True)
class Attribution:
    """One piece of evidence for a label.

    feature (str): the token (occlusion) or n-gram (exact-linear) text.
    spans (Tuple[Span, ...]): its character offsets in the text (an n-gram: every occurrence).
    weight (float): how far it pushed the label up (negative: down); a logit term
        (exact-linear) or a difference of log-odds (occlusion).
    """

    feature: str
    spans: Tuple[Span, ...]
    weight: float


@dataclass(frozen=True)
class Explanation:
    """Why a text got its scores.

    text (str): the text.
    labels (Tuple[str, ...]): the component's labels.
    probs (Dict[str, float]): the component's scores (`doc.cats`; a text without tokens gets
        what `nlp(text)` gives it: spaCy's textcat gives an empty doc alone all-zero scores).
    method (str): "exact-linear" or "occlusion".
    attributions (Dict[str, Tuple[Attribution, ...]]): per label, the evidence sorted by
        |weight| (largest first), at most `top_k` items; zero weights are left out.
    logits (Optional[Dict[str, float]]): per label, the logit (exact-linear only; for a text
        without tokens, the bias, which is what the model computes from no features).
    bias (Optional[Dict[str, float]]): per label, the intercept (exact-linear only).
    check (Optional[float]): max over labels of |bias + sum of all weights - logit|, computed
        before the `top_k` cut (exact-linear only).
    """

    text: str
    labels: Tuple[str, ...]
    probs: Dict[str, float]
    method: str
    attributions: Dict[str, Tuple[Attribution, ...]]
    logits: Optional[Dict[str, float]] = None
    bias: Optional[Dict[str, float]] = None
    check: Optional[float] = None


@dataclass(frozen=True)
class FeatureTotal:
    """A feature's weight for a label over many explanations.

    feature (str): the token or n-gram.
    total (float): the sum of its weights.
    count (int): in how many attributions it appeared.
    """

    feature: str
    total: float
    count: int


def explain_texts(
    nlp: Language,
    texts: Iterable[str],
    *,
    component: Optional[str] = None,
    method: str = "auto",
    top_k: Optional[int] = 10,
    batch_size: int = 256,
) -> List[Explanation]:
    """Explain the text classifier's scores for each text.

    nlp (Language): the pipeline (a student or any spaCy textcat pipeline).
    texts (Iterable[str]): the texts.
    component (Optional[str]): the text classifier's name; None: the only one (as `find_textcat`).
    method (str): "auto" (exact where the model allows it), "exact-linear" or "occlusion".
    top_k (Optional[int]): the number of attributions kept per label; None keeps all.
    batch_size (int): docs per batch (occlusion: original docs and their variants).
    RETURNS (List[Explanation]): one per text, in order.
    """
    if method not in METHODS:
        raise DistillError(f"`method` must be one of {list(METHODS)}, got {method!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise DistillError(f"`top_k` must be a positive integer or None, got {top_k!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise DistillError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise DistillError(f"`texts[{index}]` must be a string, got {type(text).__name__}")
    name = find_textcat(nlp, component)
    exact = bow_layers(nlp.get_pipe(name).model) is not None
    if method == EXACT_LINEAR and not exact:
        raise DistillError(
            f"`method='exact-linear'` needs a bag-of-words text classifier (spacy.TextCatBOW with "
            f"its output layer); component '{name}' has model "
            f"'{nlp.get_pipe(name).model.name}': use method='occlusion' or 'auto'"
        )
    if method == OCCLUSION or not exact:
        explanations = _explain_by_occlusion(nlp, name, texts, top_k, batch_size)
    else:
        explanations = _explain_exactly(nlp, name, texts, top_k, batch_size)
    return _score_empty_texts_alone(nlp, name, explanations)


def top_features(
    explanations: Sequence[Explanation], per_label: int = 20
) -> Dict[str, List[FeatureTotal]]:
    """The global view: the features with the largest total weight per label.

    Sums what the explanations hold: explain with `top_k=None` for complete totals.

    explanations (Sequence[Explanation]): explanations made by one method.
    per_label (int): the number of features kept per label.
    RETURNS (Dict[str, List[FeatureTotal]]): per label, features sorted by |total| (largest
        first; ties by name).
    """
    if not isinstance(per_label, int) or per_label < 1:
        raise DistillError(f"`per_label` must be a positive integer, got {per_label!r}")
    methods = sorted({explanation.method for explanation in explanations})
    if len(methods) > 1:
        raise DistillError(
            f"`explanations` mix methods {methods}: their weights are on different scales "
            "(logit terms and log-odds differences); aggregate one method at a time"
        )
    totals: Dict[str, Dict[str, List[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    for explanation in explanations:
        for label, attributions in explanation.attributions.items():
            for attribution in attributions:
                entry = totals[label][attribution.feature]
                entry[0] += attribution.weight
                entry[1] += 1
    result: Dict[str, List[FeatureTotal]] = {}
    for label, features in totals.items():
        ranked = sorted(features.items(), key=lambda item: (-abs(item[1][0]), item[0]))
        result[label] = [
            FeatureTotal(feature, float(total), int(count))
            for feature, (total, count) in ranked[:per_label]
        ]
    return result


def _ranked(attributions: List[Attribution], top_k: Optional[int]) -> Tuple[Attribution, ...]:
    # Ties (an n-gram and its unigram with the same weight) are broken by position, then text,
    # so that explanations are deterministic.
    kept = [attribution for attribution in attributions if attribution.weight != 0.0]
    kept.sort(key=lambda a: (-abs(a.weight), a.spans[0] if a.spans else (-1, -1), a.feature))
    return tuple(kept if top_k is None else kept[:top_k])


def _disabled_after(nlp: Language, name: str) -> List[str]:
    """The components after the textcat: explanations need nothing they do."""
    return nlp.pipe_names[nlp.pipe_names.index(name) + 1 :]


def _probs(doc: Doc, labels: Tuple[str, ...]) -> Dict[str, float]:
    return {label: float(doc.cats[label]) for label in labels}


def _score_empty_texts_alone(
    nlp: Language, name: str, explanations: List[Explanation]
) -> List[Explanation]:
    """Give texts without tokens the scores `nlp(text)` gives them.

    spaCy's textcat scores an empty doc from the model's biases in a batch with other docs, and
    all-zero alone: without this, an empty text's scores would depend on its batch."""
    empty = [i for i, e in enumerate(explanations) if not len(nlp.make_doc(e.text))]
    if not empty:
        return explanations
    alone = next(nlp.pipe([""], disable=_disabled_after(nlp, name)))
    explanations = list(explanations)
    for i in empty:
        explanations[i] = replace(explanations[i], probs=_probs(alone, explanations[i].labels))
    return explanations


def _explain_exactly(
    nlp: Language, name: str, texts: List[str], top_k: Optional[int], batch_size: int
) -> List[Explanation]:
    pipe = nlp.get_pipe(name)
    labels = tuple(pipe.labels)
    disable = _disabled_after(nlp, name)
    explanations = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        docs = list(nlp.pipe(chunk, batch_size=len(chunk), disable=disable))
        split = decompose_bow(pipe.model, docs)
        bias = {label: float(value) for label, value in zip(labels, split.bias)}
        for index, (text, doc) in enumerate(zip(chunk, docs)):
            attributions = {
                label: _ranked(
                    [
                        Attribution(term.feature, term.spans, float(term.weights[j]))
                        for term in split.terms[index]
                    ],
                    top_k,
                )
                for j, label in enumerate(labels)
            }
            explanations.append(
                Explanation(
                    text=text,
                    labels=labels,
                    probs=_probs(doc, labels),
                    method=EXACT_LINEAR,
                    attributions=attributions,
                    logits={
                        label: float(value) for label, value in zip(labels, split.logits[index])
                    },
                    bias=bias,
                    check=split.max_error(index),
                )
            )
    return explanations


def _without_token(doc: Doc, index: int) -> Doc:
    tokens = [token for token in doc if token.i != index]
    return Doc(
        doc.vocab,
        words=[token.text for token in tokens],
        spaces=[bool(token.whitespace_) for token in tokens],
    )


def _explain_by_occlusion(
    nlp: Language, name: str, texts: List[str], top_k: Optional[int], batch_size: int
) -> List[Explanation]:
    labels = tuple(nlp.get_pipe(name).labels)
    disable = _disabled_after(nlp, name)
    explanations: List[Explanation] = []
    # Each text goes in one batch with its variants: a one-token text's variant is an empty doc,
    # which spaCy's textcat scores all-zero when it sits in a batch of empty docs only.
    group: List[Tuple[str, List[Doc]]] = []
    size = 0
    for position, text in enumerate(texts):
        doc = nlp.make_doc(text)
        docs = [doc] + [_without_token(doc, i) for i in range(len(doc))]
        group.append((text, docs))
        size += len(docs)
        if size >= batch_size or position == len(texts) - 1:
            flat = [doc for _, docs in group for doc in docs]
            scored = iter(nlp.pipe(flat, batch_size=len(flat), disable=disable))
            for text, docs in group:
                done = [next(scored) for _ in docs]
                explanations.append(_occlusion_explanation(text, done, labels, top_k))
            group, size = [], 0
    return explanations


def _log_odds(probs: List[float]) -> numpy.ndarray:
    # float32 scores carry no information beyond ~1e-7 from 0 or 1.
    clipped = numpy.clip(numpy.asarray(probs, dtype="float64"), _EPSILON, 1.0 - _EPSILON)
    return numpy.log(clipped) - numpy.log1p(-clipped)


def _occlusion_explanation(
    text: str, docs: List[Doc], labels: Tuple[str, ...], top_k: Optional[int]
) -> Explanation:
    full, variants = docs[0], docs[1:]
    probs = _probs(full, labels)
    with_token = _log_odds([probs[label] for label in labels])
    attributions: Dict[str, List[Attribution]] = {label: [] for label in labels}
    for token, variant in zip(full, variants):
        without = _log_odds([variant.cats[label] for label in labels])
        span = ((token.idx, token.idx + len(token)),)
        for label, drop in zip(labels, with_token - without):
            attributions[label].append(Attribution(token.text, span, float(drop)))
    return Explanation(
        text=text,
        labels=labels,
        probs=probs,
        method=OCCLUSION,
        attributions={label: _ranked(items, top_k) for label, items in attributions.items()},
    )


__all__ = [
    "Attribution",
    "EXACT_LINEAR",
    "Explanation",
    "FeatureTotal",
    "METHODS",
    "OCCLUSION",
    "explain_texts",
    "top_features",
]
