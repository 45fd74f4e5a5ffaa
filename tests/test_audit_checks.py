"""Behavioural test suites (spacy_distill/audit/check_suite.py, checks.py): the JSONL format and
its errors, case expansion, exact failure rates for student and teacher, lost / inherited
cases, a trained student, and the shipped suites."""

import json
from pathlib import Path
from typing import Dict, List, Sequence

import pytest
import spacy

from spacy_distill.audit.check_suite import DEFAULT_SUITES, build_cases, load_suite
from spacy_distill.audit.checks import run_suite
from spacy_distill.errors import DistillError, LabelMismatchError

from .conftest import SPAM_TEXTS, FakeTeacher, train_spacy_teacher


def write_suite(path: Path, rows: List[Dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf8")
    return path


def free_only_student(texts: Sequence[str]) -> List[Dict[str, float]]:
    """A case-sensitive keyword student: spam iff the text holds "free" (lower case)."""
    return [{"ham": 0.1, "spam": 0.9} if "free" in t else {"ham": 0.8, "spam": 0.2} for t in texts]


SPAM_SUITE = [
    {"kind": "suite", "name": "toy", "labels": {"spam": ["spam"], "ham": ["ham"]}},
    {"kind": "lexicon", "name": "bait", "words": ["free", "free money"]},
    # student: pass, fail, fail, fail; FakeTeacher (free/cash/win/prize): pass x3, fail.
    {
        "kind": "MFT",
        "test": "spam_words",
        "texts": ["get free stuff", "cash now", "win big", "lunch at noon"],
        "label": "spam",
    },
    # upper case hides "free" from the student (a flip), not from the teacher.
    {
        "kind": "INV",
        "test": "casing",
        "texts": ["get free stuff", "see you soon"],
        "perturb": {"case": "upper"},
    },
    # both keyword models ignore negation: every case fails for both (inherited).
    {
        "kind": "DIR",
        "test": "negation",
        "texts": ["free stuff", "win cash"],
        "perturb": {"replace": {"free": "not free", "win": "never win"}},
        "label": "spam",
        "direction": "down",
        "min_change": 0.05,
    },
    # adding a bait word raises p(spam) for both: every case passes.
    {
        "kind": "DIR",
        "test": "add_bait",
        "templates": ["see you {when}"],
        "perturb": {"prepend": "bait", "n": 1},
        "label": "spam",
        "direction": "up",
        "min_change": 0.05,
    },
    {"kind": "lexicon", "name": "when", "words": ["soon", "later", "at noon"]},
]


@pytest.fixture
def spam_suite(tmp_path) -> Path:
    return write_suite(tmp_path / "toy.jsonl", SPAM_SUITE)


def test_failure_rates_lost_and_inherited_are_exact(spam_suite):
    report = run_suite(free_only_student, spam_suite, teacher=FakeTeacher())
    mft = report["spam_words"]
    assert (mft.n_cases, mft.student_failure_rate, mft.teacher_failure_rate) == (4, 0.75, 0.25)
    assert [c.text for c in mft.lost] == ["cash now", "win big"]
    assert [c.text for c in mft.inherited] == ["lunch at noon"]
    casing = report["casing"]
    assert (casing.student_failure_rate, casing.teacher_failure_rate) == (0.5, 0.0)
    assert [c.variants for c in casing.lost] == [("GET FREE STUFF",)]
    negation = report["negation"]
    assert (negation.student_failure_rate, negation.teacher_failure_rate) == (1.0, 1.0)
    assert len(negation.inherited) == 2 and not negation.lost
    assert negation.cases[0].variants == ("not free stuff",)
    assert negation.cases[1].variants == ("never win cash",)
    bait = report["add_bait"]
    # The lexicon comes after the test in the file: templates see every lexicon.
    assert bait.n_cases == 3 and bait.student_failure_rate == bait.teacher_failure_rate == 0.0
    summary = json.loads(json.dumps(report.to_dict()))
    assert summary["tests"][0]["n_lost"] == 2 and summary["tests"][0]["n_inherited"] == 1
    assert summary["teacher"] == "fake-teacher"


def test_without_teacher_there_are_no_teacher_rates(spam_suite):
    report = run_suite(free_only_student, spam_suite)
    assert report["spam_words"].teacher_failure_rate is None
    assert report["spam_words"].lost == [] and "n_lost" not in report.to_dict()["tests"][0]


def test_trained_student_beside_its_teacher(tmp_path, spam_suite):
    nlp = spacy.load(train_spacy_teacher(tmp_path / "student"))
    suite_path = write_suite(
        tmp_path / "train.jsonl",
        [
            {
                "kind": "MFT",
                "test": f"train_{label}",
                "texts": [t for t, gold in SPAM_TEXTS if gold == label],
                "label": label,
            }
            for label in ("spam", "ham")
        ],
    )
    fitted = run_suite(nlp, suite_path, teacher=FakeTeacher())
    # The student was trained on these texts; the teacher's keywords cover every spam text.
    assert [t.student_failure_rate for t in fitted.tests] == [0.0, 0.0]
    assert [t.teacher_failure_rate for t in fitted.tests] == [0.0, 0.0]
    toy = run_suite(nlp, spam_suite, teacher=FakeTeacher())
    assert toy["negation"].teacher_failure_rate == 1.0
    assert all(0.0 <= t.student_failure_rate <= 1.0 for t in toy.tests)


def test_seed_fixes_sampled_cases_and_random_perturbations(tmp_path):
    path = write_suite(
        tmp_path / "typos.jsonl",
        [
            {"kind": "lexicon", "name": "n", "words": [str(i) for i in range(40)]},
            {
                "kind": "INV",
                "test": "typos",
                "templates": ["please send the free report number {n} today"],
                "perturb": {
                    "augmenter": "spacy-distill.KeyboardTypos.v1",
                    "params": {"rate": 0.2},
                    "n": 2,
                },
                "max_cases": 10,
            },
        ],
    )
    test = load_suite(path).tests[0]
    first, again, other = build_cases(test, 0), build_cases(test, 0), build_cases(test, 1)
    assert first == again and first != other
    assert len(first) == 10 and all(len(c.variants) == 2 for c in first)
    one = run_suite(free_only_student, path, teacher=FakeTeacher(), seed=3).to_dict()
    assert one == run_suite(free_only_student, path, teacher=FakeTeacher(), seed=3).to_dict()


def test_swap_replaces_identity_terms_and_keeps_sentence_case(tmp_path):
    path = write_suite(
        tmp_path / "swap.jsonl",
        [
            {"kind": "lexicon", "name": "group", "words": ["Muslim", "gay", "old"]},
            {
                "kind": "INV",
                "test": "swap",
                "templates": ["{group} people here"],
                "perturb": {"swap": "group"},
            },
            {
                "kind": "INV",
                "test": "mid",
                "texts": ["I met gay people"],
                "perturb": {"swap": "group"},
            },
        ],
    )
    suite = load_suite(path)
    cases = build_cases(suite.tests[0])
    assert [c.text for c in cases] == ["Muslim people here", "Gay people here", "Old people here"]
    assert cases[1].variants == ("Muslim people here", "Old people here")
    assert build_cases(suite.tests[1])[0].variants == ("I met Muslim people", "I met old people")


def test_label_names_map_per_model(tmp_path):
    path = write_suite(
        tmp_path / "sent.jsonl",
        [
            {"kind": "suite", "name": "s", "labels": {"positive": ["pos"], "negative": ["neg"]}},
            {"kind": "MFT", "test": "good", "texts": ["good", "bad"], "label": "positive"},
        ],
    )

    def student(texts):
        return [
            {"negative": 0.1, "positive": 0.9}
            if "good" in t
            else {"negative": 0.9, "positive": 0.1}
            for t in texts
        ]

    # The teacher says "free"/"cash" -> its last label: here "pos", read through the suite's map.
    report = run_suite(student, path, teacher=FakeTeacher(labels=("neg", "pos")))
    assert report.student_labels == {"positive": "positive"}
    assert report.teacher_labels == {"positive": "pos"}
    assert report["good"].student_failure_rate == 0.5 and report["good"].teacher_failure_rate == 1.0
    with pytest.raises(LabelMismatchError, match="label 'positive'.*label_map"):
        run_suite(free_only_student, path)
    mapped = run_suite(free_only_student, path, label_map={"positive": "spam"})
    assert mapped["good"].student_failure_rate == 1.0


def test_multilabel_teacher_uses_the_threshold(spam_suite):
    report = run_suite(free_only_student, spam_suite, teacher=FakeTeacher(exclusive=False))
    # Logits 1.5 * hits - 1 under a sigmoid: one keyword gives p = 0.62 >= 0.5.
    assert report["spam_words"].teacher_failure_rate == 0.25
    strict = run_suite(
        free_only_student, spam_suite, teacher=FakeTeacher(exclusive=False), threshold=0.7
    )
    assert strict["spam_words"].teacher_failure_rate == 1.0


@pytest.mark.parametrize(
    "row,field",
    [
        ("not json", "not a JSON object"),
        ({"kind": "CHECK", "test": "x"}, "field 'kind'"),
        ({"kind": "MFT", "test": "x", "texts": ["a"]}, "field 'label'"),
        ({"kind": "MFT", "test": "x", "texts": [], "label": "spam"}, "field 'texts'"),
        (
            {"kind": "MFT", "test": "x", "templates": ["{nobody} here"], "label": "spam"},
            "field 'templates'",
        ),
        ({"kind": "INV", "test": "x", "texts": ["a"]}, "field 'perturb'"),
        (
            {"kind": "INV", "test": "x", "texts": ["a"], "perturb": {"swap": "nobody"}},
            "field 'perturb.swap'",
        ),
        (
            {"kind": "INV", "test": "x", "texts": ["a"], "perturb": {"case": "snake"}},
            "field 'perturb.case'",
        ),
        (
            {"kind": "INV", "test": "x", "texts": ["a"], "perturb": {"augmenter": "nope.v1"}},
            "field 'perturb.augmenter'",
        ),
        (
            {
                "kind": "INV",
                "test": "x",
                "texts": ["a"],
                "perturb": {"augmenter": "spacy-distill.KeyboardTypos.v1", "params": {"rate": 2}},
            },
            "field 'perturb.params'",
        ),
        (
            {
                "kind": "DIR",
                "test": "x",
                "texts": ["a"],
                "label": "spam",
                "perturb": {"case": "upper"},
                "direction": "sideways",
            },
            "field 'direction'",
        ),
        (
            {
                "kind": "DIR",
                "test": "x",
                "texts": ["a"],
                "label": "spam",
                "perturb": {"case": "upper"},
                "tolerance": -1,
            },
            "field 'tolerance'",
        ),
        (
            {"kind": "MFT", "test": "x", "texts": ["a"], "label": "spam", "max_cases": 0},
            "field 'max_cases'",
        ),
        (
            {"kind": "MFT", "test": "x", "texts": ["a"], "label": "spam", "colour": "red"},
            "unknown field",
        ),
        (
            {"kind": "MFT", "test": "spam_words", "texts": ["a"], "label": "spam"},
            "field 'test'.*already defined at .*toy.jsonl:3",
        ),
    ],
)
def test_bad_lines_name_file_line_and_field(spam_suite, row, field):
    with spam_suite.open("a", encoding="utf8") as out:
        out.write("\n# a comment\n" + (row if isinstance(row, str) else json.dumps(row)) + "\n")
    # SPAM_SUITE has 7 lines; a blank line and a comment come before the bad one.
    with pytest.raises(DistillError, match=rf"toy\.jsonl:10: .*{field}"):
        load_suite(spam_suite)


def test_user_file_extends_a_shipped_suite(tmp_path):
    extra = write_suite(
        tmp_path / "more.jsonl",
        [
            {"kind": "lexicon", "name": "identity", "words": ["Sikh", "Roma"]},
            {"kind": "MFT", "test": "mine", "texts": ["You are a moron."], "label": "toxic"},
        ],
    )
    shipped = load_suite("moderation")
    merged = load_suite("moderation", extra)
    assert merged.name == "moderation" and merged.tests[-1].name == "mine"
    assert merged.lexicons["identity"][-2:] == ("Sikh", "Roma")
    assert len(merged.lexicons["identity"]) == len(shipped.lexicons["identity"]) + 2
    with pytest.raises(DistillError, match="suite file not found"):
        load_suite(tmp_path / "missing.jsonl")


def keyword_sentiment(texts):
    """Counts good and bad words; blind to negation, so it must fail the negation test."""
    good = ("good", "great", "excellent", "wonderful", "lovely", "amazing", "fantastic", "pleasant")
    rows = []
    for text in texts:
        words = text.lower().replace(".", " ").split()
        score = sum(w in good for w in words) - sum(
            w not in good and w in {"bad", "terrible", "awful"} for w in words
        )
        rows.append({"negative": 0.8 if score < 0 else 0.2, "positive": 0.2 if score < 0 else 0.8})
    return rows


def test_default_suites_load_and_run(tmp_path):
    assert set(DEFAULT_SUITES) == {"sentiment", "moderation"}
    sentiment = run_suite(
        keyword_sentiment, "sentiment", teacher=FakeTeacher(labels=("neg", "pos"))
    )
    assert len(sentiment.tests) == 10 and {t.kind for t in sentiment.tests} == {"MFT", "INV", "DIR"}
    assert 150 <= sum(t.n_cases for t in sentiment.tests) <= 300
    assert sentiment["negation"].student_failure_rate == 1.0
    assert sentiment["positive_thing"].student_failure_rate == 0.0
    # Name swaps, casing, URLs cannot change a keyword count.
    assert sentiment["name_swap"].student_failure_rate == 0.0
    assert sentiment["casing"].student_failure_rate == 0.0
    nlp = spacy.load(train_spacy_teacher(tmp_path / "student"))
    moderation = run_suite(
        nlp,
        "moderation",
        teacher=FakeTeacher(),
        label_map={"toxic": "spam", "ok": "ham"},
        teacher_label_map={"toxic": "spam", "ok": "ham"},
    )
    kinds = {t.name: t.kind for t in moderation.tests}
    assert kinds["identity_swap_neutral"] == kinds["identity_swap_toxic"] == "INV"
    assert 150 <= sum(t.n_cases for t in moderation.tests) <= 300
    # FakeTeacher sees no spam words in a threat: it says ham before and after "never".
    assert moderation["negated_threat"].teacher_failure_rate == 1.0
    assert moderation["identity_swap_neutral"].teacher_failure_rate == 0.0
    json.dumps(moderation.to_dict())
