"""The batched n-gram features: exactly spaCy's `extract_ngrams` output, empty docs included."""

import numpy
import pytest
import spacy
from spacy.ml import extract_ngrams
from spacy.ml.extract_ngrams import forward as spacy_forward

from spacy_distill.ml.batched_ngrams import extract_ngrams_batched

from .conftest import SPAM_TEXTS

TEXTS = [text for text, _ in SPAM_TEXTS] + [
    "a",
    "a a a",
    "b a b a b",
    "win win win free free",
    "ok",
]


@pytest.mark.parametrize("ngram_size", [1, 2, 3, 4])
def test_batched_features_equal_spacys_key_for_key(ngram_size):
    nlp = spacy.blank("en")
    docs = list(nlp.pipe(TEXTS))
    layer = extract_ngrams(ngram_size)
    (keys, vals, lengths), _ = spacy_forward(layer, docs, False)
    (b_keys, b_vals, b_lengths), _ = extract_ngrams_batched(layer, docs, False)
    assert (
        b_keys.dtype == keys.dtype
        and b_vals.dtype == vals.dtype
        and b_lengths.dtype == lengths.dtype
    )
    numpy.testing.assert_array_equal(b_keys, keys)
    numpy.testing.assert_array_equal(b_vals, vals)
    numpy.testing.assert_array_equal(b_lengths, lengths)


def test_empty_docs_have_no_features_and_leave_the_others_unchanged():
    nlp = spacy.blank("en")
    layer = extract_ngrams(2)
    texts = ["", "win free cash", "", "see you at lunch", ""]
    (keys, vals, lengths), _ = extract_ngrams_batched(layer, list(nlp.pipe(texts)), False)
    assert lengths.tolist()[0] == lengths.tolist()[2] == lengths.tolist()[4] == 0
    (ref_keys, ref_vals, ref_lengths), _ = spacy_forward(layer, [nlp(t) for t in texts if t], False)
    numpy.testing.assert_array_equal(keys, ref_keys)
    numpy.testing.assert_array_equal(vals, ref_vals)
    assert [n for n in lengths.tolist() if n] == ref_lengths.tolist()
    (keys, vals, lengths), _ = extract_ngrams_batched(layer, [nlp(""), nlp("")], False)
    assert len(keys) == len(vals) == 0 and lengths.tolist() == [0, 0]
