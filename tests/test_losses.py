import numpy
import pytest
from thinc.api import registry

from spacy_distill.training.losses import SoftTargetLoss, SoftTargets, make_soft_targets


def _truths(exclusive, n=5, n_labels=3, seed=0):
    rng = numpy.random.default_rng(seed)
    truths = make_soft_targets(n, n_labels, exclusive)
    teacher = rng.normal(size=(n, n_labels)) * 2
    if exclusive:
        teacher = teacher - numpy.log(numpy.exp(teacher).sum(axis=1, keepdims=True))
    truths.teacher[:] = teacher
    # doc 0: teacher + gold; 1: teacher only; 2: gold only; 3: teacher + gold; 4: nothing
    truths.teacher_mask[:] = [1, 1, 0, 1, 0]
    for i in (0, 2, 3):
        if exclusive:
            truths.gold[i, rng.integers(n_labels)] = 1.0
            truths.gold_mask[i] = 1.0
        else:
            truths.gold[i] = rng.integers(0, 2, size=n_labels)
            truths.gold_mask[i] = 1.0
    if not exclusive:
        truths.gold_mask[3, 1] = 0.0  # a missing gold value for one label
    return truths


def _numeric_grad(loss, z, truths, eps=1e-5):
    grad = numpy.zeros_like(z, dtype="float64")
    for index in numpy.ndindex(*z.shape):
        up, down = z.astype("float64").copy(), z.astype("float64").copy()
        up[index] += eps
        down[index] -= eps
        grad[index] = (loss.get_loss(up, truths) - loss.get_loss(down, truths)) / (2 * eps)
    return grad


@pytest.mark.parametrize("exclusive", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_gradient_matches_finite_differences(exclusive, temperature, alpha):
    truths = _truths(exclusive)
    z = numpy.random.default_rng(1).normal(size=truths.teacher.shape)
    loss = SoftTargetLoss(temperature=temperature, alpha=alpha)
    grad, value = loss(z.astype("float64"), truths)
    assert value > 0
    numeric = _numeric_grad(loss, z, truths)
    numpy.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-7)
    # the doc with neither teacher nor gold contributes nothing
    assert numpy.all(grad[4] == 0)


def test_exclusive_loss_formula():
    """One doc with teacher and gold: alpha*T^2*KL + (1-alpha)*CE, written out by hand."""
    T, alpha = 3.0, 0.25
    t = numpy.log(numpy.array([[0.7, 0.2, 0.1]]))
    z = numpy.array([[0.5, -1.0, 2.0]])
    truths = SoftTargets(t, numpy.ones(1), numpy.array([[0.0, 1.0, 0.0]]), numpy.ones((1, 3)), True)
    p = numpy.exp(t / T) / numpy.exp(t / T).sum()
    q = numpy.exp(z / T) / numpy.exp(z / T).sum()
    kl = (p * numpy.log(p / q)).sum()
    ce = -numpy.log(numpy.exp(z[0, 1]) / numpy.exp(z).sum())
    expected = alpha * T * T * kl + (1 - alpha) * ce
    assert SoftTargetLoss(temperature=T, alpha=alpha).get_loss(z, truths) == pytest.approx(expected)


def test_multilabel_loss_formula():
    T, alpha = 2.0, 0.5
    t = numpy.array([[1.0, -2.0]])
    z = numpy.array([[0.0, 0.5]])
    gold = numpy.array([[1.0, 0.0]])
    truths = SoftTargets(t, numpy.ones(1), gold, numpy.ones((1, 2)), False)
    sig = lambda x: 1 / (1 + numpy.exp(-x))  # noqa: E731
    p, q = sig(t / T), sig(z / T)
    kl = (p * numpy.log(p / q) + (1 - p) * numpy.log((1 - p) / (1 - q))).sum()
    s = sig(z)
    bce = -(gold * numpy.log(s) + (1 - gold) * numpy.log(1 - s)).sum()
    expected = alpha * T * T * kl + (1 - alpha) * bce
    assert SoftTargetLoss(temperature=T, alpha=alpha).get_loss(z, truths) == pytest.approx(expected)


@pytest.mark.parametrize("exclusive", [True, False])
def test_missing_gold_uses_full_teacher_term_and_missing_teacher_full_gold_term(exclusive):
    truths = _truths(exclusive)
    z = numpy.random.default_rng(2).normal(size=truths.teacher.shape)
    for alpha in (0.2, 0.9):
        loss = SoftTargetLoss(temperature=2.0, alpha=alpha)
        only_teacher = SoftTargets(
            truths.teacher[1:2],
            truths.teacher_mask[1:2],
            truths.gold[1:2],
            truths.gold_mask[1:2],
            exclusive,
        )
        only_gold = SoftTargets(
            truths.teacher[2:3],
            truths.teacher_mask[2:3],
            truths.gold[2:3],
            truths.gold_mask[2:3],
            exclusive,
        )
        pure_teacher = SoftTargetLoss(temperature=2.0, alpha=1.0)
        pure_gold = SoftTargetLoss(temperature=2.0, alpha=0.0)
        # alpha does not scale a term whose partner is missing
        assert loss.get_loss(z[1:2], only_teacher) == pytest.approx(
            pure_teacher.get_loss(z[1:2], only_teacher)
        )
        assert loss.get_loss(z[2:3], only_gold) == pytest.approx(
            pure_gold.get_loss(z[2:3], only_gold)
        )


