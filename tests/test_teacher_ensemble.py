"""EnsembleTeacher: weighted fusion in probability and log space, label alignment, errors."""

import hashlib
from typing import Sequence

import numpy
import pytest
from spacy.util import load_config_from_str

from spacy_distill.errors import DistillError, LabelMismatchError
from spacy_distill.registry import registry
from spacy_distill.teacher_protocol import Teacher
from spacy_distill.teachers.ensemble import EnsembleTeacher
from spacy_distill.teachers.loading import load_teacher

from .conftest import FakeTeacher

TEXTS = ["free cash now", "see you at lunch", "win win win", "thanks"]


class ConstantTeacher:
    """The same scores for every text: log-probabilities (exclusive) or logits (multi-label)."""

    def __init__(
        self,
        labels: Sequence[str],
        scores: Sequence[float],
        exclusive: bool = True,
        batch_size: int = 2,
    ):
        self.labels = tuple(labels)
        self.exclusive = exclusive
        self.scores = numpy.asarray(scores, dtype="float64")
        self.teacher_id = "constant"
        self.batch_size = batch_size
        self.calls = []

    @property
    def fingerprint(self) -> str:
        key = repr((self.labels, self.scores.tolist(), self.exclusive))
        return hashlib.sha256(key.encode()).hexdigest()

    def score(self, texts):
        self.calls.append(len(texts))
        return numpy.tile(self.scores, (len(texts), 1)).astype("float32")


def fake_spam_probability(text):
    """FakeTeacher's P(spam) (exclusive) or sigmoid of its spam logit (multi-label), by hand."""
    spamminess = sum(text.lower().count(word) for word in ("free", "cash", "win", "prize"))
    return 1 / (1 + numpy.exp(-(1.5 * spamminess - 1.0)))


def test_probability_space_is_the_weighted_mean_of_probabilities():
    fake = FakeTeacher()
    # Column order differs from the fake's: aligned by name. P(spam) = 0.2, P(ham) = 0.8.
    constant = ConstantTeacher(["spam", "ham"], numpy.log([0.2, 0.8]))
    ensemble = EnsembleTeacher({"a": fake, "b": constant}, weights={"a": 3, "b": 1})
    assert ensemble.labels == ("ham", "spam") and ensemble.exclusive
    assert isinstance(ensemble, Teacher)
    scores = ensemble.score(TEXTS)
    assert scores.dtype == numpy.float32 and scores.shape == (len(TEXTS), 2)
    for text, row in zip(TEXTS, scores):
        p_spam = 0.75 * fake_spam_probability(text) + 0.25 * 0.2
        numpy.testing.assert_allclose(numpy.exp(row), [1 - p_spam, p_spam], atol=1e-6)


def test_log_space_is_the_renormalised_weighted_geometric_mean():
    fake = FakeTeacher()
    constant = ConstantTeacher(["spam", "ham"], numpy.log([0.2, 0.8]))
    weights = {"a": 0.75, "b": 0.25}
    ensemble = EnsembleTeacher({"a": fake, "b": constant}, weights=weights, space="log")
    scores = ensemble.score(TEXTS)
    for text, row in zip(TEXTS, scores):
        p = fake_spam_probability(text)
        spam = p**0.75 * 0.2**0.25
        ham = (1 - p) ** 0.75 * 0.8**0.25
        expected = [ham / (ham + spam), spam / (ham + spam)]
        numpy.testing.assert_allclose(numpy.exp(row), expected, atol=1e-6)
    numpy.testing.assert_allclose(numpy.exp(scores).sum(axis=1), 1.0, atol=1e-6)


def test_equal_weights_by_default_and_zero_weight_leaves_a_member_out():
    fake = FakeTeacher()
    constant = ConstantTeacher(["ham", "spam"], numpy.log([0.6, 0.4]))
    equal = EnsembleTeacher({"a": fake, "b": constant})
    assert equal.weights == {"a": 0.5, "b": 0.5}
    p = numpy.asarray([fake_spam_probability(t) for t in TEXTS])
    p_spam = numpy.exp(equal.score(TEXTS))[:, 1]
    numpy.testing.assert_allclose(p_spam, 0.5 * p + 0.5 * 0.4, atol=1e-6)
    # A member that is sure (-inf log-probability) must not turn into NaN at weight 0.
    sure = ConstantTeacher(["ham", "spam"], [0.0, -numpy.inf])
    only_fake = EnsembleTeacher({"a": fake, "b": sure}, weights={"a": 1, "b": 0}, space="log")
    numpy.testing.assert_allclose(only_fake.score(TEXTS), fake.score(TEXTS), atol=1e-6)


def test_multi_label_fusion_in_both_spaces():
    labels = ["ham", "spam", "urgent"]
    fake = FakeTeacher(labels, exclusive=False)  # logits 0, 0, 1.5 * spamminess - 1
    constant = ConstantTeacher(["urgent", "spam", "ham"], [2.0, -1.0, 0.5], exclusive=False)
    sigmoid = lambda z: 1 / (1 + numpy.exp(-numpy.asarray(z, dtype="float64")))  # noqa: E731
    weights = {"a": 0.6, "b": 0.4}
    for space in ("probability", "log"):
        ensemble = EnsembleTeacher({"a": fake, "b": constant}, weights=weights, space=space)
        assert not ensemble.exclusive and ensemble.labels == tuple(labels)
        scores = ensemble.score(TEXTS)
        for text, row in zip(TEXTS, scores):
            p = fake_spam_probability(text)
            fake_logits = numpy.asarray([0.0, 0.0, numpy.log(p / (1 - p))])
            const_logits = numpy.asarray([0.5, -1.0, 2.0])  # aligned to ham, spam, urgent
            if space == "probability":
                expected_p = 0.6 * sigmoid(fake_logits) + 0.4 * sigmoid(const_logits)
                numpy.testing.assert_allclose(sigmoid(row), expected_p, atol=1e-6)
            else:
                expected = 0.6 * fake_logits + 0.4 * const_logits
                numpy.testing.assert_allclose(row, expected, atol=1e-5)


