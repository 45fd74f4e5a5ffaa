import numpy
import pytest

from spacy_distill.errors import DistillError
from spacy_distill.evaluation.tune import threshold_curve, tune_thresholds

# 8 docs, one label. Sorted by probability:  p:   .9 .8 .7 .6 .5 .4 .3 .2
#                                            gold:  1  1  0  1  0  1  0  0
# threshold .9: P 1/1 R 1/4 | .8: 2/2, 2/4 | .7: 2/3, 2/4 | .6: 3/4, 3/4 (F1 .75)
# .5: 3/5, 3/4 | .4: 4/6, 4/4 (F1 .8) | .3: 4/7, 1 | .2: 4/8, 1
P = numpy.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
GOLD = numpy.array([1, 1, 0, 1, 0, 1, 0, 0], dtype="float64")


def test_threshold_curve_by_hand():
    curve = threshold_curve(GOLD, P)
    numpy.testing.assert_allclose(curve["thresholds"], P)
    numpy.testing.assert_allclose(curve["precision"], [1, 1, 2 / 3, 3 / 4, 3 / 5, 4 / 6, 4 / 7, 4 / 8])
    numpy.testing.assert_allclose(curve["recall"], [1 / 4, 2 / 4, 2 / 4, 3 / 4, 3 / 4, 1, 1, 1])
    numpy.testing.assert_allclose(curve["cut"], [0.85, 0.75, 0.65, 0.55, 0.45, 0.35, 0.25, 0.1])


def test_ties_are_decided_together():
    curve = threshold_curve(numpy.array([1.0, 0.0, 1.0]), numpy.array([0.5, 0.5, 0.2]))
    numpy.testing.assert_allclose(curve["thresholds"], [0.5, 0.2])
    numpy.testing.assert_allclose(curve["precision"], [0.5, 2 / 3])


@pytest.mark.parametrize(
    "objective,value,threshold,met",
    # thresholds lie halfway between the chosen dev score and the next lower one
    [("f1", None, 0.35, True), ("precision", 0.75, 0.55, True), ("precision", 1.0, 0.75, True),
     ("recall", 0.75, 0.55, True), ("recall", 1.0, 0.35, True)],
)
def test_tune_meets_its_target_with_the_known_answer(objective, value, threshold, met):
    chosen = tune_thresholds(GOLD[:, None], P[:, None], ["spam"], objective=objective, value=value)["spam"]
    assert chosen["threshold"] == pytest.approx(threshold)
    assert chosen["met"] is met
    if objective == "precision":
        assert chosen["precision"] >= value
    if objective == "recall":
        assert chosen["recall"] >= value


def test_unreachable_target_is_reported_and_missing_gold_ignored():
    gold = numpy.array([[0.0], [1.0], [numpy.nan]])
    probs = numpy.array([[0.9], [0.1], [0.5]])
    chosen = tune_thresholds(gold, probs, ["x"], objective="precision", value=0.9)["x"]
    assert chosen["met"] is False and chosen["support"] == 1
    assert tune_thresholds(numpy.zeros((2, 1)), probs[:2], ["x"])["x"]["threshold"] is None
    with pytest.raises(DistillError, match="needs a target value"):
        tune_thresholds(gold, probs, ["x"], objective="recall")
