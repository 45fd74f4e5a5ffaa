"""The README's main job, the spam_filter project, end to end (on other data, through --vars)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy_transformers  # noqa: F401  (the teacher's architecture: a required test dependency)

from .conftest import check_student_beats_majority, majority_baseline

PROJECT = Path(__file__).parent.parent / "projects" / "spam_filter"


TWEETS = Path(__file__).parent / "data" / "tweeteval_slice"
# The student must beat a student that always says the majority class: in macro-F1 by this
# margin, in agreement with the teacher by this one (test_student_check_rejects_an_always_majority_student).
# In a run on this machine (400 steps): macro-F1 0.44 against 0.23, agreement 0.62 against 0.35.
STUDENT_F1_MARGIN = 0.1
STUDENT_AGREEMENT_MARGIN = 0.1
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _copy_project(tmp_path: Path) -> Path:
    root = tmp_path / "spam_filter"
    shutil.copytree(
        PROJECT,
        root,
        ignore=shutil.ignore_patterns("corpus", "training", "metrics", "packages", "project.lock"),
    )
    return root


def test_the_projects_own_data_is_valid():
    """The default data (the SMS Spam Collection, committed in assets/) reads without a bad
    record: the end-to-end run below uses other data through --vars, which is what it tests."""
    import srsly

    from spacy_distill.data.records import label_set, read_records, split_errors

    data = PROJECT / srsly.read_yaml(PROJECT / "project.yml")["vars"]["data"]
    paths = [data / f"{split}.jsonl" for split in ("train", "dev", "test")]
    for path in paths:
        records, errors = split_errors(read_records(path))
        assert records and not errors, (path, errors[:3])
    assert label_set(paths) == (("ham", "spam"), True)


@pytest.mark.slow
def test_spam_filter_project_runs_all_on_another_dataset_with_vars_only(tmp_path):
    """The whole workflow, as a template on data that is not its own (three imbalanced classes
    of tweets: short noisy text), changed through --vars only: data paths, a seeded training
    sample, the filter's actions, the package name and licence. Labels come from the data. Then
    the wheel is installed alone in a fresh venv, and a second run re-runs nothing."""
    root = _copy_project(tmp_path)
    command = [
        sys.executable,
        "-m",
        "spacy",
        "project",
        "run",
        "all",
        str(root),
        "--vars.data",
        str(TWEETS),
        "--vars.train_sample",
        "200",
        "--vars.seed",
        "3",
        "--vars.actions",
        "negative=flag,neutral=allow",
        "--vars.package_name",
        "tweet_filter",
        "--vars.package_license",
        "TweetEval terms (a test slice)",
        "--vars.teacher_max_steps",
        "30",
        "--vars.teacher_eval_frequency",
        "15",
        "--vars.augment_seeds",
        "20",
        "--vars.word_vectors_vocab",
        "no-teacher-vocab",
        "--vars.word_vectors_dims",
        "64",
        "--vars.student_max_steps",
        "400",
        "--vars.eval_latency_n",
        "5",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for path in (
        "corpus/train/original.spacy",
        "corpus/train/augmented.spacy",
        "training/student/model-best",
        "training/student_tuned/meta.json",
        "metrics/report.md",
        "metrics/reliability.png",
    ):
        assert (root / path).exists(), path
    train_lines = (root / "corpus" / "train.jsonl").read_text(encoding="utf8").splitlines()
    assert len(train_lines) == 200  # a seeded sample of the 400, not the first 200
    source = (TWEETS / "train.jsonl").read_text(encoding="utf8").splitlines()
    assert [json.loads(line)["text"] for line in train_lines] != [
        json.loads(line)["text"] for line in source[:200]
    ]
    assert len((root / "corpus" / "test.jsonl").read_text(encoding="utf8").splitlines()) == 100
    from spacy_distill.data.targets import get_target, read_target_summary, read_targets

    for name in ("train_gold", "dev_gold", "test_gold", "dev", "test"):
        summary = read_target_summary(root / "corpus" / f"{name}.spacy")
        assert (
            list(summary["labels"]) == ["negative", "neutral", "positive"] and summary["exclusive"]
        ), name
    report = json.loads((root / "metrics" / "report.json").read_text())
    gold = report["quality"]
    assert set(gold["student"]["per_label"]) == {"negative", "neutral", "positive"}
    assert set(report["gold_check"]["per_label"]) == {
        "negative",
        "neutral",
        "positive",
    }  # the gold-only baseline
    # Three classes (test: 34 negative, 51 neutral, 15 positive): chance is ROC-AUC 0.5 and
    # macro-F1 0.23 (always "neutral"). A MiniLM teacher trained 30 steps on 200 tweets is above
    # (0.59 macro-F1, 0.75 AUC in a run on 2026-12-03). The student is evaluated on dev every 200
    # steps from step 0, so it needs 200+ steps: at 150, model-best was the model after one update,
    # one class for every text (macro-F1 0.17, below always-"neutral").
    assert gold["teacher"]["macro_f1"] > 0.4 and gold["teacher"]["roc_auc"] > 0.6
    assert gold["student"]["roc_auc"] > 0.55
    assert 0.3 < report["agreement"]["argmax"] <= 1.0
    check_student_beats_majority(
        report,
        _gold_labels(root / "corpus" / "test.jsonl"),
        STUDENT_F1_MARGIN,
        STUDENT_AGREEMENT_MARGIN,
    )
    assert report["cost"]["summary"]["speedup"] > 1.0
    tuned = json.loads((root / "training/student_tuned/meta.json").read_text())["spacy_distill"]
    assert set(tuned["thresholds"]) <= {"negative", "neutral", "positive"}
    assert tuned["actions"] == {"negative": "flag", "neutral": "allow"}
    decisions = tuned["threshold_tuning"]["decisions"]
    assert (
        decisions["tuned"]["accuracy"] >= decisions["argmax"]["accuracy"]
    )  # never below argmax on dev
    assert tuned["calibration"]["nll_after"] <= tuned["calibration"]["nll_before"]
    assert tuned["cascade"]["margin"] > 0  # the review band
    assert report["filter"]["actions"] == {"negative": "flag", "neutral": "allow"}
    assert report["cascade"]["points"][0]["escalation_rate"] == 0.0
    wheels = list(
        (root / "packages").glob(
            "en_tweet_filter-0.1.0/dist/en_tweet_filter-0.1.0-py3-none-any.whl"
        )
    )
    assert len(wheels) == 1 and list(
        (root / "packages").glob("en_tweet_filter-0.1.0/dist/*.tar.gz")
    )
    card = json.loads((root / "packages/exported/meta.json").read_text())["spacy_distill"]["card"]
    assert card["evaluation"]["retention"]["accuracy"] == pytest.approx(
        report["retention"]["accuracy"]
    )
    n_variants = len((root / "corpus" / "augmented.jsonl").read_text().splitlines())
    assert (
        10 <= n_variants <= 40
    )  # typos and leetspeak, one each per seed (20); echoes and duplicates dropped
    assert card["data"]["train"]["n_docs"] == 200 + n_variants
    variants = [
        get_target(doc) for doc in read_targets(root / "corpus" / "train" / "augmented.spacy")
    ]
    assert all(t.provenance.parent and t.provenance.method and t.has_teacher for t in variants)
    _check_wheel_in_fresh_venv(wheels[0], root / "packages" / "exported", tmp_path)
    # a second run re-runs nothing
    again = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert again.returncode == 0
    assert "Running command" not in again.stdout, again.stdout[-2000:]
    # The `active` workflow's rounds on the same data: 60 teacher labels chosen in two rounds.
    # `annotate` labelled every training text with this teacher already: all are cache hits.
    active = [*command[:5], "active-rounds", *command[6:]]
    active += ["--vars.active_budget", "60", "--vars.active_rounds", "2"]
    active += ["--vars.active_max_steps", "60"]
    result = subprocess.run(active, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rounds = json.loads((root / "training/active/report.json").read_text())["rounds"]
    assert [r["strategy"] for r in rounds] == ["random", "hybrid"]
    assert [r["n_labelled"] for r in rounds] == [30, 60]
    assert rounds[-1]["total_teacher_calls"] + sum(r["cache_hits"] for r in rounds) == 60
    assert rounds[-1]["total_teacher_calls"] == 0
    assert all(r["macro_f1"] is not None and r["retention"] is not None for r in rounds)
    assert (root / "training/active/learning_curve.png").exists()


def _gold_labels(path: Path):
    return [json.loads(line)["label"] for line in path.read_text(encoding="utf8").splitlines()]


def _toy_report(gold_labels, student_labels, teacher_labels, labels):
    """The parts of an evaluate report that the student check reads, from one-hot decisions,
    computed by the metrics code that evaluate uses."""
    from spacy_distill.evaluation import metrics

    def one_hot(names):
        return numpy.eye(len(labels))[[labels.index(name) for name in names]]

    gold, student, teacher = one_hot(gold_labels), one_hot(student_labels), one_hot(teacher_labels)
    return {
        "labels": labels,
        "quality": {
            "student": metrics.classification_metrics(gold, student, labels, exclusive=True)
        },
        "confusion": {"teacher": metrics.confusion_matrix(gold, teacher, labels, exclusive=True)},
        "agreement": metrics.agreement(student, teacher, labels, exclusive=True),
    }


def test_student_check_rejects_an_always_majority_student():
    """The bounds of the end-to-end test, on the same test texts: a student that always says the
    majority class fails them; one that follows a teacher as good as the end-to-end run's (right on
    60% of texts, the other 40% the next label) passes, and so does one that follows that teacher
    on 60% of texts and says the majority class on the rest."""
    gold = _gold_labels(TWEETS / "test.jsonl")
    labels = ["negative", "neutral", "positive"]
    rng = numpy.random.default_rng(0)
    wrong = rng.random(len(gold)) < 0.4
    teacher = [labels[(labels.index(g) + 1) % 3] if w else g for g, w in zip(gold, wrong)]
    majority = majority_baseline(_toy_report(gold, gold, teacher, labels), gold)
    assert majority["label"] == "neutral" and majority["macro_f1"] == pytest.approx(
        0.2252, abs=1e-3
    )
    with pytest.raises(AssertionError):
        check_student_beats_majority(
            _toy_report(gold, ["neutral"] * len(gold), teacher, labels),
            gold,
            STUDENT_F1_MARGIN,
            STUDENT_AGREEMENT_MARGIN,
        )
    check_student_beats_majority(
        _toy_report(gold, teacher, teacher, labels),
        gold,
        STUDENT_F1_MARGIN,
        STUDENT_AGREEMENT_MARGIN,
    )
    follows = rng.random(len(gold)) < 0.6
    partly = [t if f else "neutral" for t, f in zip(teacher, follows)]
    check_student_beats_majority(
        _toy_report(gold, partly, teacher, labels),
        gold,
        STUDENT_F1_MARGIN,
        STUDENT_AGREEMENT_MARGIN,
    )


FRESH_VENV_SCRIPT = """
import json, sys
import spacy
texts = json.loads(sys.argv[1])
nlp = spacy.load("en_tweet_filter")
one = [(doc.cats, doc._.verdict) for doc in nlp.pipe(texts)]
two = [(doc.cats, doc._.verdict) for doc in nlp.pipe(texts, n_process=2, batch_size=4)]
runtime = sys.modules["en_tweet_filter.spacy_distill_runtime"]
print(json.dumps({
    "pipeline": nlp.pipe_names,
    "license": nlp.meta.get("license"),
    "one": one,
    "same_with_two_processes": [v for _, v in one] == [v for _, v in two],
    "heavy_modules": [m for m in ("torch", "transformers", "spacy_transformers") if m in sys.modules],
    "uses_plugin": runtime.USES_INSTALLED_PLUGIN,
}))
"""


def _check_wheel_in_fresh_venv(wheel: Path, exported: Path, tmp_path: Path) -> None:
    """Install the wheel alone (spaCy comes from the package index) into a new venv and run the
    filter there: same cats and verdicts as the exported pipeline here, without torch or the
    plugin. Then install the plugin beside it: the package loads through the plugin, the same."""
    import spacy

    venv = tmp_path / "fresh_venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    texts = ["@user this is awful", "lovely day :)", "", "ok", "WINNER!! claim ur free prize now"]
    here = spacy.load(exported)
    expected = [(doc.cats, doc._.verdict) for doc in here.pipe(texts)]
    repo = Path(__file__).parent.parent
    for install, with_plugin in (([str(wheel)], False), ([str(repo)], True)):
        step = subprocess.run(
            [python, "-m", "pip", "install", "--quiet", *install],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert step.returncode == 0, step.stdout[-3000:] + step.stderr[-3000:]
        freeze = subprocess.run(
            [python, "-m", "pip", "freeze"], capture_output=True, text=True, check=True
        ).stdout.lower()
        assert "torch" not in freeze and "transformers" not in freeze, freeze
        assert ("spacy-distill" in freeze or "spacy_distill" in freeze) == with_plugin, freeze
        run = subprocess.run(
            [python, "-c", FRESH_VENV_SCRIPT, json.dumps(texts)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert (
            result["pipeline"] == ["textcat", "semantic_filter"]
            and result["uses_plugin"] == with_plugin
        )
        assert result["license"] == "TweetEval terms (a test slice)"
        assert result["heavy_modules"] == [] and result["same_with_two_processes"]
        for (cats, verdict), (expected_cats, expected_verdict) in zip(result["one"], expected):
            assert verdict == expected_verdict in {"allow", "flag", "review"}
            assert cats == pytest.approx(expected_cats, abs=1e-6)
