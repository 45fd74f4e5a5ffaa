"""Each metric against an independent reference: scikit-learn where it has one, else numbers
worked out by hand (the working is in the comments)."""

import math

import numpy
import pytest
import sklearn.calibration as sk_calibration  # noqa: E402
import sklearn.metrics as sk  # noqa: E402

from spacy_distill.evaluation.metrics import (
    agreement,
    calibration,
    classification_metrics,
    confusion_matrix,
    decisions,
    mean_kl,
    retention,
    teacher_bias_audit,
)

NAN = numpy.nan

# Exclusive binary. Doc 2 is a tie (argmax -> "neg", the lowest index); docs 1 and 3 tie on
# the "pos" score (0.7), one gold pos and one gold neg; doc 4 has no gold.
BIN_LABELS = ["neg", "pos"]
BIN_GOLD = numpy.asarray([[1, 0], [0, 1], [0, 1], [1, 0], [NAN, NAN], [0, 1]], dtype="f")
BIN_PROBS = numpy.asarray([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5], [0.3, 0.7], [0.1, 0.9], [0.6, 0.4]])
BIN_Y = numpy.asarray([0, 1, 1, 0, 1])  # gold of the docs with gold
BIN_PRED = numpy.asarray([0, 1, 0, 1, 0])  # argmax by hand, tie -> 0
BIN_SCORE = numpy.asarray([0.2, 0.7, 0.5, 0.7, 0.4])  # P(pos) of the docs with gold

# Exclusive 3-class. "b" is never predicted, "c" never gold. Doc 1 ties a/b (-> "a"); doc 5
# has no gold; doc 6 has partial gold, which is not gold for exclusive labels.
TRI_LABELS = ["a", "b", "c"]
TRI_GOLD = numpy.asarray(
    [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0], [NAN] * 3, [1, NAN, 0]]
)
TRI_PROBS = numpy.asarray(
    [
        [0.6, 0.3, 0.1],
        [0.4, 0.4, 0.2],
        [0.5, 0.2, 0.3],
        [0.2, 0.3, 0.5],
        [0.3, 0.3, 0.4],
        [0.1, 0.1, 0.8],
        [0.1, 0.2, 0.7],
    ]
)
TRI_Y = numpy.asarray([0, 0, 1, 1, 0])
TRI_PRED = numpy.asarray([0, 0, 0, 2, 2])

# Multi-label. "y" is never predicted on a known cell (row 2 predicts it, but its gold is
# unknown), "z" is never gold; row 3 has no gold; 0.5 sits exactly on the threshold (>=).
ML_LABELS = ["x", "y", "z"]
ML_GOLD = numpy.asarray([[1, 0, 0], [0, 1, 0], [1, NAN, 0], [NAN, NAN, NAN], [1, 1, 0], [0, 0, 0]])
ML_PROBS = numpy.asarray(
    [
        [0.9, 0.2, 0.6],
        [0.3, 0.4, 0.1],
        [0.5, 0.9, 0.7],
        [0.9, 0.9, 0.9],
        [0.5, 0.4, 0.2],
        [0.2, 0.4, 0.3],
    ]
)
# Decisions by hand at 0.5: [1,0,1] [0,0,0] [1,1,1] [1,1,1] [1,0,0] [0,0,0]


def _known(gold, probs, j):
    mask = ~numpy.isnan(gold[:, j])
    return gold[mask, j].astype(int), probs[mask, j]


def _check_prfs(result, y, pred, labels):
    p, r, f, s = sk.precision_recall_fscore_support(
        y, pred, labels=list(range(len(labels))), zero_division=0
    )
    for i, label in enumerate(labels):
        got = result["per_label"][label]
        assert got["precision"] == pytest.approx(p[i])
        assert got["recall"] == pytest.approx(r[i])
        assert got["f1"] == pytest.approx(f[i])
        assert got["support"] == s[i]


# decisions


def test_decisions_exclusive_ties_go_to_lowest_index():
    probs = numpy.asarray([[0.5, 0.5, 0.0], [0.2, 0.4, 0.4], [0.1, 0.2, 0.7], [1 / 3] * 3])
    expected = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]
    out = decisions(probs, exclusive=True)
    assert out.dtype.kind == "i"
    assert out.tolist() == expected


