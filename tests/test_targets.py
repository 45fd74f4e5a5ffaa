import numpy
import pytest
import spacy
from spacy.tokens import DocBin

from spacy_distill.data.targets import (
    USER_DATA_KEY,
    TeacherTarget,
    get_target,
    read_target_summary,
    read_targets,
    write_targets,
)
from spacy_distill.errors import TargetFormatError
from spacy_distill.hidden import HiddenStates
from spacy_distill.hidden.storage import encode_hidden

from .conftest import make_target_docs


def test_round_trip_keeps_every_field(tmp_path):
    docs = make_target_docs(
        [
            ("free cash", [0.2, 0.8], {"ham": 0.0, "spam": 1.0}),
            ("hello there", [0.9, 0.1], {}),
            ("gold only", None, {"ham": 1.0, "spam": 0.0}),
        ]
    )
    target = get_target(docs[0])
    target.provenance.parent = "r9"
    target.provenance.method = "leetspeak"
    target.provenance.params = {"rate": 0.1}
    target.hidden = encode_hidden(
        HiddenStates(doc=numpy.asarray([0.5, -1.0, 2.0], dtype="float32")),
        {"layer": -1, "last_k": None, "pooling": "mean", "width": 3, "model": "toy"},
    )
    docs[0].user_data[USER_DATA_KEY] = target.to_dict()
    path = write_targets(docs, tmp_path / "t.spacy")
    back = list(read_targets(path))
    assert [d.text for d in back] == ["free cash", "hello there", "gold only"]
    first = get_target(back[0])
    assert first.labels == ("ham", "spam") and first.exclusive
    numpy.testing.assert_allclose(first.probabilities(), [0.2, 0.8], atol=1e-5)
    assert first.teacher_id == "toy" and first.fingerprint == "0" * 8
    assert first.provenance.parent == "r9" and first.provenance.params == {"rate": 0.1}
    assert first.provenance.source == "toy.jsonl" and first.provenance.line == 1
    assert first.hidden == target.hidden
    assert back[0].cats == {"ham": 0.0, "spam": 1.0}
    assert back[1].cats == {}
    assert not get_target(back[2]).has_teacher
    summary = read_target_summary(path)
    assert summary == {
        "labels": ["ham", "spam"],
        "exclusive": True,
        "n_docs": 3,
        "n_teacher": 2,
        "n_gold": 2,
        "teachers": [("toy", "0" * 8)],
    }


def test_temperature_flattens_probabilities():
    target = get_target(make_target_docs([("x", [0.9, 0.1], {})])[0])
    p1, p3 = target.probabilities(1.0), target.probabilities(3.0)
    assert p3[0] < p1[0] and p3.sum() == pytest.approx(1.0)


def _write_raw(tmp_path, datas, cats=None):
    nlp = spacy.blank("en")
    doc_bin = DocBin(store_user_data=True)
    for i, data in enumerate(datas):
        doc = nlp.make_doc(f"text {i}")
        if data is not None:
            doc.user_data[USER_DATA_KEY] = data
        if cats:
            doc.cats = cats[i]
        doc_bin.add(doc)
    path = tmp_path / "bad.spacy"
    doc_bin.to_disk(path)
    return path


def _good(**changes):
    data = TeacherTarget(
        labels=("ham", "spam"),
        exclusive=True,
        scores=numpy.log([0.5, 0.5]),
        teacher_id="t",
        fingerprint="f",
    ).to_dict()
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "data,field,message",
    [
        (_good(scores=[float("nan"), 0.0]), "scores", "NaN"),
        (_good(scores=[0.1, 0.2, 0.3]), "scores", "expected 2 values"),
        (_good(scores=[0.0, 0.0]), "scores", "log-probabilities"),
        (_good(version=99), "version", "unsupported target format version 99"),
        (_good(labels=[]), "labels", "non-empty list"),
        (_good(labels=["a", "a"]), "labels", "duplicate"),
        (_good(exclusive="yes"), "exclusive", "true or false"),
        (_good(teacher=None), "teacher", "required"),
        (_good(provenance={"line": "x"}), "provenance", "integer"),
        (_good(provenance={"colour": 1}), "provenance", "unknown key"),
        (_good(hidden=[1, 2]), "hidden", "dict or null"),
        (_good(hidden={"pooled": None}), "hidden", "unsupported hidden-state version None"),
    ],
)
def test_invalid_fields_name_file_doc_and_field(tmp_path, data, field, message):
    path = _write_raw(tmp_path, [_good(), data])
    with pytest.raises(TargetFormatError) as err:
        list(read_targets(path))
    assert f"{path}: doc 1: field '{field}'" in str(err.value)
    assert message in str(err.value)


def test_gold_is_checked_against_labels(tmp_path):
    path = _write_raw(tmp_path, [_good()], cats=[{"eggs": 1.0}])
    with pytest.raises(
        TargetFormatError, match=r"doc 0: field 'cats': unknown gold label\(s\) \['eggs'\]"
    ):
        list(read_targets(path))
    path = _write_raw(tmp_path, [_good()], cats=[{"ham": 1.0, "spam": 1.0}])
    with pytest.raises(TargetFormatError, match="exactly one label"):
        list(read_targets(path))


def test_label_sets_must_match_within_a_corpus(tmp_path):
    path = _write_raw(tmp_path, [_good(), _good(labels=["spam", "ham"])])
    with pytest.raises(TargetFormatError, match="doc 1: field 'labels'.*differs"):
        list(read_targets(path))


def test_missing_user_data_and_missing_files(tmp_path):
    path = _write_raw(tmp_path, [None])
    with pytest.raises(TargetFormatError, match="doc 0: field 'spacy_distill': missing"):
        list(read_targets(path))
    assert len(list(read_targets(path, require_target=False))) == 1
    with pytest.raises(TargetFormatError, match="not found"):
        list(read_targets(tmp_path / "nope.spacy"))
    (tmp_path / "garbage.spacy").write_bytes(b"not a docbin")
    with pytest.raises(TargetFormatError, match="garbage.spacy: not a readable"):
        list(read_targets(tmp_path / "garbage.spacy"))


def test_directory_of_target_files_reads_as_one_corpus(tmp_path):
    (tmp_path / "shards").mkdir()
    write_targets(make_target_docs([("a", [0.5, 0.5], {})]), tmp_path / "shards" / "0.spacy")
    write_targets(
        make_target_docs([("b", [0.5, 0.5], {}), ("c", None, {"ham": 1.0, "spam": 0.0})]),
        tmp_path / "shards" / "1.spacy",
    )
    assert [d.text for d in read_targets(tmp_path / "shards")] == ["a", "b", "c"]
