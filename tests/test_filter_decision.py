"""The decision rule (thresholds, actions, margins) and the cascade arithmetic."""

import numpy
import pytest

from spacy_distill.errors import DistillError
from spacy_distill.filter.cascade import (
    cascade_accuracy_by_count,
    cascade_curve,
    correct_decisions,
    margin_for_accuracy,
    margin_for_count,
    margin_for_rate,
)
from spacy_distill.filter.decision import DecisionRule


def test_exclusive_without_thresholds_is_argmax():
    rule = DecisionRule(["ham", "spam"], True, actions={"spam": "block"})
    decisions = rule.decide(numpy.asarray([[0.7, 0.3], [0.4, 0.6]]))
    assert [d.labels for d in decisions] == [("ham",), ("spam",)]
    assert [d.verdict for d in decisions] == ["allow", "block"]
    # margin: gap between the top two probabilities
    assert decisions[0].margin == pytest.approx(0.4)


@pytest.mark.parametrize(
    "p_spam,verdict",
    [(0.2999, "allow"), (0.3, "block"), (0.3001, "block"), (0.9, "block"), (0.0, "allow")],
)
def test_threshold_edges(p_spam, verdict):
    # p >= threshold decides the label, exactly at the edge included
    rule = DecisionRule(["ham", "spam"], True, thresholds={"spam": 0.3}, actions={"spam": "block"})
    (decision,) = rule.decide(numpy.asarray([[1 - p_spam, p_spam]]))
    assert decision.verdict == verdict
    assert decision.labels == (("spam",) if verdict == "block" else ("ham",))


def test_action_beats_probability_when_both_labels_hold():
    # ham clears its own threshold too, but a spam label over its threshold blocks
    rule = DecisionRule(
        ["ham", "spam"], True, thresholds={"ham": 0.5, "spam": 0.3}, actions={"spam": "block"}
    )
    (decision,) = rule.decide(numpy.asarray([[0.65, 0.35]]))
    assert decision.verdict == "block" and decision.labels == ("spam",)
    assert decision.margin == pytest.approx(0.05)


def test_no_label_decided_gives_the_default_action():
    rule = DecisionRule(
        ["a", "b", "c"], True, thresholds={"a": 0.6, "b": 0.6, "c": 0.6}, default_action="review"
    )
    (decision,) = rule.decide(numpy.asarray([[0.4, 0.35, 0.25]]))
    assert decision.labels == () and decision.verdict == "review"


