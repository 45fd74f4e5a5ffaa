import numpy
import pytest

from spacy_distill.annotation.annotate import annotate
from spacy_distill.annotation.cache import TeacherCache
from spacy_distill.data.shards import merge_target_files, parse_shard
from spacy_distill.data.targets import get_target, read_targets
from spacy_distill.errors import DistillError, TargetFormatError

from .conftest import FakeTeacher, write_jsonl


def _texts(n):
    return [f"message number {i} " + "x" * (i % 7) for i in range(n)]


def test_cache_hits_skip_the_model(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in _texts(10)])
    cache = tmp_path / "cache.sqlite"
    teacher = FakeTeacher()
    first = annotate(data, tmp_path / "a.spacy", teacher, cache=cache, show_progress=False)
    assert (first.n_cache_hits, first.n_teacher) == (0, 10) and sum(teacher.calls) == 10
    second_teacher = FakeTeacher()
    second = annotate(data, tmp_path / "b.spacy", second_teacher, cache=cache, show_progress=False)
    assert (second.n_cache_hits, second.n_teacher) == (10, 0)
    assert second_teacher.calls == []  # no model call at all
    a = [get_target(d).scores for d in read_targets(tmp_path / "a.spacy")]
    b = [get_target(d).scores for d in read_targets(tmp_path / "b.spacy")]
    numpy.testing.assert_array_equal(a, b)
    # a changed teacher is a new fingerprint: scored again, not an error
    other = FakeTeacher(nan_on="zzz")
    third = annotate(data, tmp_path / "c.spacy", other, cache=cache, show_progress=False)
    assert third.n_teacher == 10
    with TeacherCache(cache) as opened:
        assert opened.count() == 20 and opened.count(teacher.fingerprint) == 10


def test_length_bucketed_batches_keep_input_order(tmp_path):
    texts = ["a" * (50 - i) + f" free {i}" for i in range(20)]
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    teacher = FakeTeacher()
    annotate(data, tmp_path / "o.spacy", teacher, show_progress=False)
    docs = list(read_targets(tmp_path / "o.spacy"))
    assert [d.text for d in docs] == texts
    expected = FakeTeacher().score(texts)
    numpy.testing.assert_allclose([get_target(d).scores for d in docs], expected, atol=1e-6)


def test_shards_merge_to_the_same_output_as_one_run(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": t, "label": "ham"} for t in _texts(11)])
    annotate(data, tmp_path / "full.spacy", FakeTeacher(), show_progress=False)
    for k in (1, 2, 3):
        annotate(
            data, tmp_path / f"shard{k}.spacy", FakeTeacher(), shard=(k, 3), show_progress=False
        )
    assert (
        merge_target_files(
            [tmp_path / f"shard{k}.spacy" for k in (3, 1, 2)], tmp_path / "merged.spacy"
        )
        == 11
    )
    full = list(read_targets(tmp_path / "full.spacy"))
    merged = list(read_targets(tmp_path / "merged.spacy"))
    assert [d.text for d in merged] == [d.text for d in full]
    assert [d.user_data for d in merged] == [d.user_data for d in full]
    assert (tmp_path / "merged.spacy").read_bytes() == (tmp_path / "full.spacy").read_bytes()
    with pytest.raises(TargetFormatError, match="is also in"):
        merge_target_files(
            [tmp_path / "shard1.spacy", tmp_path / "shard1.spacy"], tmp_path / "x.spacy"
        )
    assert parse_shard("2/8") == (2, 8)
    for bad in ("0/3", "4/3", "x"):
        with pytest.raises(DistillError, match="K/N"):
            parse_shard(bad)


def test_ensemble_member_distributions_reach_targets_and_cache(tmp_path):
    from spacy_distill.teachers.ensemble import EnsembleTeacher

    data = write_jsonl(tmp_path / "in.jsonl", [{"text": "free cash"}, {"text": "hello"}])
    teacher = EnsembleTeacher(
        {"a": FakeTeacher(), "b": FakeTeacher(nan_on="zzz")}, weights={"a": 0.5, "b": 0.5}
    )
    cache = tmp_path / "cache.sqlite"
    for name in ("first", "second"):  # the second run is served from the cache
        summary = annotate(
            data, tmp_path / f"{name}.spacy", teacher, cache=cache, show_progress=False
        )
        target = get_target(next(iter(read_targets(tmp_path / f"{name}.spacy"))))
        members = target.teacher_info["members"]
        assert set(members) == {"a", "b"} and sum(members["a"]) == pytest.approx(1.0, abs=1e-5)
        numpy.testing.assert_allclose(
            numpy.exp(FakeTeacher().score(["free cash"]))[0], members["a"], atol=1e-5
        )
    assert summary.n_cache_hits == 2
