"""`semantic_filter` under faults: a verdict that must not depend on the batch (empty texts,
scores that are no distribution), and a cascade teacher that is down."""

import logging
import pickle
import socket
from typing import Sequence

import numpy
import pytest
import spacy

from spacy_distill.errors import TeacherError
from spacy_distill.filter.component import ERROR_CHARS

from ..conftest import FakeTeacher, train_distilled_student

# Empty, whitespace, one-char, very long, and ordinary texts.
MIX = [
    "",
    " ",
    "\n\t ",
    "a",
    "win a free prize now",
    "see you at lunch",
    "free cash " * 2000,
    "ok",
    "  \n",
    "free",
]
BLANK = {"", " ", "\n\t ", "  \n"}
TEXTS = (
    MIX
    + ["are we still meeting tomorrow", "claim your free reward today", "thanks", "urgent reply"]
    + MIX[::-1]
)
SECRET = "sk-0123456789abcdefSECRET"
LOGGER = "spacy_distill.filter.component"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """arch -> a tiny trained student, loaded (each trained once per module)."""
    loaded = {}

    def get(arch: str):
        if arch not in loaded:
            loaded[arch] = spacy.load(
                train_distilled_student(tmp_path_factory.mktemp(arch), arch=arch)
            )
        return loaded[arch]

    return get


@pytest.fixture(params=["bow", "ensemble"])
def student(request, trained):
    # bow: n-gram features; ensemble: bow beside a CNN whose reductions the empty-doc guard wraps.
    return trained(request.param)


@pytest.fixture
def bow_student(trained):
    return trained("bow")


def _filtered(nlp, **config):
    """The student with a new `semantic_filter` (in place of the last test's)."""
    if "semantic_filter" in nlp.pipe_names:
        nlp.remove_pipe("semantic_filter")
    filt = nlp.add_pipe("semantic_filter", config={"actions": {"spam": "block"}, **config})
    return nlp, filt


def _outcomes(nlp, texts: Sequence[str], batch_size: int):
    return [(doc.cats, doc._.verdict_details) for doc in nlp.pipe(texts, batch_size=batch_size)]


