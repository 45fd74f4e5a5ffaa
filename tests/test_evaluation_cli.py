import json
import re

import pytest
import spacy
from typer.testing import CliRunner

from spacy_distill.annotate import annotate
from spacy_distill.cli import app
from spacy_distill.evaluation.tune import get_thresholds
from spacy_distill.teachers import SpacyTeacher

from .conftest import SPAM_TEXTS, train_spacy_teacher, write_jsonl

runner = CliRunner()


def _clean(text):
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())


@pytest.fixture(scope="module")
def student_and_data(tmp_path_factory, ):
    root = tmp_path_factory.mktemp("eval")
    teacher_path = train_spacy_teacher(root / "teacher")
    # a weaker student: the same kind of model trained for fewer steps
    student_path = train_spacy_teacher(root / "student", steps=3)
    rows = [{"text": t, "label": l} for t, l in SPAM_TEXTS]
    data = write_jsonl(root / "test.jsonl", rows)
    annotate(data, root / "test.spacy", SpacyTeacher(spacy.load(teacher_path)), show_progress=False)
    return root, teacher_path, student_path, data


def test_evaluate_reuses_stored_teacher_outputs_and_writes_the_report(student_and_data, tmp_path):
    root, teacher_path, student_path, _ = student_and_data
    result = runner.invoke(app, ["evaluate", str(student_path), "--data", str(root / "test.spacy"), "-o", str(tmp_path), "--no-cost", "--no-progress"])
    assert result.exit_code == 0, _clean(result.stdout)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["teacher"]["outputs_from"] == "target file"
    assert report["data"] == {"path": str(root / "test.spacy"), "n_texts": 8, "n_gold": 8}
    assert report["quality"]["teacher"]["accuracy"] == 1.0
    assert 0.0 <= report["agreement"]["argmax"] <= 1.0
    assert report["retention"]["accuracy"] == pytest.approx(report["quality"]["student"]["accuracy"])
    assert set(report["calibration"]) == {"student", "teacher"}
    assert report["teacher_bias_audit"]["teacher_wrong"] == 0
    markdown = (tmp_path / "report.md").read_text()
    assert "## Quality vs gold" in markdown and "## Agreement with the teacher" in markdown
    for file_name in report["plots"].values():
        assert (tmp_path / file_name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({file_name})" in markdown


@pytest.mark.slow
def test_evaluate_runs_the_teacher_and_measures_cost(student_and_data, tmp_path):
    root, teacher_path, student_path, data = student_and_data
    result = runner.invoke(app, ["evaluate", str(student_path), "--data", str(data), "--teacher", str(teacher_path), "-o", str(tmp_path), "--latency-n", "20", "--no-progress"])
    assert result.exit_code == 0, _clean(result.stdout)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["teacher"]["outputs_from"] == "teacher run"
    cost = report["cost"]
    for name in ("student", "teacher"):
        assert cost[name]["throughput"]["docs_per_s"] > 0
        assert 10 < cost[name]["peak_rss_mb"] < 8000
        assert cost[name]["latency"]["p50_ms"] <= cost[name]["latency"]["p99_ms"]
    assert cost["summary"]["speedup"] > 0
    assert "## Cost" in (tmp_path / "report.md").read_text()


def test_tune_stores_thresholds_with_the_pipeline(student_and_data, tmp_path):
    root, _, student_path, data = student_and_data
    out = tmp_path / "tuned"
    result = runner.invoke(app, ["tune", str(student_path), "--data", str(data), "-o", str(out), "--objective", "recall", "--value", "1.0"])
    assert result.exit_code == 0, _clean(result.stdout)
    thresholds = get_thresholds(spacy.load(out))
    assert set(thresholds) == {"ham", "spam"}
    nlp = spacy.load(out)
    spam_probs = [doc.cats["spam"] for doc, (_, label) in zip(nlp.pipe(t for t, _ in SPAM_TEXTS), SPAM_TEXTS) if label == "spam"]
    assert min(spam_probs) >= thresholds["spam"]  # recall 1.0 on this data
    meta = json.loads((out / "meta.json").read_text())
    assert meta["spacy_distill"]["threshold_tuning"]["objective"] == "recall"


def test_evaluate_names_unknown_gold_labels(student_and_data, tmp_path):
    root, _, student_path, _ = student_and_data
    data = write_jsonl(tmp_path / "bad.jsonl", [{"text": "x", "label": "eggs"}])
    result = runner.invoke(app, ["evaluate", str(student_path), "--data", str(data), "-o", str(tmp_path), "--no-cost"])
    assert result.exit_code == 1
    assert f"{data}:1: unknown label(s) ['eggs']" in _clean(result.stdout)
