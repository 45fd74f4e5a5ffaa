"""The `semantic_filter` runtime: verdicts on doc._, thresholds from meta, and the cascade."""

from pathlib import Path
from typing import List

import numpy
import pytest
import spacy

from spacy_distill.errors import DistillError, LabelMismatchError
from spacy_distill.filter.cascade import margin_for_rate
from spacy_distill.filter.decision import DecisionRule
from spacy_distill.registry import registry

from .conftest import SPAM_TEXTS, FakeTeacher, train_distilled_student

TEXTS = [text for text, _ in SPAM_TEXTS] + [
    "free lunch tomorrow",
    "win",
    "",
    "see you",
    "cash prize now",
    "notes for the meeting today",
    "are you home",
    "urgent reply",
    "thanks",
    "claim it",
]
LOADS: List[int] = []


@registry.teachers("spacy-distill-test.CountedFakeTeacher.v1")
def configure_counted_fake_teacher(labels: List[str] = ["ham", "spam"]) -> FakeTeacher:
    LOADS.append(1)
    return FakeTeacher(labels)


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return train_distilled_student(
        tmp_path_factory.mktemp("filter"), meta={"spacy_distill": {"thresholds": {"spam": 0.45}}}
    )


@pytest.fixture
def counted_teacher_cfg(tmp_path) -> Path:
    path = tmp_path / "teacher.cfg"
    path.write_text(
        '[teacher]\n@teachers = "spacy-distill-test.CountedFakeTeacher.v1"\n', encoding="utf8"
    )
    LOADS.clear()
    return path


def test_verdicts_follow_the_rule_with_thresholds_from_meta(student):
    nlp = spacy.load(student)
    nlp.add_pipe("semantic_filter", config={"actions": {"spam": "block"}})
    docs = list(nlp.pipe(TEXTS))
    rule = DecisionRule(["ham", "spam"], True, {"spam": 0.45}, {"spam": "block"})
    expected = rule.decide(rule.probabilities([doc.cats for doc in docs]))
    assert [doc._.verdict for doc in docs] == [d.verdict for d in expected]
    assert {"block", "allow"} <= {doc._.verdict for doc in docs}
    details = docs[0]._.verdict_details
    assert (
        details["decided_by"] == "student" and not details["escalated"] and not details["in_band"]
    )
    assert details["student"] == pytest.approx(docs[0].cats) and details["teacher"] is None
    assert set(details) == {
        "verdict",
        "labels",
        "decided_by",
        "in_band",
        "escalated",
        "margin",
        "student",
        "teacher",
        "reason",
        "teacher_error",
    }
    assert details["reason"] is None and details["teacher_error"] is None
    empty = docs[TEXTS.index("")]._.verdict_details
    assert empty["reason"] == "empty" and empty["margin"] is None and empty["labels"] == []
    # __call__ agrees with pipe
    assert nlp(TEXTS[0])._.verdict == docs[0]._.verdict


def test_explicit_thresholds_override_meta(student):
    nlp = spacy.load(student)
    nlp.add_pipe(
        "semantic_filter", config={"actions": {"spam": "block"}, "thresholds": {"spam": 0.0}}
    )
    assert {doc._.verdict for doc in nlp.pipe(TEXTS) if doc.text} == {"block"}


def test_doubtful_docs_get_review_without_a_teacher(student):
    nlp = spacy.load(student)
    filt = nlp.add_pipe(
        "semantic_filter", config={"actions": {"spam": "block"}, "escalation_margin": 1.0}
    )
    docs = [doc for doc in nlp.pipe(TEXTS) if doc.text]
    assert {doc._.verdict for doc in docs} == {"review"}
    assert all(
        doc._.verdict_details["in_band"] and not doc._.verdict_details["escalated"] for doc in docs
    )
    assert filt.n_escalated == 0


def test_a_teacher_is_never_loaded_when_nothing_escalates(student, counted_teacher_cfg):
    nlp = spacy.load(student)
    filt = nlp.add_pipe(
        "semantic_filter",
        config={
            "actions": {"spam": "block"},
            "teacher": str(counted_teacher_cfg),
            "escalation_margin": 0.0,
        },
    )
    docs = list(nlp.pipe(TEXTS))
    assert not LOADS and not filt.teacher_loaded
    assert all(doc._.verdict_details["decided_by"] == "student" for doc in docs)


