"""Explanations of a textcat's verdicts: exact n-gram terms for bag-of-words students, occlusion
for any other model."""

import numpy
import pytest
import spacy

from spacy_distill.audit.explain import (
    EXACT_LINEAR,
    OCCLUSION,
    explain_texts,
    top_features,
)
from spacy_distill.errors import DistillError
from spacy_distill.probabilities import sigmoid, softmax

from .conftest import train_distilled_student

TEXTS = [
    "hello there, free cash for you",
    "claim your free reward today",
    "see you at lunch",
    "free cash free",
    "free",
    "",
]


@pytest.fixture(scope="module")
def bow_student(tmp_path_factory):
    path = train_distilled_student(tmp_path_factory.mktemp("bow"), arch="bow", steps=30)
    return spacy.load(path)


@pytest.fixture(scope="module")
def bow_multilabel_student(tmp_path_factory):
    path = train_distilled_student(
        tmp_path_factory.mktemp("bow_ml"), arch="bow", exclusive=False, steps=30
    )
    return spacy.load(path)


@pytest.fixture(scope="module")
def ensemble_teacher(spacy_teacher_path):
    # spaCy's default textcat: a BOW + CNN ensemble, not linear in its features.
    return spacy.load(spacy_teacher_path)


def _weight(explanation, label, feature):
    found = [a for a in explanation.attributions[label] if a.feature == feature]
    assert len(found) == 1, (feature, explanation.attributions[label])
    return found[0]


@pytest.mark.parametrize("student", ["bow_student", "bow_multilabel_student"])
def test_exact_terms_add_up_to_the_logits(request, student):
    nlp = request.getfixturevalue(student)
    explanations = explain_texts(nlp, TEXTS, method="auto", top_k=None)
    assert [e.text for e in explanations] == TEXTS
    exclusive = nlp.get_pipe_meta("textcat").factory == "distill_textcat"
    for explanation in explanations:
        assert explanation.method == EXACT_LINEAR
        assert explanation.check is not None and explanation.check < 1e-4
        labels = explanation.labels
        # Recompute the sum from the attributions themselves (check is computed inside).
        for label in labels:
            total = explanation.bias[label] + sum(a.weight for a in explanation.attributions[label])
            assert total == pytest.approx(explanation.logits[label], abs=1e-4)
        assert explanation.probs == pytest.approx(nlp(explanation.text).cats, abs=1e-6)
        if not explanation.text:
            continue  # spaCy gives an empty doc alone all-zero cats, not the biases' scores
        # The logits are the activation's inputs: they give the pipeline's own doc.cats.
        logits = numpy.array([explanation.logits[label] for label in labels])
        probs = softmax(logits) if exclusive else sigmoid(logits)
        assert probs == pytest.approx([explanation.probs[label] for label in labels], abs=1e-5)
    # A trained student has learnt something: real, nonzero terms for its training words.
    assert abs(_weight(explanations[0], "spam", "free").weight) > 1e-3


def test_exact_terms_scale_with_counts_and_keep_every_span(bow_student):
    once, twice = explain_texts(bow_student, ["free cash", "free cash free"], top_k=None)
    free_once, free_twice = _weight(once, "spam", "free"), _weight(twice, "spam", "free")
    assert free_once.spans == ((0, 4),)
    assert free_twice.spans == ((0, 4), (10, 14))
    # Linear in the counts: two occurrences are exactly twice one.
    assert free_twice.weight == pytest.approx(2 * free_once.weight, rel=1e-5)
    bigram = _weight(twice, "spam", "free cash")
    assert bigram.spans == ((0, 9),)
    assert bigram.weight == pytest.approx(_weight(once, "spam", "free cash").weight, rel=1e-5)
    # Exclusive binary: whatever pushes spam up pushes ham down by the same amount.
    assert _weight(twice, "ham", "free").weight == pytest.approx(-free_twice.weight, rel=1e-5)


def test_attributions_are_ranked_by_magnitude_and_cut_at_top_k(bow_student):
    (full,) = explain_texts(bow_student, [TEXTS[1]], top_k=None)
    (cut,) = explain_texts(bow_student, [TEXTS[1]], top_k=3)
    weights = [abs(a.weight) for a in full.attributions["spam"]]
    assert weights == sorted(weights, reverse=True)
    assert cut.attributions["spam"] == full.attributions["spam"][:3]
    # The check is over every term, not just the ones kept.
    assert cut.check == full.check


def test_occlusion_finds_the_spammy_word(bow_student, ensemble_teacher):
    (student,) = explain_texts(bow_student, [TEXTS[0]], method="occlusion", top_k=2)
    assert student.method == OCCLUSION and student.check is None and student.logits is None
    assert student.probs["spam"] > 0.5
    assert {a.feature for a in student.attributions["spam"]} == {"free", "cash"}
    assert all(a.weight > 0 for a in student.attributions["spam"])
    # "auto" on a model that is not linear in its features falls back to occlusion.
    (teacher,) = explain_texts(ensemble_teacher, ["urgent you won cash"], method="auto")
    assert teacher.method == OCCLUSION
    top = teacher.attributions["spam"][0]
    assert (top.feature, top.spans) == ("cash", ((15, 19),))
    assert top.weight > 0