def _band_for_some(nlp, texts: Sequence[str]) -> float:
    """An escalation margin that puts some, not all, of the non-blank texts in doubt."""
    margins = sorted(doc._.verdict_details["margin"] for doc in nlp.pipe(texts) if doc.text.strip())
    band = (margins[len(margins) // 3] + margins[len(margins) // 3 + 1]) / 2
    assert margins[0] < band < margins[-1]
    return band


def test_the_same_text_gets_the_same_cats_and_verdict_in_any_batch(student):
    nlp, filt = _filtered(student)
    band = _band_for_some(nlp, TEXTS)
    nlp, filt = _filtered(student, default_action="hold", escalation_margin=band)
    teacher = FakeTeacher()
    filt.set_teacher(teacher)
    runs, escalated, sent = {}, {}, {}
    for batch_size in (1, 7, 1000):
        teacher.calls.clear()
        before = filt.n_escalated
        runs[batch_size] = _outcomes(nlp, TEXTS, batch_size)
        escalated[batch_size], sent[batch_size] = filt.n_escalated - before, sum(teacher.calls)
    assert runs[1] == runs[7] == runs[1000]
    assert escalated[1] == escalated[7] == escalated[1000] == sent[1] > 0
    for text, (cats, details) in zip(TEXTS, runs[1000]):
        if text in BLANK:
            # the default action, marked, never in doubt, never sent to the teacher
            assert details["verdict"] == "hold" and details["reason"] == "empty"
            assert details["labels"] == [] and details["margin"] is None
            assert (
                not details["in_band"]
                and not details["escalated"]
                and details["decided_by"] == "student"
            )
        else:
            assert details["reason"] is None
    # An empty doc has all-zero cats whatever its batch, as spaCy gives it alone.
    assert runs[1000][0][0] == {"ham": 0.0, "spam": 0.0}
    # A guarded pipeline pickles (nlp.pipe(n_process=...) under spawn) and scores the same.
    assert _outcomes(pickle.loads(pickle.dumps(nlp)), TEXTS, 1000) == runs[1]


@pytest.mark.parametrize(
    "cats",
    [
        {"ham": 0.0, "spam": 0.0},
        {"ham": float("nan"), "spam": 0.5},
        {"ham": 0.9, "spam": 0.9},
        {"ham": -0.2, "spam": 1.2},
    ],
)
def test_scores_that_are_no_distribution_decide_nothing(bow_student, cats):
    nlp, filt = _filtered(bow_student, default_action="hold", escalation_margin=1.0)
    teacher = FakeTeacher()
    filt.set_teacher(teacher)
    docs = [nlp.make_doc("free cash now"), nlp.make_doc("see you")]
    docs[0].cats, docs[1].cats = dict(cats), {"ham": 0.6, "spam": 0.4}
    list(filt.pipe(docs))
    bad, good = (doc._.verdict_details for doc in docs)
    assert bad["verdict"] == "hold" and bad["reason"] == "invalid_scores" and bad["labels"] == []
    assert bad["margin"] is None and not bad["in_band"] and not bad["escalated"]
    assert good["reason"] is None and good["decided_by"] == "teacher"
    assert teacher.calls == [1]  # only the doc with a distribution was escalated


class Unreachable(Exception):
    """A client library's own error type."""


class DownTeacher(FakeTeacher):
    """A FakeTeacher whose `score` raises `error` from call number `fail_from` (1-based) on."""

    def __init__(self, error: Exception, fail_from: int = 1):
        super().__init__()
        self.error = error
        self.fail_from = fail_from

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        if len(self.calls) + 1 >= self.fail_from:
            self.calls.append(len(texts))
            raise self.error
        return super().score(texts)


def _doubtful_setup(student, teacher, **config):
    band = _band_for_some(_filtered(student)[0], TEXTS)
    reference = [doc._.verdict for doc in _filtered(student, escalation_margin=band)[0].pipe(TEXTS)]
    nlp, filt = _filtered(student, escalation_margin=band, **config)
    filt.set_teacher(teacher)
    return nlp, filt, reference


@pytest.mark.parametrize(
    "error",
    [
        ConnectionError(
            f"HTTPSConnectionPool(host='api.example.com'): Max retries exceeded: /v1?api_key={SECRET}"
        ),
        Unreachable(f"server said no to Bearer {SECRET}\n" + "trace " * 200),
        socket.timeout("timed out"),
    ],
    ids=["connection", "custom", "timeout"],
)
def test_a_teacher_that_is_down_degrades_to_review(bow_student, error, caplog):
    nlp, filt, no_teacher = _doubtful_setup(bow_student, DownTeacher(error))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        docs = list(nlp.pipe(TEXTS, batch_size=8))
    assert [doc.text for doc in docs] == TEXTS  # nothing lost
    # Every verdict is what the filter gives without a teacher: doubtful docs get review.
    assert [doc._.verdict for doc in docs] == no_teacher
    doubtful = [doc._.verdict_details for doc in docs if doc._.verdict_details["in_band"]]
    assert doubtful and all(
        d["verdict"] == "review" and d["decided_by"] == "student" for d in doubtful
    )
    assert all(not d["escalated"] and d["teacher"] is None for d in doubtful)
    message = doubtful[0]["teacher_error"]
    assert message.startswith(type(error).__name__ + ":")
    assert SECRET not in message and len(message) <= ERROR_CHARS and "\n" not in message
    assert all(d["teacher_error"] == message for d in doubtful)
    assert all(
        doc._.verdict_details["teacher_error"] is None
        for doc in docs
        if not doc._.verdict_details["in_band"]
    )
    assert filt.n_escalated == 0 and filt.n_teacher_errors == len(doubtful)
    # one warning per batch that had doubtful docs, without the secret
    batches = {i // 8 for i, doc in enumerate(docs) if doc._.verdict_details["in_band"]}
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == len(batches)
    assert all(
        SECRET not in r.getMessage() and "semantic_filter" in r.getMessage() for r in warnings
    )


def test_docs_the_teacher_scored_before_it_failed_keep_its_decision(bow_student, caplog):
    teacher = DownTeacher(
        ConnectionError("connection refused"), fail_from=2
    )  # scores 3 texts, then fails
    nlp, filt, _ = _doubtful_setup(bow_student, teacher)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        docs = list(nlp.pipe(TEXTS, batch_size=len(TEXTS)))
    doubtful = [doc._.verdict_details for doc in docs if doc._.verdict_details["in_band"]]
    assert len(doubtful) > teacher.batch_size
    assert [d["decided_by"] for d in doubtful] == ["teacher"] * 3 + ["student"] * (
        len(doubtful) - 3
    )
    assert all(d["teacher_error"] is None for d in doubtful[:3])
    assert all(d["teacher_error"] == "ConnectionError: connection refused" for d in doubtful[3:])
    assert len(teacher.calls) == 2 and teacher.calls[0] == 3  # no call after the failure
    assert filt.n_escalated == 3 and filt.n_teacher_errors == len(doubtful) - 3
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1


def test_teacher_scores_that_are_no_distribution_are_not_a_decision(bow_student):
    nlp, filt, no_teacher = _doubtful_setup(bow_student, FakeTeacher(nan_on="free"))
    docs = list(nlp.pipe(TEXTS))
    for doc, verdict in zip(docs, no_teacher):
        details = doc._.verdict_details
        if details["in_band"] and "free" in doc.text:
            assert details["verdict"] == "review" and details["decided_by"] == "student"
            assert details["teacher_error"].startswith("TeacherError:")
        elif details["in_band"]:
            assert details["decided_by"] == "teacher" and details["teacher_error"] is None
        else:
            assert doc._.verdict == verdict


def test_strict_mode_raises_naming_the_component(bow_student):
    error = ConnectionError(f"refused, key={SECRET}")
    nlp, _, _ = _doubtful_setup(bow_student, DownTeacher(error), cascade_strict=True)
    with pytest.raises(TeacherError, match="component 'semantic_filter'.*ConnectionError") as info:
        list(nlp.pipe(TEXTS))
    assert info.value.__cause__ is error and SECRET not in str(info.value)
    nlp, _, _ = _doubtful_setup(bow_student, FakeTeacher(nan_on="free"), cascade_strict=True)
    with pytest.raises(TeacherError, match="semantic_filter.*no probability distribution"):
        list(nlp.pipe(TEXTS))


def test_an_unreachable_teacher_server(bow_student, tmp_path, monkeypatch):
    # The real HTTP teacher against a local port where nothing listens: no network needed.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("TEST_TEACHER_KEY", SECRET)
    cfg = tmp_path / "teacher.cfg"
    cfg.write_text(
        "[teacher]\n"
        '@teachers = "spacy-distill.OpenAITeacher.v1"\n'
        f'base_url = "http://127.0.0.1:{port}/v1"\n'
        'model = "m"\nlabels = ["ham", "spam"]\napi_key_env = "TEST_TEACHER_KEY"\n'
        "max_retries = 0\ntimeout = 2\nfallback_samples = 0\n",
        encoding="utf8",
    )
    band = _band_for_some(_filtered(bow_student)[0], TEXTS)
    nlp, filt = _filtered(bow_student, teacher=str(cfg), escalation_margin=band)
    docs = list(nlp.pipe(TEXTS))
    doubtful = [doc._.verdict_details for doc in docs if doc._.verdict_details["in_band"]]
    assert len(docs) == len(TEXTS) and doubtful
    assert all(d["verdict"] == "review" and d["teacher_error"] for d in doubtful)
    assert SECRET not in doubtful[0]["teacher_error"] and filt.n_teacher_errors == len(doubtful)
