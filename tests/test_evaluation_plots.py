"""Each plot writes a PNG that matplotlib can read back, also for awkward inputs."""

import subprocess
import sys

import matplotlib  # noqa: E402,F401  (a required test dependency: the [test] extra)
import pytest

from spacy_distill.evaluation.plots import (  # noqa: E402
    plot_confusion,
    plot_reliability,
    plot_speed_quality,
    plot_threshold_curve,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    from matplotlib.image import imread

    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(str(path))
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] > 100 and image.shape[1] > 100


def make_bins(confidences, counts):
    bins = []
    for i, (confidence, count) in enumerate(zip(confidences, counts)):
        empty = count == 0
        bins.append(
            {
                "lo": i / len(counts),
                "hi": (i + 1) / len(counts),
                "count": count,
                "confidence": None if empty else confidence,
                "accuracy": None if empty else max(0.0, confidence - 0.05),
            }
        )
    return bins


def test_plot_reliability(tmp_path):
    curves = {
        "student": make_bins(
            [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95],
            [0, 0, 0, 0, 0, 3, 8, 12, 40, 120],
        ),
        # The dict form, with an ECE for the legend.
        "teacher": {
            "ece": 0.021,
            "bins": make_bins(
                [0.55, 0.65, 0.75, 0.85, 0.95] * 2, [0, 0, 0, 0, 0, 1, 2, 5, 30, 150]
            ),
        },
    }
    path = plot_reliability(curves, tmp_path / "figs" / "reliability.png", "Calibration")
    assert path == tmp_path / "figs" / "reliability.png"
    assert_png(path)


def test_plot_reliability_all_bins_empty(tmp_path):
    curves = {"student": make_bins([0.5] * 10, [0] * 10), "teacher": []}
    assert_png(plot_reliability(curves, tmp_path / "empty.png", "Nothing to show"))


def test_plot_confusion(tmp_path):
    labels = ["ham", "spam", "a label with a long name"]
    matrix = [[50, 3, 0], [4, 40, 1], [0, 0, 7]]
    assert_png(plot_confusion(matrix, labels, tmp_path / "confusion.png", "Student"))
    # All zeros (no dev docs for this split) must not divide by zero in the colour scale.
    assert_png(plot_confusion([[0, 0], [0, 0]], ["a", "b"], tmp_path / "zeros.png", "Empty"))


def test_plot_confusion_shape_mismatch(tmp_path):
    with pytest.raises(ValueError, match="3 labels"):
        plot_confusion([[1, 2], [3, 4]], ["a", "b", "c"], tmp_path / "bad.png", "Bad")


def test_plot_speed_quality(tmp_path):
    points = [
        {"name": "teacher", "docs_per_s": 12.5, "quality": 0.93, "size_mb": 1300.0},
        {"name": "student (bow)", "docs_per_s": 25000.0, "quality": 0.90, "size_mb": 2.1},
        {"name": "student (cnn)", "docs_per_s": 1800.0, "quality": 0.915},
    ]
    path = plot_speed_quality(points, tmp_path / "speed.png", "Trade-off", quality_name="macro F1")
    assert_png(path)
    # The y range leaves room above the best (largest) marker, which used to be clipped.
    from spacy_distill.evaluation.plots import quality_limits

    lo, hi = quality_limits([0.93, 0.90, 0.915])
    assert hi >= 0.93 + 0.015 and lo <= 0.90 - 0.01
    assert quality_limits([0.8, 0.8]) == pytest.approx((0.79, 0.815))


def test_plot_speed_quality_rejects_zero_rate(tmp_path):
    with pytest.raises(ValueError, match="'broken'"):
        plot_speed_quality(
            [{"name": "broken", "docs_per_s": 0, "quality": 0.5}], tmp_path / "x.png", "x"
        )


def test_plot_threshold_curve(tmp_path):
    thresholds = [i / 10 for i in range(1, 10)]
    recall = [1.0 - t * 0.9 for t in thresholds]
    # Precision is undefined where nothing is predicted positive: a gap, not a crash.
    precision = [0.5 + t * 0.5 for t in thresholds[:-2]] + [None, None]
    f1 = [None if p is None else 2 * p * r / (p + r) for p, r in zip(precision, recall)]
    path = plot_threshold_curve(
        thresholds, precision, recall, f1, tmp_path / "threshold.png", "spam", chosen=0.4
    )
    assert_png(path)
    assert_png(plot_threshold_curve(thresholds, precision, recall, f1, tmp_path / "t2.png", "x"))


def test_importing_the_package_does_not_import_matplotlib():
    code = (
        "import sys, spacy_distill, spacy_distill.evaluation.plots, "
        "spacy_distill.evaluation.cost; assert 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