def test_explanations_are_deterministic_and_batch_independent(bow_student, ensemble_teacher):
    for nlp in (bow_student, ensemble_teacher):
        first = explain_texts(nlp, TEXTS, batch_size=256)
        again = explain_texts(nlp, TEXTS, batch_size=256)
        one_by_one = explain_texts(nlp, TEXTS, batch_size=1)
        assert first == again
        for batched, alone in zip(first, one_by_one):
            assert batched.method == alone.method
            assert batched.probs == pytest.approx(alone.probs, abs=1e-6)
            for label in batched.labels:
                assert [a.feature for a in batched.attributions[label]] == [
                    a.feature for a in alone.attributions[label]
                ]
                assert [a.weight for a in batched.attributions[label]] == pytest.approx(
                    [a.weight for a in alone.attributions[label]], abs=1e-5
                )


def test_empty_and_one_token_texts(bow_student, ensemble_teacher):
    for nlp in (bow_student, ensemble_teacher):
        empty, single = explain_texts(nlp, ["", "cash"], method="occlusion")
        assert all(not items for items in empty.attributions.values())
        # The one-token text is compared with the empty doc (scored from the biases).
        assert [a.feature for a in single.attributions["spam"]] == ["cash"]
    (empty,) = explain_texts(bow_student, [""], method="exact-linear")
    assert empty.check == 0.0 and empty.logits == pytest.approx(empty.bias)


def test_top_features_sums_over_explanations(bow_student):
    explanations = explain_texts(bow_student, ["free cash", "free money", "see you"], top_k=None)
    view = top_features(explanations, per_label=3)
    assert set(view) == {"ham", "spam"}
    spam = view["spam"]
    assert len(spam) == 3
    assert [abs(f.total) for f in spam] == sorted((abs(f.total) for f in spam), reverse=True)
    free = next(
        (f for f in top_features(explanations, per_label=100)["spam"] if f.feature == "free")
    )
    expected = sum(_weight(e, "spam", "free").weight for e in explanations[:2])
    assert free.count == 2 and free.total == pytest.approx(expected)


def test_errors_name_the_argument(bow_student, ensemble_teacher):
    with pytest.raises(DistillError, match="`method`.*'shap'"):
        explain_texts(bow_student, ["x"], method="shap")
    with pytest.raises(DistillError, match="exact-linear.*component 'textcat'"):
        explain_texts(ensemble_teacher, ["x"], method="exact-linear")
    with pytest.raises(DistillError, match="no text classifier"):
        explain_texts(spacy.blank("en"), ["x"])
    with pytest.raises(DistillError, match="no component 'nope'"):
        explain_texts(bow_student, ["x"], component="nope")
    with pytest.raises(DistillError, match="`top_k`"):
        explain_texts(bow_student, ["x"], top_k=0)
    with pytest.raises(DistillError, match=r"`texts\[1\]`"):
        explain_texts(bow_student, ["x", None])
    exact = explain_texts(bow_student, ["free"])
    occluded = explain_texts(bow_student, ["free"], method="occlusion")
    with pytest.raises(DistillError, match="`explanations` mix methods"):
        top_features(exact + occluded)
    with pytest.raises(DistillError, match="`per_label`"):
        top_features(exact, per_label=0)


@pytest.mark.parametrize("architecture", ["spacy.TextCatBOW.v2", "spacy.TextCatBOW.v3"])
def test_exact_terms_for_spacys_own_bow_textcat(architecture):
    """An exported student is spaCy's `textcat`, unguarded here: spaCy's per-doc n-grams, and
    TextCatBOW.v2's SparseLinear.v1 weight layout as well as v3's."""
    from spacy.training import Example

    from .conftest import SPAM_TEXTS

    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    model = {"@architectures": architecture, "exclusive_classes": True, "ngram_size": 3}
    model["no_output_layer"] = False
    nlp.add_pipe("textcat", config={"model": model})
    examples = [
        Example.from_dict(
            nlp.make_doc(text), {"cats": {"ham": float(y == "ham"), "spam": float(y == "spam")}}
        )
        for text, y in SPAM_TEXTS
    ]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(10):
        nlp.update(examples, sgd=optimizer)
    texts = [text for text in TEXTS if text] + ["win a free prize now"]
    explanations = explain_texts(nlp, texts, top_k=None)
    assert {e.method for e in explanations} == {EXACT_LINEAR}
    assert max(e.check for e in explanations) < 1e-4
    trigram = _weight(explanations[-1], "spam", "a free prize")
    assert trigram.spans == ((4, 16),) and trigram.weight > 0