def test_decisions_multilabel_thresholds():
    assert decisions(ML_PROBS[:3], exclusive=False).tolist() == [
        [1, 0, 1],
        [0, 0, 0],
        [1, 1, 1],
    ]
    per_label = {"x": 0.95, "y": 0.35, "z": 0.5}
    expected = [[0, 0, 1], [0, 1, 0], [0, 1, 1]]
    assert decisions(ML_PROBS[:3], False, per_label, labels=ML_LABELS).tolist() == expected
    assert decisions(ML_PROBS[:3], False, [0.95, 0.35, 0.5]).tolist() == expected


def test_decisions_bad_thresholds():
    with pytest.raises(ValueError, match="labels="):
        decisions(ML_PROBS, False, {"x": 0.5, "y": 0.5, "z": 0.5})
    with pytest.raises(ValueError, match=r"missing \['z'\], unknown \['w'\]"):
        decisions(ML_PROBS, False, {"x": 0.5, "y": 0.5, "w": 0.5}, labels=ML_LABELS)
    with pytest.raises(ValueError, match=r"\(3,\), got shape \(2,\)"):
        decisions(ML_PROBS, False, [0.5, 0.5])


# classification_metrics


def test_classification_exclusive_binary():
    result = classification_metrics(BIN_GOLD, BIN_PROBS, BIN_LABELS, exclusive=True)
    assert result["n_docs"] == 5
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(BIN_Y, BIN_PRED))
    assert result["accuracy"] == pytest.approx(2 / 5)
    assert result["label_accuracy"] == result["accuracy"]
    _check_prfs(result, BIN_Y, BIN_PRED, BIN_LABELS)
    for avg in ("macro", "micro"):
        f1 = sk.f1_score(BIN_Y, BIN_PRED, average=avg, labels=[0, 1], zero_division=0)
        assert result[f"{avg}_f1"] == pytest.approx(f1)
    p, r, _, _ = sk.precision_recall_fscore_support(
        BIN_Y, BIN_PRED, average="macro", zero_division=0
    )
    assert result["macro_precision"] == pytest.approx(p)
    assert result["macro_recall"] == pytest.approx(r)
    # AUC of "pos" with a tie at 0.7 between a positive and a negative. Positives score
    # 0.7, 0.5, 0.4 and negatives 0.2, 0.7: pairs won 1 + 0.5 + 1 + 0 + 1 + 0 = 3.5 of 6.
    assert result["roc_auc"] == pytest.approx(3.5 / 6)
    assert result["roc_auc"] == pytest.approx(sk.roc_auc_score(BIN_Y, BIN_SCORE))
    assert result["per_label_auc"]["pos"] == pytest.approx(3.5 / 6)
    assert result["per_label_auc"]["neg"] == pytest.approx(
        sk.roc_auc_score(1 - BIN_Y, 1 - BIN_SCORE)
    )


def test_classification_exclusive_three_class():
    result = classification_metrics(TRI_GOLD, TRI_PROBS, TRI_LABELS, exclusive=True)
    assert result["n_docs"] == 5  # the NaN row and the partial row are ignored
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(TRI_Y, TRI_PRED))
    _check_prfs(result, TRI_Y, TRI_PRED, TRI_LABELS)
    # never predicted: precision 0; never gold: recall 0 and support 0
    assert result["per_label"]["b"]["precision"] == 0.0
    assert result["per_label"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    for avg in ("macro", "micro"):
        f1 = sk.f1_score(TRI_Y, TRI_PRED, average=avg, labels=[0, 1, 2], zero_division=0)
        assert result[f"{avg}_f1"] == pytest.approx(f1)
    p, r, _, _ = sk.precision_recall_fscore_support(
        TRI_Y, TRI_PRED, labels=[0, 1, 2], average="macro", zero_division=0
    )
    assert result["macro_precision"] == pytest.approx(p)
    assert result["macro_recall"] == pytest.approx(r)
    # One-vs-rest AUC over the 5 gold docs. "a": positives 0.6, 0.4, 0.3 vs negatives 0.5,
    # 0.2 -> 4 of 6 pairs. "b": positives 0.2, 0.3 vs negatives 0.3, 0.4, 0.3 -> only the two
    # 0.3/0.3 ties, 0.5 each -> 1 of 6. "c" has no positive -> None.
    scores = TRI_PROBS[:5]
    for j, label in enumerate(TRI_LABELS[:2]):
        ref = sk.roc_auc_score(TRI_Y == j, scores[:, j])
        assert result["per_label_auc"][label] == pytest.approx(ref)
    assert result["per_label_auc"]["a"] == pytest.approx(4 / 6)
    assert result["per_label_auc"]["b"] == pytest.approx(1 / 6)
    assert result["per_label_auc"]["c"] is None
    assert result["roc_auc"] == pytest.approx((4 / 6 + 1 / 6) / 2)


def test_classification_exclusive_multiclass_auc_matches_sklearn_ovr():
    rng = numpy.random.default_rng(0)
    n, n_labels = 60, 4
    # Rounded to one decimal so that many scores tie.
    logits = rng.normal(size=(n, n_labels))
    probs = numpy.exp(logits) / numpy.exp(logits).sum(axis=1, keepdims=True)
    probs = numpy.round(probs, 1)
    probs[:, -1] = 1.0 - probs[:, :-1].sum(axis=1)
    probs = numpy.clip(probs, 0, 1)
    probs = probs / probs.sum(axis=1, keepdims=True)
    y = rng.integers(n_labels, size=n)
    gold = numpy.eye(n_labels)[y]
    labels = [f"l{i}" for i in range(n_labels)]
    result = classification_metrics(gold, probs, labels, exclusive=True)
    ref = sk.roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=range(n_labels))
    assert result["roc_auc"] == pytest.approx(ref)
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(y, probs.argmax(axis=1)))


