"""Teacher word pieces aligned to spaCy tokens by character offsets, on texts where the two
tokenizations disagree: punctuation, emoji, contractions, whitespace runs, truncated docs."""

import numpy
import pytest
import spacy

from spacy_distill.errors import DistillError
from spacy_distill.hidden.alignment import (
    align_ragged,
    align_to_tokens,
    pool_pieces,
    select_layer,
    token_spans,
    trim_span,
)

TRICKY = [
    "Hello, world!!! (really?)",
    "free 😀 cash 🎉🎉 now",
    "I don't think we can't, y'all",
    "see   you \n\n at\tlunch  ",
    "  leading spaces and e-mail: a.b@c.de",
]


def test_pieces_average_onto_tokens_and_uncovered_tokens_get_zeros():
    nlp = spacy.blank("en")
    text = "don't  stop!"
    doc = nlp.make_doc(text)
    assert [t.text for t in doc] == ["do", "n't", " ", "stop", "!"]
    # [CLS] "don" "'t" "Ġstop" "!" [SEP]: "don" straddles "do" and "n't"; "Ġstop" starts at a space.
    pieces = [(0, 0), (0, 3), (3, 5), (6, 11), (11, 12), (0, 0)]
    states = numpy.arange(6 * 2, dtype="float32").reshape(6, 2)
    vectors, mask = align_to_tokens(text, token_spans(doc), pieces, states)
    assert mask.tolist() == [True, True, False, True, True]
    numpy.testing.assert_allclose(vectors[0], states[1])  # "do" <- "don"
    numpy.testing.assert_allclose(vectors[1], states[1:3].mean(axis=0))  # "n't" <- "don", "'t"
    numpy.testing.assert_allclose(vectors[2], [0.0, 0.0])  # the whitespace token: no piece
    numpy.testing.assert_allclose(vectors[3], states[3])  # "stop" <- "Ġstop" (space trimmed)
    numpy.testing.assert_allclose(vectors[4], states[4])


def test_trim_span_and_empty_inputs():
    assert trim_span("a  bc ", (1, 6)) == (3, 5)
    assert trim_span("   ", (0, 3)) == (3, 3)
    vectors, mask = align_to_tokens("", [], [(0, 0)], numpy.ones((1, 3)))
    assert vectors.shape == (0, 3) and mask.shape == (0,)
    with pytest.raises(DistillError, match="offsets"):
        align_to_tokens("ab", [(0, 2)], [(0, 1)], numpy.ones((2, 3)))


def test_ragged_alignment_and_pooling():
    states = numpy.arange(10, dtype="float32").reshape(5, 2)
    vectors, mask = align_ragged(states, [2, 0, 1], numpy.asarray([1, 2, 4]))
    numpy.testing.assert_allclose(vectors, [[3, 4], [0, 0], [8, 9]])
    assert mask.tolist() == [True, False, True]
    numpy.testing.assert_allclose(pool_pieces(states, "mean"), states.mean(axis=0))
    numpy.testing.assert_allclose(pool_pieces(states, "cls"), states[0])
    numpy.testing.assert_allclose(pool_pieces(states, "last"), states[-1])
    with pytest.raises(DistillError, match="pooling"):
        pool_pieces(states, "max")


def test_layer_selection():
    layers = [numpy.full((2, 2), float(i)) for i in range(4)]
    assert select_layer(layers, -1, None)[0, 0] == 3.0
    assert select_layer(layers, 1, None)[0, 0] == 1.0
    assert select_layer(layers, None, 2)[0, 0] == 2.5
    with pytest.raises(DistillError, match="out of range"):
        select_layer(layers, 4, None)
    with pytest.raises(DistillError, match="last_k"):
        select_layer(layers, None, 5)


def _check_alignment(tokenizer, text, max_length=None):
    """Align one-hot piece states, then check each token got exactly its overlapping pieces."""
    nlp = spacy.blank("en")
    doc = nlp.make_doc(text)
    kwargs = {"truncation": True, "max_length": max_length} if max_length else {}
    enc = tokenizer(text, return_offsets_mapping=True, **kwargs)
    offsets = enc["offset_mapping"]
    states = numpy.eye(len(offsets), dtype="float32")
    vectors, mask = align_to_tokens(text, token_spans(doc), offsets, states)
    covered_chars = set()
    for start, end in offsets:
        start, end = trim_span(text, (start, end))
        covered_chars.update(range(start, end))
    for token, vector, has in zip(doc, vectors, mask):
        chars = set(range(token.idx, token.idx + len(token.text)))
        if token.is_space:
            assert not has and not vector.any(), (text, token.text)
            continue
        assert has == bool(chars & covered_chars), (text, token.text)
        if not has:
            assert not vector.any()
            continue
        expected = [
            i
            for i, (s, e) in enumerate(offsets)
            if trim_span(text, (s, e))[1] > trim_span(text, (s, e))[0]
            and set(range(*trim_span(text, (s, e)))) & chars
        ]
        weights = numpy.zeros(len(offsets))
        weights[expected] = 1.0 / len(expected)
        numpy.testing.assert_allclose(
            vector, weights, atol=1e-6, err_msg=f"{text!r}: {token.text!r}"
        )
    # No piece that covers text is lost: its characters belong to some token.
    for i, (s, e) in enumerate(offsets):
        start, end = trim_span(text, (s, e))
        if end > start:
            assert vectors[:, i].sum() > 0, (text, text[start:end])
    return doc, mask


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from transformers import AutoTokenizer

    from .tiny_models import build_tiny_bert, build_tiny_llama

    root = tmp_path_factory.mktemp("hidden_tok")
    return {
        "wordpiece": AutoTokenizer.from_pretrained(build_tiny_bert(root / "bert")),
        "bytelevel": AutoTokenizer.from_pretrained(build_tiny_llama(root / "llama")),
    }


@pytest.mark.parametrize("kind", ["wordpiece", "bytelevel"])
@pytest.mark.parametrize("text", TRICKY)
def test_real_tokenizers_align_by_character_offsets(tokenizers, kind, text):
    doc, mask = _check_alignment(tokenizers[kind], text)
    # Every non-space token is covered when nothing is truncated.
    assert all(has for token, has in zip(doc, mask) if not token.is_space)


@pytest.mark.parametrize("kind", ["wordpiece", "bytelevel"])
def test_tokens_past_truncation_get_the_mask_and_zeros(tokenizers, kind):
    text = " ".join(["free cash now, don't wait!"] * 10)
    doc, mask = _check_alignment(tokenizers[kind], text, max_length=12)
    assert mask[:2].all() and not mask[-5:].any()
