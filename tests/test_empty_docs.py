"""Empty docs in mixed batches: spaCy's n-gram and reduction layers crash; the guard fixes it
without changing any other doc's scores."""

import numpy
import pytest
import spacy
from spacy.training import Example

from spacy_distill.ml.empty_docs import guard_empty_docs, guard_pipeline, needs_guard

from .conftest import SPAM_TEXTS

ARCHITECTURES = {
    "bow_bigrams": {
        "@architectures": "spacy.TextCatBOW.v3",
        "exclusive_classes": True,
        "ngram_size": 2,
        "no_output_layer": False,
        "length": 5000,
    },
    "reduce_cnn": {
        "@architectures": "spacy.TextCatReduce.v1",
        "exclusive_classes": True,
        "use_reduce_first": True,
        "use_reduce_last": True,
        "use_reduce_max": True,
        "use_reduce_mean": True,
        "tok2vec": {
            "@architectures": "spacy.HashEmbedCNN.v2",
            "pretrained_vectors": None,
            "width": 16,
            "depth": 1,
            "embed_size": 500,
            "window_size": 1,
            "maxout_pieces": 2,
            "subword_features": True,
        },
    },
}


def _plain_textcat(arch):
    nlp = spacy.blank("en")
    nlp.add_pipe("textcat", config={"model": ARCHITECTURES[arch]})
    examples = [
        Example.from_dict(
            nlp.make_doc(t),
            {"cats": {"ham": float(label == "ham"), "spam": float(label == "spam")}},
        )
        for t, label in SPAM_TEXTS
    ]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    return nlp


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_guard_scores_empty_docs_and_changes_nothing_else(arch):
    nlp = _plain_textcat(arch)
    texts = ["win free cash", "", "see you at lunch", ""]
    alone = [nlp(t).cats for t in texts if t]  # one doc per batch: spaCy handles these itself
    with pytest.raises((IndexError, ValueError)):
        list(nlp.pipe(texts))  # the bug the guard exists for (spaCy 3.8 / thinc 8.3)
    assert needs_guard(nlp.get_pipe("textcat").model)
    assert guard_empty_docs(nlp.get_pipe("textcat").model) > 0
    assert guard_empty_docs(nlp.get_pipe("textcat").model) == 0  # idempotent
    docs = list(nlp.pipe(texts))
    mixed = [doc.cats for doc in docs if doc.text]
    for a, b in zip(alone, mixed):
        assert a == pytest.approx(b, abs=1e-6)
    empty = [doc.cats for doc in docs if not doc.text]
    assert empty[0] == empty[1] and all(numpy.isfinite(list(c.values())).all() for c in empty)


def test_guard_lets_training_pass_gradients_through_batches_with_empty_docs():
    nlp = _plain_textcat("reduce_cnn")
    guard_pipeline(nlp)
    examples = [
        Example.from_dict(nlp.make_doc(t), {"cats": {"ham": 1.0, "spam": 0.0}})
        for t in ("", "hello there", "")
    ]
    losses = nlp.update(examples)
    assert numpy.isfinite(losses["textcat"])
