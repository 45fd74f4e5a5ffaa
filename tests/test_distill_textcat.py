import numpy
import pytest
import spacy
from spacy.training import Example

from spacy_distill.errors import LabelMismatchError, UnsupportedModelError
from spacy_distill.pipeline.distill_textcat import (
    DistillTextCategorizer,
)

from .conftest import make_target_docs

# A toy teacher with graded, non-0/1 beliefs: the student must reproduce these numbers.
TEACHER = [
    ("free cash prize", [0.05, 0.95]),
    ("free lunch today", [0.6, 0.4]),
    ("see you at lunch", [0.9, 0.1]),
    ("cash please", [0.3, 0.7]),
    ("meeting moved", [0.8, 0.2]),
]


def _examples(nlp, docs):
    return [Example(nlp.make_doc(doc.text), doc) for doc in docs]


def _train(nlp, examples, steps):
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01  # toy data: converge in a few hundred steps
    losses = []
    for _ in range(steps):
        step_losses = {}
        nlp.update(examples, sgd=optimizer, losses=step_losses)
        losses.append(step_losses["textcat"])
    return losses


@pytest.mark.parametrize("arch", ["bow", "cnn"])
def test_student_reproduces_teacher_distribution(arch):
    nlp = spacy.blank("en")
    config = {
        "loss": {"@losses": "spacy-distill.SoftTargetLoss.v1", "temperature": 2.0, "alpha": 1.0}
    }
    if arch == "cnn":
        config["model"] = {
            "@architectures": "spacy.TextCatReduce.v1",
            "exclusive_classes": True,
            "use_reduce_first": False,
            "use_reduce_last": False,
            "use_reduce_max": False,
            "use_reduce_mean": True,
            "tok2vec": {
                "@architectures": "spacy.HashEmbedCNN.v2",
                "pretrained_vectors": None,
                "width": 16,
                "depth": 1,
                "embed_size": 200,
                "window_size": 1,
                "maxout_pieces": 2,
                "subword_features": False,
            },
        }
    textcat = nlp.add_pipe("distill_textcat", name="textcat", config=config)
    assert isinstance(textcat, DistillTextCategorizer)
    examples = _examples(nlp, make_target_docs([(t, p, {}) for t, p in TEACHER]))
    losses = _train(nlp, examples, 300)
    assert losses[-1] < losses[0] * 0.05
    assert textcat.labels == ("ham", "spam")  # read from the targets: no gold anywhere
    for (text, probs), doc in zip(TEACHER, nlp.pipe(t for t, _ in TEACHER)):
        assert doc.cats["spam"] == pytest.approx(probs[1], abs=0.05), text
        assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)


def test_multilabel_student_reproduces_teacher():
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "distill_textcat_multilabel",
        name="textcat",
        config={
            "loss": {"@losses": "spacy-distill.SoftTargetLoss.v1", "temperature": 1.0, "alpha": 1.0}
        },
    )
    rows = [
        ("free cash", [0.9, 0.2, 0.7]),
        ("hello friend", [0.1, 0.8, 0.3]),
        ("cash friend", [0.6, 0.5, 0.5]),
    ]
    docs = make_target_docs(
        [(t, p, {}) for t, p in rows], labels=("spam", "social", "money"), exclusive=False
    )
    _train(nlp, _examples(nlp, docs), 400)
    for (text, probs), doc in zip(rows, nlp.pipe(t for t, _ in rows)):
        numpy.testing.assert_allclose(
            [doc.cats[label] for label in ("spam", "social", "money")], probs, atol=0.05
        )


def test_alpha_zero_learns_gold_and_ignores_teacher():
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "distill_textcat",
        name="textcat",
        config={"loss": {"@losses": "spacy-distill.SoftTargetLoss.v1", "alpha": 0.0}},
    )
    # the teacher says the opposite of gold
    docs = make_target_docs(
        [
            ("free cash", [0.9, 0.1], {"ham": 0.0, "spam": 1.0}),
            ("see you", [0.1, 0.9], {"ham": 1.0, "spam": 0.0}),
        ]
    )
    _train(nlp, _examples(nlp, docs), 100)
    assert nlp("free cash").cats["spam"] > 0.9
    assert nlp("see you").cats["ham"] > 0.9


