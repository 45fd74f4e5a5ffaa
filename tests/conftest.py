"""Shared fixtures: toy data, a fake teacher registered in the `teachers` registry, and a small
spaCy teacher pipeline trained in a temp dir. Nothing here touches the network."""

import hashlib
import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy
import pytest
import spacy
from spacy.training import Example

import spacy_distill  # noqa: F401  (registers everything, also from a source checkout)
from spacy_distill.registry import registry

SPAM_TEXTS = [
    ("win a free prize now", "spam"),
    ("free cash click here", "spam"),
    ("claim your free reward today", "spam"),
    ("urgent you won cash", "spam"),
    ("see you at lunch", "ham"),
    ("are we still meeting tomorrow", "ham"),
    ("thanks for the notes", "ham"),
    ("call me when you get home", "ham"),
]


class FakeTeacher:
    """A deterministic teacher: 'free', 'cash', 'win', 'prize' words push towards spam.

    With `nan_on` set, texts containing that word get NaN scores (to test bad teacher output).
    """

    def __init__(
        self, labels: Sequence[str] = ("ham", "spam"), exclusive: bool = True, nan_on: str = ""
    ):
        self.labels = tuple(labels)
        self.exclusive = exclusive
        self.teacher_id = "fake-teacher"
        self.batch_size = 3
        self.nan_on = nan_on
        self.calls: List[int] = []

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(repr((self.labels, self.exclusive, self.nan_on)).encode()).hexdigest()

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        self.calls.append(len(texts))
        rows = []
        for text in texts:
            spamminess = sum(text.lower().count(word) for word in ("free", "cash", "win", "prize"))
            logits = numpy.zeros(len(self.labels))
            logits[-1] = 1.5 * spamminess - 1.0
            if self.nan_on and self.nan_on in text:
                logits[:] = numpy.nan
            if self.exclusive:
                logits = logits - numpy.log(numpy.exp(logits).sum())
            rows.append(logits)
        return numpy.asarray(rows, dtype="float32")


@registry.teachers("spacy-distill-test.FakeTeacher.v1")
def configure_fake_teacher(
    labels: List[str] = ["ham", "spam"], exclusive: bool = True, nan_on: str = ""
) -> FakeTeacher:
    return FakeTeacher(labels, exclusive, nan_on)


