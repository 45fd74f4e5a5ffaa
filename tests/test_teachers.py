import numpy
import pytest
import spacy

from spacy_distill.errors import DistillError, LabelMismatchError
from spacy_distill.registry import registry
from spacy_distill.teachers import LabelMapping, SpacyTeacher, Teacher, load_teacher

from .conftest import FakeTeacher


def test_spacy_teacher_scores_are_the_pipelines_log_probabilities(spacy_teacher_path):
    nlp = spacy.load(spacy_teacher_path)
    teacher = SpacyTeacher(nlp)
    assert isinstance(teacher, Teacher)
    assert teacher.labels == ("ham", "spam") and teacher.exclusive
    texts = ["free cash prize", "see you at lunch", "hmm"]
    scores = teacher.score(texts)
    assert scores.shape == (3, 2) and scores.dtype == numpy.float32
    cats = [doc.cats for doc in nlp.pipe(texts)]
    numpy.testing.assert_allclose(
        numpy.exp(scores), [[c["ham"], c["spam"]] for c in cats], atol=1e-5
    )
    assert scores[0, 1] > scores[0, 0] and scores[1, 0] > scores[1, 1]
    # same weights, same fingerprint; another label map, another fingerprint
    assert teacher.fingerprint == SpacyTeacher(spacy.load(spacy_teacher_path)).fingerprint
    renamed = SpacyTeacher(nlp, label_map={"spam": "junk"})
    assert renamed.labels == ("ham", "junk") and renamed.fingerprint != teacher.fingerprint


def test_multilabel_spacy_teacher_gives_logits(spacy_multilabel_teacher_path):
    nlp = spacy.load(spacy_multilabel_teacher_path)
    teacher = SpacyTeacher(nlp)
    assert not teacher.exclusive and set(teacher.labels) == {"ham", "spam", "urgent"}
    scores = teacher.score(["urgent free cash"])
    cats = nlp("urgent free cash").cats
    numpy.testing.assert_allclose(
        1 / (1 + numpy.exp(-scores[0])), [cats[label] for label in teacher.labels], atol=1e-5
    )


def test_label_mapping():
    scores = numpy.log(numpy.array([[0.2, 0.3, 0.5]]))
    merged = LabelMapping(("a", "b", "c"), {"b": "a"}, exclusive=True)
    assert merged.labels == ("a", "c")
    numpy.testing.assert_allclose(numpy.exp(merged.apply(scores)), [[0.5, 0.5]])
    dropped = LabelMapping(("a", "b", "c"), {"c": None}, exclusive=True)
    numpy.testing.assert_allclose(numpy.exp(dropped.apply(scores)), [[0.4, 0.6]])
    with pytest.raises(LabelMismatchError, match=r"teacher label\(s\) \['x'\]"):
        LabelMapping(("a", "b"), {"x": "y"}, exclusive=True)
    with pytest.raises(LabelMismatchError, match="only defined for exclusive"):
        LabelMapping(("a", "b"), {"b": "a"}, exclusive=False)


def test_load_teacher_from_config_and_pipeline(tmp_path, spacy_teacher_path, fake_teacher_cfg):
    assert isinstance(load_teacher(fake_teacher_cfg), FakeTeacher)
    assert load_teacher(fake_teacher_cfg, {"teacher.nan_on": "x"}).nan_on == "x"
    pipeline_teacher = load_teacher(str(spacy_teacher_path), {"teacher.batch_size": 5})
    assert isinstance(pipeline_teacher, SpacyTeacher) and pipeline_teacher.batch_size == 5
    cfg = tmp_path / "spacy_teacher.cfg"
    cfg.write_text(
        '[teacher]\n@teachers = "spacy-distill.SpacyTeacher.v1"\n'
        f'model = "{spacy_teacher_path}"\nlabel_map = {{"spam": "junk"}}\n'
    )
    assert load_teacher(cfg).labels == ("ham", "junk")
    no_block = tmp_path / "empty.cfg"
    no_block.write_text("[nothing]\n")
    with pytest.raises(DistillError, match=r"empty.cfg: no \[teacher\] block"):
        load_teacher(no_block)
    with pytest.raises(DistillError, match="nowhere: cannot load this as a spaCy pipeline"):
        load_teacher(str(tmp_path / "nowhere"))
    unknown = tmp_path / "unknown.cfg"
    unknown.write_text('[teacher]\n@teachers = "no.Such.v1"\n')
    with pytest.raises(DistillError, match=r"unknown.cfg: the \[teacher\] block does not build"):
        load_teacher(unknown)
    with pytest.raises(DistillError, match="has no component 'nope'"):
        SpacyTeacher(spacy.load(spacy_teacher_path), component="nope")
    assert "spacy-distill.SpacyTeacher.v1" in registry.teachers.get_all()


def test_relative_paths_in_a_teacher_config_are_read_against_its_folder(
    tmp_path, spacy_teacher_path, monkeypatch
):
    import shutil

    project = tmp_path / "project"
    shutil.copytree(spacy_teacher_path, project / "training" / "teacher" / "model-best")
    cfg = project / "training" / "teacher.cfg"
    cfg.write_text(
        '[teacher]\n@teachers = "spacy-distill.SpacyTeacher.v1"\nmodel = "teacher/model-best"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    teacher = load_teacher(cfg)
    assert teacher.labels == ("ham", "spam")
    assert teacher.fingerprint == load_teacher(str(spacy_teacher_path)).fingerprint
    # a path that exists nowhere: one line naming the config, not a traceback
    cfg.write_text(
        '[teacher]\n@teachers = "spacy-distill.SpacyTeacher.v1"\nmodel = "teacher/missing"\n'
    )
    with pytest.raises(
        DistillError, match=r"teacher.cfg: the \[teacher\] block does not build: \[E050\]"
    ):
        load_teacher(cfg)