def test_inference_is_textcat_and_survives_serialization(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("distill_textcat", name="textcat")
    _train(nlp, _examples(nlp, make_target_docs([(t, p, {}) for t, p in TEACHER])), 20)
    texts = [t for t, _ in TEACHER] + ["something unseen"]
    before = [doc.cats for doc in nlp.pipe(texts)]
    # The same weights in spaCy's own textcat predict the same cats.
    plain = spacy.blank("en")
    plain_textcat = plain.add_pipe(
        "textcat", config={"model": nlp.config["components"]["textcat"]["model"]}
    )
    plain_textcat.from_bytes(nlp.get_pipe("textcat").to_bytes(exclude=["vocab"]))
    for a, b in zip(before, (doc.cats for doc in plain.pipe(texts))):
        for label in a:
            assert a[label] == pytest.approx(b[label], abs=1e-6)
    nlp.to_disk(tmp_path / "student")
    loaded = spacy.load(tmp_path / "student")
    assert loaded.get_pipe_meta("textcat").factory == "distill_textcat"
    assert loaded.get_pipe("textcat").loss.temperature == 2.0
    for a, b in zip(before, (doc.cats for doc in loaded.pipe(texts))):
        assert a == pytest.approx(b, abs=1e-7)


def test_scores_report_teacher_agreement_next_to_gold_metrics():
    nlp = spacy.blank("en")
    nlp.add_pipe("distill_textcat", name="textcat")
    docs = make_target_docs(
        [
            (t, p, {"ham": float(p[0] > 0.5), "spam": float(p[0] <= 0.5)} if i % 2 else {})
            for i, (t, p) in enumerate(TEACHER)
        ]
    )
    examples = _examples(nlp, docs)
    _train(nlp, examples, 50)
    scores = nlp.evaluate(examples)
    assert scores["cats_teacher_agreement"] == pytest.approx(1.0)
    assert scores["cats_teacher_kl"] < 0.5
    # The two gold docs ("free lunch today": ham, "cash please": spam) are decided as the teacher
    # does, so the gold scores are perfect; a constant (majority) student gets macro F 1/3.
    assert scores["cats_score"] == pytest.approx(1.0)
    assert scores["cats_macro_f"] == pytest.approx(1.0)
    assert "cats_macro_f" in scores
    weights = nlp.config["training"]["score_weights"]
    assert "cats_teacher_agreement" in weights


@pytest.mark.parametrize("exclusive", [True, False])
def test_teacher_agreement_and_kl_match_hand_computed_values(exclusive):
    from spacy_distill.training.scoring import score_teacher_agreement

    rows = (
        [("a b", [0.8, 0.2], {}), ("c d", [0.3, 0.7], {})]
        if exclusive
        else [("a b", [0.9, 0.5], {})]
    )
    docs = make_target_docs(rows, exclusive=exclusive)
    examples = []
    for doc in docs:
        predicted = spacy.blank("en").make_doc(doc.text)
        predicted.cats = {"ham": 0.6, "spam": 0.4}
        examples.append(Example(predicted, doc))
    scores = score_teacher_agreement(examples, labels=["ham", "spam"], multi_label=not exclusive)
    if exclusive:
        # Argmax: doc 1 ham == ham, doc 2 spam != ham -> 1/2. KL(p || q) per doc:
        # .8 ln(.8/.6) + .2 ln(.2/.4) = 0.0915162; .3 ln(.3/.6) + .7 ln(.7/.4) = 0.1837869.
        assert scores["cats_teacher_agreement"] == pytest.approx(0.5)
        assert scores["cats_teacher_kl"] == pytest.approx((0.0915162 + 0.1837869) / 2, rel=1e-5)
    else:
        # Per label decisions at 0.5: ham 0.9 / 0.6 agree, spam 0.5 / 0.4 do not -> 1/2. Bernoulli
        # KL summed over labels: KL(.9 || .6) + KL(.5 || .4) = 0.2262892 + 0.0204110 = 0.2467002.
        assert scores["cats_teacher_agreement"] == pytest.approx(0.5)
        assert scores["cats_teacher_kl"] == pytest.approx(0.2467002, rel=1e-5)


def test_label_mismatch_and_kind_mismatch_fail_clearly():
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("distill_textcat", name="textcat")
    docs = make_target_docs([("free cash", [0.3, 0.7], {})])
    examples = _examples(nlp, docs)
    textcat.initialize(lambda: examples, labels=["ham", "spam", "eggs"])
    with pytest.raises(LabelMismatchError, match=r"missing: \['eggs'\]"):
        textcat.update(examples)
    other = spacy.blank("en").add_pipe("distill_textcat_multilabel", name="textcat")
    other.initialize(lambda: examples)
    with pytest.raises(LabelMismatchError, match="use 'distill_textcat'"):
        other.update(examples)


def test_label_order_of_targets_may_differ_from_component():
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe(
        "distill_textcat",
        name="textcat",
        config={
            "loss": {"@losses": "spacy-distill.SoftTargetLoss.v1", "temperature": 1.0, "alpha": 1.0}
        },
    )
    docs = make_target_docs([("free cash", [0.3, 0.7], {})], labels=("ham", "spam"))
    examples = _examples(nlp, docs)
    textcat.initialize(lambda: examples, labels=["spam", "ham"])
    truths = textcat._examples_to_soft_targets(examples)
    numpy.testing.assert_allclose(numpy.exp(truths.teacher[0]), [0.7, 0.3], atol=1e-5)


def test_teacher_student_loss_signature():
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("distill_textcat", name="textcat")
    assert textcat.is_distillable
    teacher = numpy.log(numpy.asarray([[0.2, 0.8]], dtype="f"))
    loss, grad = textcat.get_teacher_student_loss(teacher, teacher.copy())
    assert loss == pytest.approx(0.0, abs=1e-6) and grad.shape == (1, 2)
    loss, grad = textcat.get_teacher_student_loss(teacher, numpy.zeros((1, 2), dtype="f"))
    assert loss > 0 and grad[0, 1] < 0


def test_model_without_output_layer_fails_at_initialize():
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "distill_textcat",
        name="textcat",
        config={
            "model": {
                "@architectures": "spacy.TextCatBOW.v3",
                "exclusive_classes": True,
                "ngram_size": 1,
                "no_output_layer": True,
            }
        },
    )
    examples = _examples(nlp, make_target_docs([(t, p, {}) for t, p in TEACHER]))
    with pytest.raises(UnsupportedModelError, match="no_output_layer"):
        nlp.initialize(lambda: examples)


def test_empty_batch_is_skipped():
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("distill_textcat", name="textcat")
    examples = _examples(nlp, make_target_docs([(t, p, {}) for t, p in TEACHER]))
    nlp.initialize(lambda: examples)
    empty = _examples(nlp, make_target_docs([("", [0.5, 0.5], {})]))
    assert textcat.update(empty) == {"textcat": 0.0}
