"""Temperature scaling: the fit finds a known temperature, the weights carry it exactly, export
keeps it, and `tune` records it."""

import json

import numpy
import pytest
import spacy
from typer.testing import CliRunner

from spacy_distill.cli import app
from spacy_distill.training.calibration import (
    apply_temperature,
    fit_temperature,
    scaled_probabilities,
)

from .conftest import SPAM_TEXTS, train_distilled_student, write_jsonl

TEXTS = [t for t, _ in SPAM_TEXTS] + ["free prize", "lunch?", "", "call me"]


@pytest.mark.parametrize("exclusive", [True, False])
@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_the_fit_recovers_a_known_temperature(exclusive, true_temperature):
    rng = numpy.random.default_rng(0)
    n, n_labels = 20000, 3
    logits = rng.normal(0, 2.0, size=(n, n_labels))
    truth = scaled_probabilities(logits, true_temperature, exclusive)
    if exclusive:
        gold = numpy.eye(n_labels)[[rng.choice(n_labels, p=row) for row in truth]]
    else:
        gold = (rng.random((n, n_labels)) < truth).astype("float64")
    # The model reports softmax(z) / sigmoid(z): mis-calibrated by exactly true_temperature.
    reported = scaled_probabilities(logits, 1.0, exclusive)
    assert fit_temperature(gold, reported, exclusive) == pytest.approx(true_temperature, rel=0.06)


@pytest.mark.parametrize(
    "arch,exclusive", [("bow", True), ("cnn", True), ("ensemble", True), ("bow", False)]
)
def test_the_weights_carry_the_temperature_exactly(tmp_path, arch, exclusive):
    path = train_distilled_student(tmp_path, arch=arch, exclusive=exclusive, steps=6)
    nlp = spacy.load(path)
    name = nlp.pipe_names[-1]
    labels = list(nlp.get_pipe(name).labels)
    before = numpy.asarray([[doc.cats[label] for label in labels] for doc in nlp.pipe(TEXTS)])
    apply_temperature(nlp.get_pipe(name).model, 3.0)
    after = numpy.asarray([[doc.cats[label] for label in labels] for doc in nlp.pipe(TEXTS)])
    z = numpy.log(before) if exclusive else numpy.log(before) - numpy.log1p(-before)
    numpy.testing.assert_allclose(after, scaled_probabilities(z, 3.0, exclusive), atol=2e-5)
    if exclusive:
        assert (after.argmax(axis=1) == before.argmax(axis=1)).all()
        assert numpy.abs(after - 1 / len(labels)).max() < numpy.abs(before - 1 / len(labels)).max()


def test_tune_calibrates_and_the_export_keeps_it(tmp_path):
    path = train_distilled_student(tmp_path, steps=30)  # overfit: over-confident on new texts
    rows = [{"text": t, "label": label} for t, label in SPAM_TEXTS] + [
        {"text": "ham text about free lunch", "label": "ham"},
        {"text": "prize call", "label": "ham"},
        {"text": "win a car now", "label": "spam"},
        {"text": "meeting notes", "label": "spam"},
    ]
    data = write_jsonl(tmp_path / "dev.jsonl", rows)
    runner = CliRunner()
    result = runner.invoke(
        app, ["tune", str(path), "--data", str(data), "-o", str(tmp_path / "tuned")]
    )
    assert result.exit_code == 0, result.stdout
    assert "Calibrated on 12 docs" in result.stdout
    record = json.loads((tmp_path / "tuned" / "meta.json").read_text())["spacy_distill"][
        "calibration"
    ]
    assert record["nll_after"] <= record["nll_before"] and record["temperature"] != pytest.approx(
        1.0
    )
    result = runner.invoke(app, ["export", str(tmp_path / "tuned"), str(tmp_path / "exported")])
    assert result.exit_code == 0, result.stdout
    tuned, exported = spacy.load(tmp_path / "tuned"), spacy.load(tmp_path / "exported")
    for a, b in zip(tuned.pipe(TEXTS), exported.pipe(TEXTS)):
        assert a.cats == pytest.approx(b.cats, abs=1e-6)
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(tmp_path / "tuned"),
            "--data",
            str(data),
            "-o",
            str(tmp_path / "m"),
            "--no-cost",
            "--no-progress",
            "--no-plots",
        ],
    )
    assert result.exit_code == 0, result.stdout
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert report["calibration_fit"]["temperature"] == pytest.approx(record["temperature"])
    assert "The student was calibrated by `tune`" in (tmp_path / "m" / "report.md").read_text()
    untuned = spacy.load(path)
    assert any(
        a.cats != pytest.approx(b.cats, abs=1e-4)
        for a, b in zip(untuned.pipe(TEXTS), exported.pipe(TEXTS))
    )