def test_score_with_members_gives_aligned_member_probabilities():
    fake = FakeTeacher()
    constant = ConstantTeacher(["spam", "ham"], numpy.log([0.2, 0.8]))
    ensemble = EnsembleTeacher({"a": fake, "b": constant})
    fused, members = ensemble.score_with_members(TEXTS)
    numpy.testing.assert_allclose(fused, ensemble.score(TEXTS), atol=1e-7)
    assert set(members) == {"a", "b"}
    numpy.testing.assert_allclose(members["a"], numpy.exp(fake.score(TEXTS)), atol=1e-6)
    numpy.testing.assert_allclose(members["b"], numpy.tile([0.8, 0.2], (len(TEXTS), 1)), atol=1e-6)
    for probs in members.values():
        assert probs.dtype == numpy.float32
        numpy.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    empty, empty_members = ensemble.score_with_members([])
    assert empty.shape == (0, 2) and empty_members["a"].shape == (0, 2)


def test_each_member_is_called_with_its_own_batch_size():
    fake = FakeTeacher()
    constant = ConstantTeacher(["ham", "spam"], numpy.log([0.5, 0.5]), batch_size=2)
    ensemble = EnsembleTeacher({"a": fake, "b": constant})
    assert ensemble.batch_size == 3  # the largest member batch size
    ensemble.score(["free"] * 7)
    assert fake.calls == [3, 3, 1] and constant.calls == [2, 2, 2, 1]


def test_mismatched_members_are_named():
    fake = FakeTeacher()
    named = r"'b'.*\['ham', 'eggs'\].*lacks \['spam'\].*extra \['eggs'\]"
    with pytest.raises(LabelMismatchError, match=named):
        EnsembleTeacher({"a": fake, "b": ConstantTeacher(["ham", "eggs"], [0.0, 0.0])})
    with pytest.raises(LabelMismatchError, match=r"'b'.*\['ham', 'spam', 'urgent'\]"):
        EnsembleTeacher({"a": fake, "b": ConstantTeacher(["ham", "spam", "urgent"], [0.0] * 3)})
    with pytest.raises(LabelMismatchError, match="'b' is multi-label"):
        EnsembleTeacher({"a": fake, "b": FakeTeacher(exclusive=False)})
    with pytest.raises(DistillError, match=r"weights name member\(s\) \['c'\]"):
        EnsembleTeacher({"a": fake, "b": FakeTeacher()}, weights={"a": 1, "c": 1})
    with pytest.raises(DistillError, match=r"no weight for member\(s\) \['b'\]"):
        EnsembleTeacher({"a": fake, "b": FakeTeacher()}, weights={"a": 1})
    with pytest.raises(DistillError, match="weight of member 'b'"):
        EnsembleTeacher({"a": fake, "b": FakeTeacher()}, weights={"a": 1, "b": -1})
    with pytest.raises(DistillError, match="space"):
        EnsembleTeacher({"a": fake}, space="logit")
    with pytest.raises(DistillError, match="empty"):
        EnsembleTeacher({})
    with pytest.raises(DistillError, match="member 'a' is a str"):
        EnsembleTeacher({"a": "fake"})


def test_fingerprint_and_teacher_id():
    def build(**kwargs):
        members = {"a": FakeTeacher(), "b": ConstantTeacher(["spam", "ham"], numpy.log([0.2, 0.8]))}
        return EnsembleTeacher(members, **kwargs)

    base = build()
    assert base.teacher_id == "ensemble(a,b)" and len(base.fingerprint) == 64
    assert base.fingerprint == build().fingerprint
    assert base.fingerprint == build(weights={"a": 2, "b": 2}).fingerprint  # normalised: the same
    others = {
        build(weights={"a": 0.7, "b": 0.3}).fingerprint,
        build(space="log").fingerprint,
        EnsembleTeacher({"a": FakeTeacher(nan_on="x"), "b": FakeTeacher()}).fingerprint,
    }
    assert base.fingerprint not in others and len(others) == 3


ENSEMBLE_CFG = """
[teacher]
@teachers = "spacy-distill.EnsembleTeacher.v1"
space = "log"
weights = {"a": 0.7, "b": 0.3}

[teacher.members]

[teacher.members.a]
@teachers = "spacy-distill-test.FakeTeacher.v1"

[teacher.members.b]
@teachers = "spacy-distill-test.FakeTeacher.v1"
labels = ["spam", "ham"]
"""


def test_registry_resolution_from_config(tmp_path):
    teacher = registry.resolve(load_config_from_str(ENSEMBLE_CFG))["teacher"]
    assert isinstance(teacher, EnsembleTeacher)
    assert teacher.names == ("a", "b") and teacher.labels == ("ham", "spam")
    assert teacher.space == "log"
    assert teacher.weights == pytest.approx({"a": 0.7, "b": 0.3})
    # Member b's last column is "ham": aligned by name, its spam push lands on ham.
    _, members = teacher.score_with_members(["free cash"])
    numpy.testing.assert_allclose(members["b"][0], members["a"][0][::-1], atol=1e-6)
    cfg = tmp_path / "ensemble.cfg"
    cfg.write_text(ENSEMBLE_CFG, encoding="utf8")
    loaded = load_teacher(cfg)
    assert loaded.fingerprint == teacher.fingerprint and loaded.teacher_id == "ensemble(a,b)"
