import json
import re

import pytest
import spacy
from typer.testing import CliRunner

from spacy_distill.annotation.annotate import annotate
from spacy_distill.cli import app
from spacy_distill.evaluation.tune import get_thresholds
from spacy_distill.teachers import SpacyTeacher

from .conftest import SPAM_TEXTS, train_spacy_teacher, write_jsonl

runner = CliRunner()


def _clean(text):
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())


@pytest.fixture(scope="module")
def student_and_data(
    tmp_path_factory,
):
    root = tmp_path_factory.mktemp("eval")
    teacher_path = train_spacy_teacher(root / "teacher")
    # a weaker student: the same kind of model trained for fewer steps
    student_path = train_spacy_teacher(root / "student", steps=3)
    rows = [{"text": t, "label": label} for t, label in SPAM_TEXTS]
    data = write_jsonl(root / "test.jsonl", rows)
    annotate(data, root / "test.spacy", SpacyTeacher(spacy.load(teacher_path)), show_progress=False)
    return root, teacher_path, student_path, data


def test_evaluate_reuses_stored_teacher_outputs_and_writes_the_report(student_and_data, tmp_path):
    root, teacher_path, student_path, _ = student_and_data
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(student_path),
            "--data",
            str(root / "test.spacy"),
            "-o",
            str(tmp_path),
            "--no-cost",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, _clean(result.stdout)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["teacher"]["outputs_from"] == "target file"
    assert report["data"] == {"path": str(root / "test.spacy"), "n_texts": 8, "n_gold": 8}
    assert report["quality"]["teacher"]["accuracy"] == 1.0
    # Recomputed from the two pipelines' own decisions on the same texts: the report's numbers
    # must be these (a report that mixed up docs, labels or models would not be).
    student, teacher = spacy.load(student_path), spacy.load(teacher_path)
    texts = [t for t, _ in SPAM_TEXTS]
    student_pred = [max(doc.cats, key=doc.cats.get) for doc in student.pipe(texts)]
    teacher_pred = [max(doc.cats, key=doc.cats.get) for doc in teacher.pipe(texts)]
    gold = [label for _, label in SPAM_TEXTS]
    assert report["agreement"]["argmax"] == pytest.approx(
        sum(s == t for s, t in zip(student_pred, teacher_pred)) / len(texts)
    )
    assert report["quality"]["student"]["accuracy"] == pytest.approx(
        sum(s == g for s, g in zip(student_pred, gold)) / len(texts)
    )
    assert report["retention"]["accuracy"] == pytest.approx(
        report["quality"]["student"]["accuracy"]
    )
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
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(student_path),
            "--data",
            str(data),
            "--teacher",
            str(teacher_path),
            "-o",
            str(tmp_path),
            "--latency-n",
            "20",
            "--no-progress",
        ],
    )
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
    result = runner.invoke(
        app,
        [
            "tune",
            str(student_path),
            "--data",
            str(data),
            "-o",
            str(out),
            "--objective",
            "recall",
            "--value",
            "1.0",
        ],
    )
    assert result.exit_code == 0, _clean(result.stdout)
    thresholds = get_thresholds(spacy.load(out))
    assert set(thresholds) == {"ham", "spam"}
    nlp = spacy.load(out)
    spam_probs = [
        doc.cats["spam"]
        for doc, (_, label) in zip(nlp.pipe(t for t, _ in SPAM_TEXTS), SPAM_TEXTS)
        if label == "spam"
    ]
    assert min(spam_probs) >= thresholds["spam"]  # recall 1.0 on this data
    meta = json.loads((out / "meta.json").read_text())
    assert meta["spacy_distill"]["threshold_tuning"]["objective"] == "recall"


def test_evaluate_names_unknown_gold_labels(student_and_data, tmp_path):
    root, _, student_path, _ = student_and_data
    data = write_jsonl(tmp_path / "bad.jsonl", [{"text": "x", "label": "eggs"}])
    result = runner.invoke(
        app, ["evaluate", str(student_path), "--data", str(data), "-o", str(tmp_path), "--no-cost"]
    )
    assert result.exit_code == 1
    assert f"{data}:1: unknown label(s) ['eggs']" in _clean(result.stdout)


def _cascade_data(root, tmp_path):
    """The toy test set, larger, with the stored teacher outputs of test.spacy."""
    from spacy_distill.data.targets import read_targets, write_targets

    docs = list(read_targets(root / "test.spacy"))
    return write_targets(docs * 5, tmp_path / "dev.spacy")