def test_multilabel_most_severe_action_wins_and_custom_actions_route():
    rule = DecisionRule(
        ["spam", "urgent", "sports"],
        False,
        thresholds={"spam": 0.7},
        actions={"spam": "block", "urgent": "review", "sports": "route:sports"},
    )
    decisions = rule.decide(
        numpy.asarray([[0.8, 0.9, 0.1], [0.1, 0.9, 0.9], [0.1, 0.2, 0.6], [0.1, 0.1, 0.1]])
    )
    assert [d.verdict for d in decisions] == ["block", "review", "route:sports", "allow"]
    assert decisions[1].labels == ("urgent", "sports")
    # margins: min |p - t| with t = 0.7 for spam, 0.5 for the others
    assert decisions[0].margin == pytest.approx(0.1)
    assert decisions[3].margin == pytest.approx(0.4)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"thresholds": {"eggs": 0.5}}, "eggs"),
        ({"thresholds": {"spam": 1.5}}, "thresholds.spam"),
        ({"actions": {"eggs": "block"}}, "eggs"),
        ({"actions": {"spam": " "}}, "actions.spam"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(DistillError, match=message):
        DecisionRule(["ham", "spam"], True, **kwargs)


def test_probabilities_from_cats_name_a_missing_label():
    rule = DecisionRule(["ham", "spam"], True)
    assert rule.probabilities([{"spam": 0.2, "ham": 0.8}]).tolist() == [[0.8, 0.2]]
    with pytest.raises(DistillError, match="'spam'"):
        rule.probabilities([{"ham": 1.0}])


def test_margin_for_count_escalates_exactly_k():
    margins = numpy.asarray([0.5, 0.1, 0.3, 0.05, 0.9])
    for k in range(6):
        assert (margins < margin_for_count(margins, k)).sum() == k
    assert (margins < margin_for_rate(margins, 0.4)).sum() == 2
    with pytest.raises(DistillError):
        margin_for_rate(margins, 1.5)


def test_cascade_accuracy_by_count_against_brute_force():
    rng = numpy.random.default_rng(0)
    n = 50
    student_ok = rng.random(n) < 0.7
    teacher_ok = rng.random(n) < 0.9
    margins = rng.random(n)
    fast = cascade_accuracy_by_count(student_ok, teacher_ok, margins)
    for k in range(n + 1):
        escalated = margins < margin_for_count(margins, k)
        assert fast[k] == pytest.approx(numpy.where(escalated, teacher_ok, student_ok).mean())
    assert fast[0] == pytest.approx(student_ok.mean()) and fast[-1] == pytest.approx(
        teacher_ok.mean()
    )


def _toy_cascade():
    # 6 docs; the student errs on its two least certain docs, the teacher is always right
    gold = numpy.asarray([[1, 0], [0, 1], [1, 0], [0, 1], [1, 0], [0, 1]], dtype="float64")
    student = numpy.asarray(
        [[0.45, 0.55], [0.52, 0.48], [0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.05, 0.95]]
    )
    teacher = numpy.asarray(
        [[0.9, 0.1], [0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]]
    )
    rule = DecisionRule(["ham", "spam"], True)
    return gold, student, teacher, rule


def test_cascade_curve_and_band_for_an_accuracy():
    gold, student, teacher, rule = _toy_cascade()
    assert correct_decisions(rule, student, gold).tolist() == [False, False, True, True, True, True]
    curve = cascade_curve(gold, student, teacher, rule, rule, rates=(0.0, 1 / 3, 1.0))
    assert curve["student_accuracy"] == pytest.approx(4 / 6) and curve["teacher_accuracy"] == 1.0
    assert [p["accuracy"] for p in curve["points"]] == pytest.approx([4 / 6, 1.0, 1.0])
    band = margin_for_accuracy(gold, student, teacher, rule, rule, 1.0)
    assert band["met"] and band["escalation_rate"] == pytest.approx(2 / 6)
    assert (rule.margins(student) < band["margin"]).sum() == 2
    unreachable = margin_for_accuracy(gold, student, 1 - teacher, rule, rule, 0.99)
    assert not unreachable["met"] and unreachable["accuracy"] == pytest.approx(4 / 6)


def test_cascade_needs_gold():
    gold, student, teacher, rule = _toy_cascade()
    with pytest.raises(DistillError, match="gold"):
        cascade_curve(numpy.full_like(gold, numpy.nan), student, teacher, rule, rule)


@pytest.mark.parametrize("exclusive", [True, False])
def test_scores_that_are_not_probabilities_decide_nothing(exclusive):
    # all zeros (spaCy's textcat for an empty doc), NaN, out of [0, 1], and (exclusive) a sum != 1
    rule = DecisionRule(
        ["ham", "spam"],
        exclusive,
        thresholds={"spam": 0.0},
        actions={"spam": "block"},
        default_action="hold",
    )
    rows = [[0.0, 0.0], [numpy.nan, 0.5], [-0.1, 1.1], [0.9, 0.9], [0.4, 0.6]]
    scored = rule.scored(numpy.asarray(rows))
    assert scored.tolist() == [not exclusive, False, False, not exclusive, True]
    decisions = rule.decide(numpy.asarray(rows))
    for decision, ok in zip(decisions, scored):
        if not ok:
            assert (
                decision.verdict == "hold"
                and decision.labels == ()
                and decision.margin == numpy.inf
            )
    assert decisions[-1].verdict == "block"


def test_a_band_that_reaches_docs_without_probabilities_stays_finite():
    rule = DecisionRule(["ham", "spam"], True)
    margins = rule.margins(numpy.asarray([[0.6, 0.4], [0.0, 0.0], [0.9, 0.1]]))
    assert margins.tolist() == pytest.approx([0.2, numpy.inf, 0.8])
    assert margin_for_count(margins, 2) == pytest.approx(1.0 + 1e-6)
    assert (margins < margin_for_count(margins, 2)).sum() == 2