def test_cascade_escalates_the_band_and_the_teacher_decides(student, counted_teacher_cfg):
    nlp = spacy.load(student)
    nlp.add_pipe("semantic_filter", name="probe", config={"actions": {"spam": "block"}})
    # An empty text has no margin (None): it is never escalated.
    margins = numpy.asarray(
        [doc._.verdict_details["margin"] for doc in nlp.pipe(TEXTS)], dtype="float64"
    )
    nlp.remove_pipe("probe")
    assert numpy.isnan(margins).tolist() == [text == "" for text in TEXTS]
    margin = margin_for_rate(margins[~numpy.isnan(margins)], 0.25)
    expected = margins < margin
    assert expected.sum() == round(0.25 * (len(TEXTS) - 1))
    filt = nlp.add_pipe(
        "semantic_filter",
        config={
            "actions": {"spam": "block"},
            "teacher": str(counted_teacher_cfg),
            "escalation_margin": margin,
        },
    )
    docs = list(nlp.pipe(TEXTS, batch_size=4))
    escalated = numpy.asarray([doc._.verdict_details["escalated"] for doc in docs])
    assert escalated.tolist() == expected.tolist()
    assert filt.n_escalated == expected.sum()
    assert len(LOADS) == 1  # loaded once, on first use, across batches
    teacher = FakeTeacher()
    for doc, was_escalated in zip(docs, escalated):
        details = doc._.verdict_details
        if was_escalated:
            p_spam = float(numpy.exp(teacher.score([doc.text])[0, 1]))
            assert details["decided_by"] == "teacher"
            assert details["teacher"]["spam"] == pytest.approx(p_spam)
            assert doc._.verdict == ("block" if p_spam >= 0.5 else "allow")
            assert details["student"] == pytest.approx(doc.cats)
        else:
            assert details["decided_by"] == "student" and details["teacher"] is None


def test_a_teacher_object_can_be_set(student):
    nlp = spacy.load(student)
    filt = nlp.add_pipe(
        "semantic_filter", config={"actions": {"spam": "block"}, "escalation_margin": 1.0}
    )
    teacher = FakeTeacher()
    filt.set_teacher(teacher)
    docs = list(nlp.pipe(TEXTS))
    assert [doc._.verdict_details["decided_by"] == "teacher" for doc in docs] == [
        bool(text) for text in TEXTS
    ]
    assert sum(teacher.calls) == len(TEXTS) - 1 and max(teacher.calls) <= teacher.batch_size


def test_a_teacher_with_other_labels_is_refused(student):
    nlp = spacy.load(student)
    filt = nlp.add_pipe("semantic_filter", config={"escalation_margin": 1.0})
    filt.set_teacher(FakeTeacher(labels=("ok", "bad")))
    with pytest.raises(LabelMismatchError, match="ok"):
        list(nlp.pipe(TEXTS))


def test_bad_configs_are_named(student):
    nlp = spacy.load(student)
    with pytest.raises(DistillError, match="escalation_margin"):
        nlp.add_pipe("semantic_filter", config={"escalation_margin": -0.1})
    nlp.add_pipe("semantic_filter", config={"actions": {"eggs": "block"}})
    with pytest.raises(DistillError, match="semantic_filter.*eggs"):
        nlp("hello")
    blank = spacy.blank("en")
    with pytest.raises(DistillError, match="no text classifier"):
        blank.add_pipe("semantic_filter")


def test_verdicts_survive_a_docbin(student):
    from spacy.tokens import DocBin

    nlp = spacy.load(student)
    nlp.add_pipe("semantic_filter", config={"actions": {"spam": "block"}})
    docs = list(nlp.pipe(TEXTS[:5]))
    restored = list(DocBin(docs=docs, store_user_data=True).get_docs(nlp.vocab))
    assert [d._.verdict for d in restored] == [d._.verdict for d in docs]
    # msgpack gives sequences back as tuples
    assert {
        **restored[0]._.verdict_details,
        "labels": list(restored[0]._.verdict_details["labels"]),
    } == docs[0]._.verdict_details


def test_each_doc_holds_one_record_that_the_garbage_collector_does_not_track(student):
    import gc

    from spacy_distill.filter.component import RECORD_KEY

    nlp = spacy.load(student)
    nlp.add_pipe(
        "semantic_filter", config={"actions": {"spam": "block"}, "escalation_margin": 0.05}
    )
    docs = list(nlp.pipe(TEXTS))
    # A collection untracks tuples whose items are untracked: inner tuples first, then the record.
    gc.collect()
    gc.collect()
    for doc in docs:
        # One entry: the two attributes are getters over it.
        assert [key for key in doc.user_data] == [RECORD_KEY]
        assert not gc.is_tracked(doc.user_data[RECORD_KEY])
        details = doc._.verdict_details
        assert details["verdict"] == doc._.verdict
        assert details["student"] == pytest.approx(doc.cats)
        if details["reason"] is not None:
            assert details["margin"] is None  # the scores were not used
            continue
        assert details["margin"] == pytest.approx(
            float(
                nlp.get_pipe("semantic_filter").rule.margins(
                    numpy.asarray([[doc.cats["ham"], doc.cats["spam"]]])
                )[0]
            )
        )
    assert spacy.blank("en")("not filtered")._.verdict_details is None
