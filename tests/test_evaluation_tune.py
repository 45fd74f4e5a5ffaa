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
    numpy.testing.assert_allclose(
        curve["precision"], [1, 1, 2 / 3, 3 / 4, 3 / 5, 4 / 6, 4 / 7, 4 / 8]
    )
    numpy.testing.assert_allclose(curve["recall"], [1 / 4, 2 / 4, 2 / 4, 3 / 4, 3 / 4, 1, 1, 1])
    numpy.testing.assert_allclose(curve["cut"], [0.85, 0.75, 0.65, 0.55, 0.45, 0.35, 0.25, 0.1])


def test_ties_are_decided_together():
    curve = threshold_curve(numpy.array([1.0, 0.0, 1.0]), numpy.array([0.5, 0.5, 0.2]))
    numpy.testing.assert_allclose(curve["thresholds"], [0.5, 0.2])
    numpy.testing.assert_allclose(curve["precision"], [0.5, 2 / 3])


@pytest.mark.parametrize(
    "objective,value,threshold,met",
    # thresholds lie halfway between the chosen dev score and the next lower one
    [
        ("f1", None, 0.35, True),
        ("precision", 0.75, 0.55, True),
        ("precision", 1.0, 0.75, True),
        ("recall", 0.75, 0.55, True),
        ("recall", 1.0, 0.35, True),
    ],
)
def test_tune_meets_its_target_with_the_known_answer(objective, value, threshold, met):
    chosen = tune_thresholds(GOLD[:, None], P[:, None], ["spam"], objective=objective, value=value)[
        "spam"
    ]
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


def _offensive_like(seed: int, shift: float, n: int = 800):
    """Binary exclusive data with a rare `offensive` class whose probabilities run low: its
    one-vs-rest F1 threshold is low, and `block` then wins every doc over it."""
    rng = numpy.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p1 = 1 / (1 + numpy.exp(-(rng.normal(0, 1.3, n) + 1.4 * y - shift)))
    return numpy.eye(2)[y], numpy.c_[1 - p1, p1]


def _multiclass(n_labels: int, seed: int = 0, n: int = 600):
    rng = numpy.random.default_rng(seed)
    prior = numpy.ones(n_labels)
    prior[1] = 0.35
    y = rng.choice(n_labels, size=n, p=prior / prior.sum())
    logits = rng.normal(0, 1.0, size=(n, n_labels))
    logits[numpy.arange(n), y] += 1.2
    logits[:, 1] -= 0.8
    p = numpy.exp(logits)
    return numpy.eye(n_labels)[y], p / p.sum(axis=1, keepdims=True)


def _one_vs_rest(gold, probs, labels):
    return {k: v["threshold"] for k, v in tune_thresholds(gold, probs, labels).items()}


def test_a_low_block_threshold_that_lowers_accuracy_is_not_kept():
    from spacy_distill.evaluation.tune import decision_quality, select_exclusive_thresholds
    from spacy_distill.filter.decision import DecisionRule

    labels, actions = ["ok", "offensive"], {"offensive": "block"}
    gold, probs = _offensive_like(seed=3, shift=1.5)
    candidates = _one_vs_rest(gold, probs, labels)
    naive = decision_quality(gold, probs, DecisionRule(labels, True, candidates, actions))
    selection = select_exclusive_thresholds(gold, probs, labels, candidates, actions=actions)
    # What the filter did before: per-label F1 thresholds, enforced by `block`, lose to the argmax.
    assert (
        candidates["offensive"] < 0.3 and naive["accuracy"] < selection["argmax"]["accuracy"] - 0.05
    )
    assert selection["thresholds"] == {} and selection["tuned"] == selection["argmax"]


@pytest.mark.parametrize("seed,shift", [(0, 0.0), (1, 0.8), (0, 1.5), (2, 0.0)])
def test_thresholds_are_kept_where_they_beat_the_argmax(seed, shift):
    from spacy_distill.evaluation.tune import select_exclusive_thresholds

    labels = ["ok", "offensive"]
    gold, probs = _offensive_like(seed, shift)
    selection = select_exclusive_thresholds(
        gold, probs, labels, _one_vs_rest(gold, probs, labels), actions={"offensive": "block"}
    )
    assert selection["thresholds"]
    assert selection["tuned"]["macro_f1"] > selection["argmax"]["macro_f1"]
    assert selection["tuned"]["accuracy"] >= selection["argmax"]["accuracy"]