def test_tune_chooses_the_band_for_an_escalation_rate(student_and_data, tmp_path):
    root, _, student_path, _ = student_and_data
    dev = _cascade_data(root, tmp_path)
    out = tmp_path / "tuned"
    result = runner.invoke(
        app,
        [
            "tune",
            str(student_path),
            "--data",
            str(dev),
            "-o",
            str(out),
            "--escalation-rate",
            "0.25",
        ],
    )
    assert result.exit_code == 0, _clean(result.stdout)
    assert "Cascade band: margin" in _clean(result.stdout)
    from spacy_distill.evaluation.tune import get_cascade
    from spacy_distill.filter.decision import DecisionRule

    nlp = spacy.load(out)
    band = get_cascade(nlp)
    assert band["objective"] == "escalation_rate" and band["value"] == 0.25
    rule = DecisionRule(["ham", "spam"], True, get_thresholds(nlp))
    docs = list(nlp.pipe(t for t, _ in SPAM_TEXTS))
    margins = rule.margins(rule.probabilities([d.cats for d in docs]))
    # 8 distinct texts, each 5 times: a quarter of dev is 2 texts' worth (ties kept together)
    assert (
        (margins < band["margin"]).mean()
        == pytest.approx(band["dev"]["escalation_rate"])
        == pytest.approx(0.25)
    )
    # the filter reads the band from meta.json
    nlp.add_pipe("semantic_filter")
    assert sum(doc._.verdict == "review" for doc in nlp.pipe(t for t, _ in SPAM_TEXTS)) == 2


def test_tune_band_for_a_cascade_accuracy_and_evaluate_reports_the_curve(
    student_and_data, tmp_path
):
    from spacy_distill.data.targets import write_targets

    from .conftest import make_target_docs

    root, _, student_path, _ = student_and_data
    # A perfect teacher, and gold that the student cannot know for two texts: only escalating
    # them reaches accuracy 1.0.
    flipped = {"see you at lunch", "urgent you won cash"}
    rows = []
    for text, label in SPAM_TEXTS * 3:
        spam = (label == "spam") != (text in flipped)
        rows.append(
            (
                text,
                [0.01, 0.99] if spam else [0.99, 0.01],
                {"ham": float(not spam), "spam": float(spam)},
            )
        )
    dev = write_targets(make_target_docs(rows), tmp_path / "dev.spacy")
    out = tmp_path / "tuned"
    # Without calibration: this weak 3-step student fits a temperature near the upper bound, which
    # flattens its margins into float32 ties.
    result = runner.invoke(
        app,
        [
            "tune",
            str(student_path),
            "--data",
            str(dev),
            "-o",
            str(out),
            "--cascade-accuracy",
            "1.0",
            "--no-calibrate",
        ],
    )
    assert result.exit_code == 0, _clean(result.stdout)
    from spacy_distill.evaluation.tune import get_cascade

    band = get_cascade(spacy.load(out))
    assert band["objective"] == "accuracy" and band["dev"]["met"] and band["dev"]["accuracy"] == 1.0
    assert band["dev"]["student_accuracy"] < 1.0 and 0 < band["dev"]["escalation_rate"] < 1.0
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(out),
            "--data",
            str(dev),
            "-o",
            str(tmp_path / "m"),
            "--no-cost",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, _clean(result.stdout)
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    cascade = report["cascade"]
    assert cascade["teacher_accuracy"] == 1.0
    assert cascade["points"][0]["accuracy"] == pytest.approx(cascade["student_accuracy"])
    assert cascade["points"][-1]["accuracy"] == pytest.approx(cascade["teacher_accuracy"])
    assert cascade["named"]["tuned"]["accuracy"] == 1.0
    assert cascade["named"]["tuned"]["escalation_rate"] == pytest.approx(
        band["dev"]["escalation_rate"]
    )
    assert "## Cascade" in (tmp_path / "m" / "report.md").read_text()
    assert (tmp_path / "m" / "cascade.png").read_bytes()[:4] == b"\x89PNG"


def test_cascade_accuracy_needs_teacher_outputs(student_and_data, tmp_path):
    root, _, student_path, data = student_and_data
    result = runner.invoke(
        app,
        [
            "tune",
            str(student_path),
            "--data",
            str(data),
            "-o",
            str(tmp_path / "t"),
            "--cascade-accuracy",
            "0.9",
        ],
    )
    assert result.exit_code == 1
    assert "holds no teacher outputs" in _clean(result.stdout) and str(data) in _clean(
        result.stdout
    )
    both = runner.invoke(
        app,
        [
            "tune",
            str(student_path),
            "--data",
            str(data),
            "--cascade-accuracy",
            "0.9",
            "--escalation-rate",
            "0.1",
        ],
    )
    assert both.exit_code == 1 and "not both" in _clean(both.stdout)
    assert not (tmp_path / "t").exists()


