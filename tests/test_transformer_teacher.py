"""A spacy-transformers teacher (a tiny random BERT built in a temp dir) through annotate and
`spacy train`: the listener path of the logits reader, end to end."""

import subprocess
import sys

import numpy
import pytest
import spacy
import spacy_transformers  # noqa: F401  (the teacher's transformer component)
from spacy.training import Example

from spacy_distill.annotation.annotate import annotate
from spacy_distill.data.targets import get_target, read_targets
from spacy_distill.teachers import SpacyTeacher
from spacy_distill.training.student_config import make_student_config

from .conftest import SPAM_TEXTS, write_jsonl
from .tiny_models import TRF_TEXTCAT_CONFIG as TRF_TEACHER_CONFIG
from .tiny_models import build_tiny_bert


@pytest.mark.slow
def test_transformer_teacher_annotates_and_student_learns_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    model_dir = build_tiny_bert(tmp_path / "tiny_bert")
    config = spacy.util.load_config_from_str(TRF_TEACHER_CONFIG.format(model_dir=model_dir))
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    examples = [
        Example.from_dict(
            nlp.make_doc(t),
            {"cats": {"ham": float(label == "ham"), "spam": float(label == "spam")}},
        )
        for t, label in SPAM_TEXTS
    ]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(15):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(tmp_path / "teacher")

    teacher = SpacyTeacher(spacy.load(tmp_path / "teacher"), batch_size=3)
    # The same saved teacher has the same fingerprint in another process (its cache entries
    # are found again); spacy-transformers' to_bytes differs per process, the files do not.
    code = (
        "import sys, spacy; from spacy_distill.teachers.spacy_teacher import SpacyTeacher; "
        "print(SpacyTeacher(spacy.load(sys.argv[1])).fingerprint)"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "teacher")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.split()[-1] == teacher.fingerprint
    texts = [t for t, _ in SPAM_TEXTS]
    scores = teacher.score(texts)
    cats = [doc.cats for doc in spacy.load(tmp_path / "teacher").pipe(texts)]
    numpy.testing.assert_allclose(
        numpy.exp(scores), [[c["ham"], c["spam"]] for c in cats], atol=1e-4
    )

    data = write_jsonl(tmp_path / "unlabelled.jsonl", [{"text": t} for t in texts])
    summary = annotate(data, tmp_path / "train.spacy", teacher, show_progress=False)
    assert summary.n_written == len(texts) and summary.n_gold == 0
    target = get_target(next(iter(read_targets(tmp_path / "train.spacy"))))
    assert (
        target.teacher_id
        == teacher.teacher_id
        == f"spacy:en_pipeline-0.0.0/textcat@{teacher.fingerprint[:8]}"
    )
    assert target.fingerprint == teacher.fingerprint

    student_config = make_student_config(
        tmp_path / "train.spacy", temperature=1.0, alpha=1.0, max_steps=150
    )
    student_config["training"]["eval_frequency"] = 50
    student_config["training"]["optimizer"]["learn_rate"] = 0.01
    student_config.to_disk(tmp_path / "student.cfg")
    from spacy.cli.train import train

    train(tmp_path / "student.cfg", tmp_path / "student")
    student = spacy.load(tmp_path / "student" / "model-last")
    student_spam = numpy.array([doc.cats["spam"] for doc in student.pipe(texts)])
    numpy.testing.assert_allclose(student_spam, numpy.exp(scores[:, 1]), atol=0.1)