@pytest.mark.parametrize("n_labels", [3, 6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exclusive_tuning_never_decides_worse_than_argmax(n_labels, seed):
    from spacy_distill.evaluation.tune import decision_quality, select_exclusive_thresholds
    from spacy_distill.filter.decision import DecisionRule

    labels = [f"class{i}" for i in range(n_labels)]
    gold, probs = _multiclass(n_labels, seed)
    candidates = _one_vs_rest(gold, probs, labels)
    selection = select_exclusive_thresholds(
        gold, probs, labels, candidates, actions={"class1": "block"}
    )
    assert selection["tuned"]["accuracy"] >= selection["argmax"]["accuracy"]
    assert selection["tuned"]["macro_f1"] >= selection["argmax"]["macro_f1"]
    rule = DecisionRule(labels, True, selection["thresholds"], {"class1": "block"})
    assert decision_quality(gold, probs, rule) == selection["tuned"]


def test_the_meta_section_round_trips_field_by_field():
    from spacy_distill.pipeline import meta as stored

    meta = {"name": "student", stored.META_KEY: {"card": {"teacher": "x"}}}
    assert stored.stored_thresholds(meta) == {} and stored.stored_actions(meta) is None
    assert stored.stored_cascade(meta) == {} and stored.stored_escalation_margin(meta) == 0.0
    stored.write_thresholds(meta, {"spam": 0.4}, {"objective": "f1"})
    stored.write_actions(meta, {"spam": "block"}, "review")
    stored.write_cascade(
        meta, 0.1, objective="escalation_rate", value=0.2, data="dev.jsonl", dev={"margin": 0.1}
    )
    stored.write_calibration(meta, {"temperature": 1.5})
    stored.write_package_runtime(meta, "1.0", "spacy-distill")
    assert stored.stored_thresholds(meta) == {"spam": 0.4}
    assert (
        stored.stored_actions(meta) == {"spam": "block"}
        and stored.stored_default_action(meta) == "review"
    )
    assert (
        stored.stored_escalation_margin(meta) == 0.1
        and stored.stored_cascade(meta)["objective"] == "escalation_rate"
    )
    assert stored.stored_calibration(meta) == {"temperature": 1.5} and stored.stored_card(meta) == {
        "teacher": "x"
    }
    section = meta[stored.META_KEY]
    assert section["threshold_tuning"] == {"objective": "f1"} and section["runtime"] == {
        "version": "1.0",
        "package": "spacy-distill",
    }
    assert meta["name"] == "student"  # the rest of the meta is left alone
    stored.stored_thresholds(meta)["spam"] = 0.9  # readers return copies
    assert stored.stored_thresholds(meta) == {"spam": 0.4}


def test_tune_student_saves_thresholds_actions_and_band_with_the_pipeline(tmp_path):
    import spacy

    from spacy_distill.evaluation.tune import get_actions, get_cascade, get_thresholds
    from spacy_distill.evaluation.tune_student import tune_student

    from .conftest import train_distilled_student

    train_distilled_student(tmp_path, steps=8)
    with pytest.raises(DistillError, match="not both"):
        tune_student(
            tmp_path / "student",
            tmp_path / "train.spacy",
            escalation_rate=0.1,
            cascade_accuracy=0.9,
        )
    chosen = tune_student(
        tmp_path / "student",
        tmp_path / "train.spacy",
        output=tmp_path / "tuned",
        actions={"spam": "block"},
        escalation_rate=0.25,
        calibrate=False,
    )
    assert set(chosen) == {"ham", "spam", "cascade", "decisions"}
    nlp = spacy.load(tmp_path / "tuned")
    # meta.json keeps about 10 digits.
    assert get_thresholds(nlp) == pytest.approx(
        {
            k: v["threshold"]
            for k, v in chosen.items()
            if k in ("ham", "spam") and v["threshold"] is not None
        }
    )
    assert get_actions(nlp) == {"actions": {"spam": "block"}, "default_action": "allow"}
    assert (
        get_cascade(nlp)["margin"] == pytest.approx(chosen["cascade"]["margin"])
        and get_cascade(nlp)["objective"] == "escalation_rate"
    )
    # The stored per-label record is the labels' alone, not the extras of the returned dict.
    assert set(nlp.meta["spacy_distill"]["threshold_tuning"]["per_label"]) == {"ham", "spam"}