def test_classification_multilabel():
    result = classification_metrics(ML_GOLD, ML_PROBS, ML_LABELS, exclusive=False)
    pred = (ML_PROBS >= 0.5).astype(int)
    assert result["n_docs"] == 5  # row 3 has no known label
    # Exact match over the fully known rows 0, 1, 4, 5: only row 5 ([0,0,0]) is right.
    full = ~numpy.isnan(ML_GOLD).any(axis=1)
    ref = sk.accuracy_score(ML_GOLD[full].astype(int), pred[full])
    assert result["accuracy"] == pytest.approx(ref)
    assert result["accuracy"] == pytest.approx(1 / 4)
    # Known cells: x 5 of 5 right, y 2 of 4 (rows 0, 5), z 3 of 5 (rows 1, 4, 5) -> 10 / 14.
    assert result["label_accuracy"] == pytest.approx(10 / 14)
    f1s, ps, rs = [], [], []
    for j, label in enumerate(ML_LABELS):
        y, p = _known(ML_GOLD, ML_PROBS, j)
        pr, rc, f1, sup = sk.precision_recall_fscore_support(
            y, (p >= 0.5).astype(int), labels=[1], zero_division=0
        )
        got = result["per_label"][label]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((pr[0], rc[0], f1[0]))
        assert got["support"] == sup[0]
        f1s.append(f1[0])
        ps.append(pr[0])
        rs.append(rc[0])
    assert result["per_label"]["y"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert result["per_label"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result["macro_f1"] == pytest.approx(numpy.mean(f1s))
    assert result["macro_precision"] == pytest.approx(numpy.mean(ps))
    assert result["macro_recall"] == pytest.approx(numpy.mean(rs))
    known = ~numpy.isnan(ML_GOLD)
    ref_micro = sk.f1_score(ML_GOLD[known].astype(int), pred[known], zero_division=0)
    assert result["micro_f1"] == pytest.approx(ref_micro)
    # On the fully known rows the masked micro F1 equals sklearn's multilabel micro F1 when
    # the other rows add nothing; check the plain multilabel path as well.
    full_result = classification_metrics(ML_GOLD[full], ML_PROBS[full], ML_LABELS, exclusive=False)
    ref = sk.f1_score(ML_GOLD[full].astype(int), pred[full], average="micro", zero_division=0)
    assert full_result["micro_f1"] == pytest.approx(ref)
    ref = sk.f1_score(ML_GOLD[full].astype(int), pred[full], average="macro", zero_division=0)
    assert full_result["macro_f1"] == pytest.approx(ref)
    # AUC on known cells. x: positives 0.9, 0.5, 0.5 all above negatives 0.3, 0.2 -> 1.0.
    # y: positives 0.4, 0.4 vs negatives 0.2, 0.4 -> 1 + 0.5 + 1 + 0.5 = 3 of 4 (ties).
    # z: no positive -> None; the macro mean skips it.
    for j, label in enumerate(ML_LABELS[:2]):
        y, p = _known(ML_GOLD, ML_PROBS, j)
        assert result["per_label_auc"][label] == pytest.approx(sk.roc_auc_score(y, p))
    assert result["per_label_auc"]["y"] == pytest.approx(0.75)
    assert result["per_label_auc"]["z"] is None
    assert result["roc_auc"] == pytest.approx((1.0 + 0.75) / 2)


def test_classification_multilabel_per_label_threshold():
    threshold = {"x": 0.6, "y": 0.35, "z": 0.5}
    result = classification_metrics(
        ML_GOLD, ML_PROBS, ML_LABELS, exclusive=False, threshold=threshold
    )
    pred = (ML_PROBS >= numpy.asarray([0.6, 0.35, 0.5])).astype(int)
    for j, label in enumerate(ML_LABELS):
        y, _ = _known(ML_GOLD, ML_PROBS, j)
        p = pred[~numpy.isnan(ML_GOLD[:, j]), j]
        ref = sk.f1_score(y, p, zero_division=0)
        assert result["per_label"][label]["f1"] == pytest.approx(ref)


def test_classification_no_gold():
    gold = numpy.full((3, 2), NAN)
    for exclusive in (True, False):
        result = classification_metrics(gold, BIN_PROBS[:3], BIN_LABELS, exclusive=exclusive)
        assert result["n_docs"] == 0
        assert result["accuracy"] is None and result["macro_f1"] is None
        assert result["roc_auc"] is None
        assert result["per_label"]["pos"]["support"] == 0


def test_nan_rows_do_not_change_results():
    keep = ~numpy.isnan(TRI_GOLD).any(axis=1)
    a = classification_metrics(TRI_GOLD, TRI_PROBS, TRI_LABELS, exclusive=True)
    b = classification_metrics(TRI_GOLD[keep], TRI_PROBS[keep], TRI_LABELS, exclusive=True)
    assert a == b


# confusion_matrix


def test_confusion_matrix_exclusive():
    result = confusion_matrix(TRI_GOLD, TRI_PROBS, TRI_LABELS, exclusive=True)
    ref = sk.confusion_matrix(TRI_Y, TRI_PRED, labels=[0, 1, 2])
    assert result["labels"] == TRI_LABELS
    assert result["matrix"] == ref.tolist()
    # gold a -> a, a, c; gold b -> a, c
    assert result["matrix"] == [[2, 0, 1], [1, 0, 1], [0, 0, 0]]
    binary = confusion_matrix(BIN_GOLD, BIN_PROBS, BIN_LABELS, exclusive=True)
    assert binary["matrix"] == sk.confusion_matrix(BIN_Y, BIN_PRED).tolist()


def test_confusion_matrix_multilabel():
    result = confusion_matrix(ML_GOLD, ML_PROBS, ML_LABELS, exclusive=False)
    assert set(result["per_label"]) == set(ML_LABELS)
    for j, label in enumerate(ML_LABELS):
        y, p = _known(ML_GOLD, ML_PROBS, j)
        ref = sk.confusion_matrix(y, (p >= 0.5).astype(int), labels=[0, 1])
        assert result["per_label"][label] == ref.tolist()
    assert result["per_label"]["z"] == [[3, 2], [0, 0]]


# agreement


def test_agreement_exclusive():
    student = [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.4, 0.4, 0.2]]
    teacher = [[0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.2, 0.2, 0.6], [0.3, 0.5, 0.2]]
    # argmax student a, b, c, a (tie a/b); teacher a, c, c, b -> docs 0 and 2 agree.
    # one-hot per label: a s[1,0,0,1] t[1,0,0,0] -> 3/4; b s[0,1,0,0] t[0,0,0,1] -> 2/4;
    # c s[0,0,1,0] t[0,1,1,0] -> 3/4.
    result = agreement(student, teacher, TRI_LABELS, exclusive=True)
    assert result["n_docs"] == 4
    assert result["argmax"] == pytest.approx(0.5)
    assert result["per_label"] == pytest.approx({"a": 0.75, "b": 0.5, "c": 0.75})


def test_agreement_multilabel():
    student = [[0.7, 0.2], [0.5, 0.6], [0.1, 0.4]]  # -> [1,0] [1,1] [0,0]
    teacher = [[0.9, 0.6], [0.8, 0.7], [0.4, 0.49]]  # -> [1,1] [1,1] [0,0]
    result = agreement(student, teacher, ["p", "q"], exclusive=False)
    assert result["argmax"] == pytest.approx(2 / 3)  # whole vectors agree on docs 1, 2
    assert result["per_label"] == pytest.approx({"p": 1.0, "q": 2 / 3})
    # A teacher threshold of 0.65 makes the teacher say q=0 on doc 0 too: all agree.
    result = agreement(student, teacher, ["p", "q"], exclusive=False, teacher_threshold=0.65)
    assert result["argmax"] == pytest.approx(1.0)


# mean_kl


LN2 = 0.6931471805599453
HALF_LN_4_3 = 0.14384103622589045  # 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3)


def test_mean_kl_exclusive():
    teacher = [[0.5, 0.5], [1.0, 0.0]]
    student = [[0.25, 0.75], [0.5, 0.5]]
    # doc 0: 0.5 ln(4/3); doc 1: 1 * ln(1 / 0.5) + 0 = ln 2
    assert mean_kl(teacher, student, exclusive=True) == pytest.approx((HALF_LN_4_3 + LN2) / 2)
    assert mean_kl(teacher, teacher, exclusive=True) == 0.0
    stats = pytest.importorskip("scipy.stats")
    rng = numpy.random.default_rng(1)
    t = rng.dirichlet(numpy.ones(4), size=10)
    s = rng.dirichlet(numpy.ones(4), size=10)
    ref = numpy.mean([stats.entropy(t[i], s[i]) for i in range(10)])
    assert mean_kl(t, s, exclusive=True) == pytest.approx(ref, rel=1e-6)


def test_mean_kl_multilabel():
    teacher = [[0.5, 1.0], [0.2, 0.2]]
    student = [[0.25, 0.5], [0.2, 0.2]]
    # doc 0: label 0 Bernoulli KL 0.5 ln(4/3), label 1: 1 * ln(1/0.5) = ln 2; doc 1: 0
    assert mean_kl(teacher, student, exclusive=False) == pytest.approx((HALF_LN_4_3 + LN2) / 2)
    assert mean_kl(teacher, teacher, exclusive=False) == 0.0
    # Bernoulli KLs summed over labels = categorical KLs of [p, 1 - p] summed over labels.
    stats = pytest.importorskip("scipy.stats")
    rng = numpy.random.default_rng(2)
    t, s = rng.uniform(0.01, 0.99, size=(2, 6, 3))
    ref = numpy.mean(
        [
            sum(stats.entropy([t[i, j], 1 - t[i, j]], [s[i, j], 1 - s[i, j]]) for j in range(3))
            for i in range(6)
        ]
    )
    assert mean_kl(t, s, exclusive=False) == pytest.approx(ref, rel=1e-6)


def test_mean_kl_clips_zero_probabilities():
    # The student puts 0 on the teacher's label. With eps = 1e-7 both sides are clipped and
    # renormalised: teacher [1, 1e-7] / (1 + 1e-7), student [1e-7, 1] / (1 + 1e-7), so
    # KL = 1 * ln(1 / 1e-7) ~= 16.118 (the teacher's 0 weighs the other term out).
    kl = mean_kl([[1.0, 0.0]], [[0.0, 1.0]], exclusive=True)
    assert kl == pytest.approx(-math.log(1e-7))
    # Multi-label: each label is ln((1 - 1e-7) / 1e-7) after clipping to [1e-7, 1 - 1e-7].
    kl = mean_kl([[1.0, 0.0]], [[0.0, 1.0]], exclusive=False)
    assert math.isfinite(kl) and kl == pytest.approx(-2 * math.log(1e-7), rel=1e-6)
    assert mean_kl(numpy.zeros((0, 2)), numpy.zeros((0, 2)), exclusive=True) is None


# calibration


def test_calibration_exclusive_binary():
    gold = [[1, 0], [0, 1], [1, 0], [0, 1], [NAN, NAN]]
    probs = [[0.9, 0.1], [0.3, 0.7], [0.35, 0.65], [0.55, 0.45], [0.0, 1.0]]
    # top-label confidence / correct: 0.9 right, 0.7 right, 0.65 wrong, 0.55 wrong (the NaN
    # row is ignored). Bins of width 0.2: (0.4, 0.6] {0.55: acc 0}, (0.6, 0.8] {0.7, 0.65:
    # conf 0.675, acc 0.5}, (0.8, 1.0] {0.9: acc 1}.
    # ECE = 1/4 * 0.55 + 2/4 * 0.175 + 1/4 * 0.1 = 0.1375 + 0.0875 + 0.025 = 0.25
    # Brier (sum over labels): 0.02 + 0.18 + 0.845 + 0.605 = 1.65, / 4 = 0.4125
    result = calibration(gold, probs, exclusive=True, n_bins=5)
    assert result["n"] == 4
    assert result["ece"] == pytest.approx(0.25)
    assert result["brier"] == pytest.approx(0.4125)
    y = numpy.asarray([0, 1, 0, 1])
    p_pos = numpy.asarray([0.1, 0.7, 0.65, 0.45])
    ref = sk.brier_score_loss(y, p_pos, scale_by_half=False)
    assert result["brier"] == pytest.approx(ref)
    bins = result["bins"]
    assert [b["count"] for b in bins] == [0, 0, 1, 2, 1]
    assert bins[0] == {"lo": 0.0, "hi": 0.2, "count": 0, "confidence": None, "accuracy": None}
    assert bins[3]["confidence"] == pytest.approx(0.675)
    assert bins[3]["accuracy"] == pytest.approx(0.5)
    assert bins[4]["lo"] == pytest.approx(0.8) and bins[4]["hi"] == 1.0


def test_calibration_exclusive_three_class_brier():
    result = calibration(TRI_GOLD, TRI_PROBS, exclusive=True)
    ref = sk.brier_score_loss(TRI_Y, TRI_PROBS[:5], labels=[0, 1, 2])
    assert result["brier"] == pytest.approx(ref)
    assert len(result["bins"]) == 10
    assert sum(b["count"] for b in result["bins"]) == 5


def test_calibration_multilabel():
    gold = [[1, 0], [0, NAN]]
    probs = [[0.9, 0.8], [0.3, 0.99]]
    # Known cells (p, y): (0.9, 1), (0.8, 0), (0.3, 0). Two bins: [0, 0.5] {0.3: acc 0},
    # (0.5, 1] {0.9, 0.8: conf 0.85, acc 0.5}. ECE = 1/3 * 0.3 + 2/3 * 0.35 = 1/3.
    # Brier = (0.01 + 0.64 + 0.09) / 3.
    result = calibration(gold, probs, exclusive=False, n_bins=2)
    assert result["n"] == 3
    assert result["ece"] == pytest.approx(1 / 3)
    assert result["brier"] == pytest.approx(0.74 / 3)
    assert result["brier"] == pytest.approx(sk.brier_score_loss([1, 0, 0], [0.9, 0.8, 0.3]))


def test_calibration_bins_match_sklearn_calibration_curve():
    known = ~numpy.isnan(ML_GOLD)
    y, p = ML_GOLD[known].astype(int), ML_PROBS[known]
    result = calibration(ML_GOLD, ML_PROBS, exclusive=False, n_bins=10)
    prob_true, prob_pred = sk_calibration.calibration_curve(y, p, n_bins=10)
    filled = [b for b in result["bins"] if b["count"]]
    assert [b["accuracy"] for b in filled] == pytest.approx(list(prob_true))
    assert [b["confidence"] for b in filled] == pytest.approx(list(prob_pred))
    assert result["brier"] == pytest.approx(sk.brier_score_loss(y, p))


def test_calibration_no_gold():
    result = calibration(numpy.full((2, 2), NAN), BIN_PROBS[:2], exclusive=True)
    assert result["n"] == 0 and result["ece"] is None and result["brier"] is None


# teacher_bias_audit


def test_teacher_bias_audit_exclusive():
    eye = numpy.eye(3)
    gold = numpy.vstack([eye[[0, 0, 1, 2, 2, 1]], [NAN] * 3])
    # gold     a a b c c b | -
    # teacher  a b c a c b | a   -> wrong on docs 1, 2, 3; right on 0, 4, 5
    # student  a b b b a b | c   -> doc 1 copies the error, doc 2 is right, doc 3 is wrong
    #                              differently; doc 4 loses a teacher-right doc.
    teacher = 0.1 + 0.7 * eye[[0, 1, 2, 0, 2, 1, 0]]
    student = 0.1 + 0.7 * eye[[0, 1, 1, 1, 0, 1, 2]]
    result = teacher_bias_audit(gold, teacher, student, exclusive=True)
    assert result == pytest.approx(
        {
            "n": 6,
            "teacher_wrong": 3,
            "student_copies_teacher_error": 1 / 3,
            "student_right_where_teacher_wrong": 1 / 3,
            "teacher_right": 3,
            "student_loses": 1 / 3,
        }
    )


def test_teacher_bias_audit_multilabel():
    gold = [[1, 0], [0, NAN], [1, 1]]
    teacher = [[0.9, 0.6], [0.7, 0.9], [0.2, 0.8]]  # -> [1,1] [1,1] [0,1]
    student = [[0.8, 0.7], [0.1, 0.9], [0.6, 0.3]]  # -> [1,1] [0,1] [1,0]
    # Known cells (y, t, s): (1,1,1) (0,1,1) (0,1,0) (1,0,1) (1,1,0); (1,1) is unknown.
    # Teacher wrong on (0,1,1) (0,1,0) (1,0,1): the student copies 1, is right on 2.
    # Teacher right on (1,1,1) (1,1,0): the student loses 1 of 2.
    result = teacher_bias_audit(gold, teacher, student, exclusive=False)
    assert result == pytest.approx(
        {
            "n": 5,
            "teacher_wrong": 3,
            "student_copies_teacher_error": 1 / 3,
            "student_right_where_teacher_wrong": 2 / 3,
            "teacher_right": 2,
            "student_loses": 1 / 2,
        }
    )


def test_teacher_bias_audit_empty_denominators():
    gold = [[1, 0], [0, 1]]
    teacher = [[0.9, 0.1], [0.2, 0.8]]  # always right
    result = teacher_bias_audit(gold, teacher, teacher, exclusive=True)
    assert result["teacher_wrong"] == 0
    assert result["student_copies_teacher_error"] is None
    assert result["student_right_where_teacher_wrong"] is None
    assert result["student_loses"] == 0.0


# retention


def test_retention():
    student = {"accuracy": 0.8, "macro_f1": 0.6, "roc_auc": None}
    teacher = {"accuracy": 0.9, "macro_f1": 0.0, "roc_auc": 0.9}
    result = retention(student, teacher)
    assert result == {"accuracy": pytest.approx(0.8 / 0.9), "macro_f1": None, "roc_auc": None}
    assert retention({"x": 0.5}, {}, keys=("x",)) == {"x": None}


# validation


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: classification_metrics(
                numpy.zeros((3, 2)), numpy.zeros((3, 3)), ["a", "b"], exclusive=True
            ),
            r"gold and probs must have the same shape, got gold \(3, 2\) and probs \(3, 3\)",
        ),
        (
            lambda: classification_metrics(
                numpy.zeros((3, 2)), numpy.zeros((3, 2)), ["a", "b", "c"], exclusive=False
            ),
            r"2 columns \(shape \(3, 2\)\) but labels has 3 names",
        ),
        (
            lambda: agreement([0.5, 0.5], [[0.5, 0.5]], ["a", "b"], exclusive=True),
            r"student_probs must be a 2-d .* got shape \(2,\)",
        ),
        (
            lambda: mean_kl(numpy.zeros((2, 3)), numpy.zeros((3, 3)), exclusive=True),
            r"teacher_probs and student_probs .* \(2, 3\) and student_probs \(3, 3\)",
        ),
        (
            lambda: calibration(numpy.zeros((2, 2)), numpy.zeros((2, 2, 1)), exclusive=True),
            r"probs must be a 2-d .* got shape \(2, 2, 1\)",
        ),
        (
            lambda: teacher_bias_audit(
                numpy.zeros((2, 2)), numpy.zeros((2, 2)), numpy.zeros((1, 2)), exclusive=True
            ),
            r"gold and student_probs .* gold \(2, 2\) and student_probs \(1, 2\)",
        ),
        (
            lambda: confusion_matrix(
                [[1, 1], [0, 1]], [[0.5, 0.5], [0.5, 0.5]], ["a", "b"], exclusive=True
            ),
            r"gold row 0 has 2 labels set to 1.0",
        ),
        (
            lambda: classification_metrics([[0.3, 0.7]], [[0.5, 0.5]], ["a", "b"], exclusive=False),
            r"gold must hold 0.0, 1.0 or NaN .* row 0, column 0 is 0.3",
        ),
        (
            lambda: decisions([[0.5, NAN]], exclusive=True),
            r"probs must be finite, but row 0, column 1 is nan",
        ),
        (
            lambda: decisions([[2.0, -1.0]], exclusive=True),
            r"probs must hold probabilities in \[0, 1\]",
        ),
        (
            lambda: calibration([[1, 0]], [[0.5, 0.5]], exclusive=True, n_bins=0),
            r"n_bins must be a positive integer",
        ),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