def test_the_exported_filter_decides_what_the_report_says(student_and_data, tmp_path):
    """tune (with the filter's actions) -> export --filter -> evaluate: the report's filter
    figures are those of the verdicts the exported pipeline gives, doc for doc."""
    import numpy

    root, _, student_path, _ = student_and_data
    rows = [{"text": t, "label": label} for t, label in SPAM_TEXTS] + [
        {"text": t, "label": label}
        for t, label in [
            ("free cash prize", "spam"),
            ("lunch at noon?", "ham"),
            ("@user", "ham"),
            ("call now to win", "spam"),
            ("see you tomorrow", "ham"),
            ("ok", "ham"),
        ]
    ]
    data = write_jsonl(tmp_path / "dev.jsonl", rows)
    tuned, exported, out = tmp_path / "tuned", tmp_path / "exported", tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "tune",
            str(student_path),
            "--data",
            str(data),
            "-o",
            str(tuned),
            "--action",
            "spam=block",
            "--escalation-rate",
            "0.1",
        ],
    )
    assert result.exit_code == 0, _clean(result.stdout)
    meta = json.loads((tuned / "meta.json").read_text())["spacy_distill"]
    assert meta["actions"] == {"spam": "block"}
    decisions = meta["threshold_tuning"]["decisions"]
    assert decisions["tuned"]["accuracy"] >= decisions["argmax"]["accuracy"]
    result = runner.invoke(
        app, ["export", str(tuned), str(exported), "--filter"]
    )  # actions from tune
    assert result.exit_code == 0, _clean(result.stdout)
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(exported),
            "--data",
            str(data),
            "-o",
            str(out),
            "--no-cost",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, _clean(result.stdout)
    shipped = json.loads((out / "report.json").read_text())["filter"]
    assert shipped["source"] == "semantic_filter 'semantic_filter'" and shipped["actions"] == {
        "spam": "block"
    }
    nlp = spacy.load(exported)
    docs = list(nlp.pipe(row["text"] for row in rows))
    correct = [doc._.verdict_details["labels"] == [row["label"]] for doc, row in zip(docs, rows)]
    assert shipped["decisions"]["accuracy"] == pytest.approx(numpy.mean(correct))
    verdicts = [doc._.verdict for doc in docs]
    assert shipped["verdict_rates"] == pytest.approx(
        {v: verdicts.count(v) / len(verdicts) for v in set(verdicts)}
    )
    assert "## Filter (the decisions the shipped filter makes)" in (out / "report.md").read_text()


def test_evaluate_reports_the_gold_only_baseline_and_warns_where_distillation_is_below_it(
    student_and_data, tmp_path
):
    root, teacher_path, _, _ = student_and_data
    # The toy teacher was trained on gold for 30 steps: a gold-only student better than one step.
    student_path = train_spacy_teacher(tmp_path / "one_step", steps=1)
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(student_path),
            "--data",
            str(root / "test.spacy"),
            "-o",
            str(tmp_path),
            "--no-cost",
            "--no-progress",
            "--no-plots",
            "--baseline",
            str(teacher_path),
        ],
    )
    assert result.exit_code == 0, _clean(result.stdout)
    report = json.loads((tmp_path / "report.json").read_text())
    check = report["gold_check"]
    assert set(check["per_label"]) == {"ham", "spam"}
    quality = report["quality"]
    assert (
        check["per_label"]["spam"]["gold_only_f1"]
        == quality["gold_only"]["per_label"]["spam"]["f1"]
    )
    expected = [
        label
        for label in ("ham", "spam")
        if quality["student"]["per_label"][label]["f1"]
        < quality["gold_only"]["per_label"][label]["f1"]
    ]
    assert check["student_worse"] == expected
    assert ("worse than the gold-only student" in _clean(result.stdout)) == bool(expected)
    assert "## Against gold alone" in (tmp_path / "report.md").read_text()


def test_gold_check_names_the_labels_below_gold_alone():
    from spacy_distill.evaluation.evaluate import gold_check

    def quality(f1s):
        return {
            "macro_f1": sum(f1s.values()) / len(f1s),
            "per_label": {k: {"f1": v} for k, v in f1s.items()},
        }

    check = gold_check(
        {
            "student": quality({"ok": 0.9, "hate": 0.2}),
            "teacher": quality({"ok": 0.95, "hate": 0.0}),
            "gold_only": quality({"ok": 0.85, "hate": 0.4}),
        }
    )
    assert check["teacher_worse"] == ["hate"] and check["student_worse"] == ["hate"]
    assert check["per_label"]["hate"] == {"gold_only_f1": 0.4, "student_f1": 0.2, "teacher_f1": 0.0}