def write_jsonl(path: Path, rows: List[Dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf8")
    return path


@pytest.fixture
def spam_jsonl(tmp_path) -> Path:
    return write_jsonl(
        tmp_path / "spam.jsonl",
        [
            {"text": text, "label": label, "id": f"r{i}"}
            for i, (text, label) in enumerate(SPAM_TEXTS)
        ],
    )


@pytest.fixture
def fake_teacher_cfg(tmp_path) -> Path:
    path = tmp_path / "teacher.cfg"
    path.write_text('[teacher]\n@teachers = "spacy-distill-test.FakeTeacher.v1"\n', encoding="utf8")
    return path


def train_spacy_teacher(path: Path, factory: str = "textcat", steps: int = 30) -> Path:
    """A small BOW text classifier trained on SPAM_TEXTS, saved to `path`."""
    # Seeded: weights must not depend on the numpy state earlier tests left (a 3-step student's
    # margins decide whether band tests can separate its docs).
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    exclusive = factory == "textcat"
    textcat = nlp.add_pipe(factory)
    examples = []
    for text, label in SPAM_TEXTS:
        cats = {"ham": float(label == "ham"), "spam": float(label == "spam")}
        if not exclusive:
            cats["urgent"] = float("urgent" in text or "today" in text)
        examples.append(Example.from_dict(nlp.make_doc(text), {"cats": cats}))
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    assert set(textcat.labels) >= {"ham", "spam"}
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="session")
def spacy_teacher_path(tmp_path_factory) -> Path:
    return train_spacy_teacher(tmp_path_factory.mktemp("teacher") / "teacher")


@pytest.fixture(scope="session")
def spacy_multilabel_teacher_path(tmp_path_factory) -> Path:
    return train_spacy_teacher(
        tmp_path_factory.mktemp("teacher_ml") / "teacher", factory="textcat_multilabel"
    )


def make_target_docs(
    rows: List[Tuple[str, Sequence[float], Dict[str, float]]],
    labels: Sequence[str] = ("ham", "spam"),
    exclusive: bool = True,
):
    """Docs with targets from (text, teacher probabilities or None, gold cats or {})."""
    from spacy_distill.data.targets import Provenance, TeacherTarget, set_target

    nlp = spacy.blank("en")
    docs = []
    for i, (text, probs, gold) in enumerate(rows):
        scores = None
        if probs is not None:
            p = numpy.clip(numpy.asarray(probs, dtype="float64"), 1e-6, 1 - 1e-6)
            scores = numpy.log(p / p.sum()) if exclusive else numpy.log(p) - numpy.log1p(-p)
        target = TeacherTarget(
            labels=tuple(labels),
            exclusive=exclusive,
            scores=None if scores is None else scores.astype("float32"),
            teacher_id=None if scores is None else "toy",
            fingerprint=None if scores is None else "0" * 8,
            provenance=Provenance(id=str(i), source="toy.jsonl", line=i + 1),
        )
        docs.append(set_target(nlp.make_doc(text), target, gold or None))
    return docs


@pytest.fixture(autouse=True, scope="session")
def _private_teacher_cache(tmp_path_factory):
    """Keep the CLI's default teacher cache out of the home folder during tests."""
    import os

    path = tmp_path_factory.mktemp("cache") / "teacher_cache.sqlite"
    previous = os.environ.get("SPACY_DISTILL_CACHE")
    os.environ["SPACY_DISTILL_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("SPACY_DISTILL_CACHE", None)
    else:
        os.environ["SPACY_DISTILL_CACHE"] = previous


@pytest.fixture
def hf_offline(monkeypatch):
    """Hugging Face code, here and in the subprocesses a test starts, stays off the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared CPU gain nothing from torch's thread pool: its hand-offs make
    each tiny matmul 30-100x slower on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """tests/tiny_models.build_tiny_bert, built once (read-only: tests must not write into it)."""
    from .tiny_models import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert") / "model")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """tests/tiny_models.build_tiny_llama (no pad token), built once (read-only)."""
    from .tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny_llama") / "model")


@pytest.fixture(scope="session")
def tiny_classifier_dirs(tmp_path_factory) -> Dict[str, Path]:
    """Three tiny BERT sequence classifiers on one tokenizer, built once (read-only): binary
    (ham, spam), three (neg, neu, pos) and multi (multi-label spam, urgent, work)."""
    from .tiny_models import build_tiny_classifier, build_tokenizer

    root = tmp_path_factory.mktemp("hf_classifier")
    tokenizer = build_tokenizer()
    return {
        "binary": build_tiny_classifier(root / "binary", tokenizer, ["ham", "spam"]),
        "three": build_tiny_classifier(root / "three", tokenizer, ["neg", "neu", "pos"], seed=1),
        "multi": build_tiny_classifier(
            root / "multi",
            tokenizer,
            ["spam", "urgent", "work"],
            "multi_label_classification",
            seed=2,
        ),
    }


def spam_target_rows(exclusive: bool = True, repeat: int = 3):
    """SPAM_TEXTS as target rows with soft teacher probabilities and gold."""
    rows = []
    for text, label in SPAM_TEXTS * repeat:
        spam = label == "spam"
        if exclusive:
            rows.append(
                (
                    text,
                    [0.2, 0.8] if spam else [0.9, 0.1],
                    {"ham": float(not spam), "spam": float(spam)},
                )
            )
        else:
            urgent = "urgent" in text or "today" in text
            rows.append(
                (
                    text,
                    [0.1 if spam else 0.9, 0.8 if spam else 0.1, 0.7 if urgent else 0.2],
                    {"ham": float(not spam), "spam": float(spam), "urgent": float(urgent)},
                )
            )
    return rows


def train_distilled_student(
    directory: Path, arch: str = "bow", exclusive: bool = True, steps: int = 8, meta: Dict = None
) -> Path:
    """A distill_textcat(_multilabel) student trained in-process on SPAM_TEXTS targets, saved to
    `directory / "student"` next to its target file `directory / "train.spacy"`."""
    from spacy import util

    from spacy_distill.data.targets import write_targets
    from spacy_distill.training.corpus import TargetCorpus
    from spacy_distill.training.student_config import make_student_config

    labels = ("ham", "spam") if exclusive else ("ham", "spam", "urgent")
    train = write_targets(
        make_target_docs(spam_target_rows(exclusive), labels, exclusive), directory / "train.spacy"
    )
    config = make_student_config(train, arch=arch, max_steps=steps)
    nlp = util.load_model_from_config(config, auto_fill=True)
    examples = list(TargetCorpus(train)(nlp))
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    if meta:
        nlp.meta.update(meta)
    nlp.to_disk(directory / "student")
    return directory / "student"


def train_config_in_process(config, train_path: Path, steps: int):
    """Build a pipeline from `config`, train it on a target file for `steps` updates (the whole
    file per update); RETURNS (nlp, the component's loss at each step)."""
    from spacy import util

    from spacy_distill.training.corpus import TargetCorpus

    nlp = util.load_model_from_config(config, auto_fill=True)
    examples = list(TargetCorpus(train_path)(nlp))
    optimizer = nlp.initialize(lambda: examples)
    name = nlp.pipe_names[-1]
    seen = []
    for _ in range(steps):
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
        seen.append(losses.get(name))
    return nlp, seen


def invoke_cli(*args):
    """Run the spacy-distill CLI in this process; return the result and its output (stdout and
    stderr) on one line, without colours or line wrapping."""
    import re

    from typer.testing import CliRunner

    from spacy_distill.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    output = result.stdout + (result.stderr if result.stderr_bytes is not None else "")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        output += str(result.exception)
    return result, " ".join(re.sub(r"\x1b\[[0-9;]*m", "", output).split())


# CI runs the suite on two workers (`pytest -n 2 --dist loadfile --no-loadscope-reorder`, see
# README), which take whole files in collection order: the longest files go first, on different
# workers, so that neither ends with a long file alone. Minutes on CI's two cores.
LONGEST_FILES = {
    "test_project_llm_filter.py": 7,
    "test_project_spam_filter.py": 6,
    "test_distribution.py": 1,
}


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: -LONGEST_FILES.get(Path(str(item.fspath)).name, 0))


# A skip fails the run unless its reason contains one of these: a green suite that skipped a
# whole area (a missing optional package, a model not installed) tested nothing there. `pip
# install .[test]` brings every package the tests import. Empty: no test may skip today.
ALLOWED_SKIP_REASONS: Tuple[str, ...] = ()


def _unexpected_skip(report) -> bool:
    if not report.skipped or hasattr(report, "wasxfail"):
        return False
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(allowed in reason for allowed in ALLOWED_SKIP_REASONS):
        return False
    report.outcome = "failed"
    report.longrepr = f"unexpected skip: {reason} (install the [test] extra; tests/conftest.py ALLOWED_SKIP_REASONS)"
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _unexpected_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module that skips itself (importorskip at module level) is a collection error."""
    outcome = yield
    _unexpected_skip(outcome.get_result())


def majority_baseline(report: Dict, gold_labels: Sequence[str]) -> Dict:
    """What a student that always says the most common gold label would score in an evaluate
    `report` on the texts whose gold labels are `gold_labels`: its macro-F1 (computed by the same
    metrics code as the report) and its agreement with the teacher (the teacher's decisions are
    the column sums of its confusion matrix; every text has gold)."""
    from collections import Counter

    from spacy_distill.evaluation import metrics

    labels = list(report["labels"])
    majority = Counter(gold_labels).most_common(1)[0][0]
    one_hot = numpy.eye(len(labels))
    gold = one_hot[[labels.index(label) for label in gold_labels]]
    always = one_hot[[labels.index(majority)] * len(gold_labels)]
    quality = metrics.classification_metrics(gold, always, labels, exclusive=True)
    teacher_decisions = numpy.asarray(report["confusion"]["teacher"]["matrix"]).sum(axis=0)
    agreement = float(teacher_decisions[labels.index(majority)] / teacher_decisions.sum())
    return {"label": majority, "macro_f1": quality["macro_f1"], "agreement": agreement}


def check_student_beats_majority(
    report: Dict, gold_labels: Sequence[str], f1_margin: float, agreement_margin: float
):
    """Assert that the report's student is no always-majority student: its macro-F1 beats the
    majority class's by `f1_margin`, its agreement with the teacher by `agreement_margin`."""
    baseline = majority_baseline(report, gold_labels)
    student_f1 = report["quality"]["student"]["macro_f1"]
    assert student_f1 > baseline["macro_f1"] + f1_margin, (student_f1, baseline)
    assert report["agreement"]["argmax"] > baseline["agreement"] + agreement_margin, (
        report["agreement"],
        baseline,
    )