@pytest.mark.parametrize("exclusive", [True, False])
def test_teacher_term_is_zero_when_student_matches(exclusive):
    truths = _truths(exclusive)
    truths.gold_mask[:] = 0.0
    grad, value = SoftTargetLoss(temperature=4.0, alpha=1.0)(
        truths.teacher.astype("float64"), truths
    )
    assert value == pytest.approx(0.0, abs=1e-9)
    assert numpy.abs(grad).max() < 1e-9


def test_temperature_softens_what_the_student_sees():
    """At high T the student and teacher are compared through softened distributions, and the
    T^2 factor keeps the teacher term's gradient on the scale of T=1 (Hinton et al.): both the
    gradient and the loss match values worked out by hand."""
    truths = make_soft_targets(1, 2, True)
    truths.teacher[0] = numpy.log([0.99, 0.01])
    truths.teacher_mask[0] = 1
    z = numpy.array([[-3.0, 3.0]])
    g1, loss1 = SoftTargetLoss(temperature=1.0, alpha=1.0)(z, truths)
    g4, loss4 = SoftTargetLoss(temperature=4.0, alpha=1.0)(z, truths)
    # d(T^2 KL)/dz = T * (softmax(z / T) - softmax(t / T)), one doc so no averaging.
    # T=1: q = softmax([-3, 3]), q0 = 1 / (1 + e^6) = 0.0024726; p0 = 0.99.
    #      g0 = 0.0024726 - 0.99 = -0.9875274, g1 = -g0.
    # T=4: q0 = 1 / (1 + e^1.5) = 0.1824255; p0 = 0.99^.25 / (0.99^.25 + 0.01^.25) = 0.7592880.
    #      g0 = 4 * (0.1824255 - 0.7592880) = -2.3074499.
    numpy.testing.assert_allclose(g1, [[-0.9875274, 0.9875274]], rtol=1e-5)
    numpy.testing.assert_allclose(g4, [[-2.3074499, 2.3074499]], rtol=1e-5)
    # loss = T^2 * KL(p_T || q_T): T=1: .99 ln(.99 / q0) + .01 ln(.01 / (1 - q0)) = 5.8864742;
    # T=4: 16 * (.759288 ln(.759288 / .182426) + .240712 ln(.240712 / .817574)) = 12.6151366.
    assert loss1 == pytest.approx(5.8864742, rel=1e-6)
    assert loss4 == pytest.approx(12.6151366, rel=1e-6)


def test_registered_builder_and_bad_parameters():
    loss = registry.resolve(
        {"loss": {"@losses": "spacy-distill.SoftTargetLoss.v1", "temperature": 3, "alpha": 0.1}}
    )["loss"]
    assert isinstance(loss, SoftTargetLoss) and loss.temperature == 3.0 and loss.alpha == 0.1
    with pytest.raises(ValueError, match="temperature"):
        SoftTargetLoss(temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        SoftTargetLoss(alpha=1.5)
    with pytest.raises(ValueError, match="shapes differ"):
        SoftTargetLoss()(numpy.zeros((2, 3)), make_soft_targets(2, 2, True))


@pytest.mark.parametrize("exclusive", [True, False])
def test_label_trust_gradient_matches_finite_differences(exclusive):
    truths = _truths(exclusive)._replace(labels=("a", "b", "c"))
    z = numpy.random.default_rng(2).normal(size=truths.teacher.shape)
    loss = SoftTargetLoss(temperature=2.0, alpha=0.6, label_trust={"a": 0.0, "b": 0.5})
    grad, value = loss(z.astype("float64"), truths)
    numpy.testing.assert_allclose(grad, _numeric_grad(loss, z, truths), rtol=1e-4, atol=1e-7)


def test_no_trust_in_the_gold_label_leaves_the_gold_term_alone_and_full_trust_is_v1():
    truths = _truths(True)._replace(labels=("a", "b", "c"))
    z = numpy.random.default_rng(3).normal(size=truths.teacher.shape)
    gold_label = {i: "abc"[int(truths.gold[i].argmax())] for i in (0, 3)}
    distrust = SoftTargetLoss(
        temperature=2.0, alpha=0.5, label_trust={label: 0.0 for label in gold_label.values()}
    )
    gold_only = SoftTargetLoss(temperature=2.0, alpha=0.0)
    for i in (0, 3):  # docs with teacher and gold
        one = truths._replace(
            **{
                f: getattr(truths, f)[i : i + 1]
                for f in ("teacher", "teacher_mask", "gold", "gold_mask")
            }
        )
        assert distrust.get_loss(z[i : i + 1], one) == pytest.approx(
            gold_only.get_loss(z[i : i + 1], one)
        )
    trusting = SoftTargetLoss(
        temperature=2.0, alpha=0.5, label_trust={"a": 1.0, "b": 1.0, "c": 1.0}
    )
    assert trusting.get_loss(z, truths) == pytest.approx(
        SoftTargetLoss(temperature=2.0, alpha=0.5).get_loss(z, truths)
    )


def test_label_trust_is_checked():
    with pytest.raises(ValueError, match="label_trust.spam must be in"):
        SoftTargetLoss(label_trust={"spam": 1.5})
    loss = registry.losses.get("spacy-distill.SoftTargetLoss.v2")(label_trust={"spam": 0.5})
    truths = _truths(True)
    with pytest.raises(ValueError, match="needs the label of each column"):
        loss(numpy.zeros(truths.teacher.shape), truths)
    with pytest.raises(ValueError, match=r"names labels \['spam'\]"):
        loss(numpy.zeros(truths.teacher.shape), truths._replace(labels=("a", "b", "c")))
