"""The annotation run: one read of the input, one sink protocol for both outputs, warnings in the
summary, and a lazily built teacher (a rerun on a warm cache loads no model)."""

import logging

import numpy
import pytest

import spacy_distill.annotation.inputs as inputs_module
from spacy_distill.annotation import run as run_module
from spacy_distill.annotation.annotate import annotate
from spacy_distill.annotation.cache import TeacherCache, score_with_details
from spacy_distill.annotation.chunked import ChunkedTargetWriter
from spacy_distill.annotation.inputs import RecordStream
from spacy_distill.annotation.sinks import SingleFileSink
from spacy_distill.cli.annotate import annotate_message
from spacy_distill.data.targets import get_target, read_targets
from spacy_distill.errors import DistillError, RecordError
from spacy_distill.registry import registry
from spacy_distill.teachers.loading import LazyTeacher, lazy_teacher, teacher_key

from .conftest import FakeTeacher, invoke_cli, write_jsonl

BUILT = []


@registry.teachers("spacy-distill-test.LazyCountingTeacher.v1")
def build_lazy_counting_teacher(model: str, nan_on: str = "") -> FakeTeacher:
    BUILT.append(model)
    return FakeTeacher(nan_on=nan_on)


def _rows(n):
    return [{"text": f"text {i} " + ("free cash" if i % 3 == 0 else "see you")} for i in range(n)]


class CountingBuilder:
    """Builds a FakeTeacher and counts the builds: a test fails if a model is loaded needlessly."""

    def __init__(self, nan_on=""):
        self.n_built, self.teachers, self.nan_on = 0, [], nan_on

    def __call__(self):
        self.n_built += 1
        self.teachers.append(FakeTeacher(nan_on=self.nan_on))
        return self.teachers[-1]


def test_a_fully_cached_rerun_does_not_build_the_teacher(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(10))
    cache = tmp_path / "cache.sqlite"
    builder = CountingBuilder()
    first = annotate(
        data, tmp_path / "a.spacy", LazyTeacher(builder, key="k1"), cache=cache, show_progress=False
    )
    assert builder.n_built == 1 and first.n_teacher == 10 and first.teacher_id == "fake-teacher"
    # the rerun answers labels and fingerprint from the cache's record, scores from the cache
    again = LazyTeacher(builder, key="k1")
    second = annotate(data, tmp_path / "b.spacy", again, cache=cache, show_progress=False)
    assert builder.n_built == 1 and not again.is_built and second.n_cache_hits == 10
    assert again.stats() == {} and second.teacher_id == "fake-teacher"
    a = [
        (d.text, get_target(d).scores.tolist(), get_target(d).fingerprint)
        for d in read_targets(tmp_path / "a.spacy")
    ]
    b = [
        (d.text, get_target(d).scores.tolist(), get_target(d).fingerprint)
        for d in read_targets(tmp_path / "b.spacy")
    ]
    assert a == b
    # one text the cache lacks: the teacher is built, once, and scores only that text
    more = write_jsonl(tmp_path / "more.jsonl", _rows(10) + [{"text": "a new text"}])
    third_teacher = LazyTeacher(builder, key="k1")
    third = annotate(more, tmp_path / "c.spacy", third_teacher, cache=cache, show_progress=False)
    assert builder.n_built == 2 and (third.n_cache_hits, third.n_teacher) == (10, 1)
    assert builder.teachers[-1].calls == [1]
    # without a cache there is nothing to answer from: built at once
    annotate(data, tmp_path / "d.spacy", LazyTeacher(builder, key="k1"), show_progress=False)
    assert builder.n_built == 3


def test_a_teacher_that_changed_behind_its_key_is_refused_and_its_record_replaced(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(4))
    more = write_jsonl(tmp_path / "more.jsonl", _rows(4) + [{"text": "not cached"}])
    cache = tmp_path / "cache.sqlite"
    annotate(
        data,
        tmp_path / "a.spacy",
        LazyTeacher(CountingBuilder(), key="k"),
        cache=cache,
        show_progress=False,
    )
    # same key, but the model now answers with another fingerprint (a package was updated)
    changed = CountingBuilder(nan_on="zzz")
    with pytest.raises(DistillError, match="fingerprint changed"):
        annotate(
            more,
            tmp_path / "b.spacy",
            LazyTeacher(changed, key="k"),
            cache=cache,
            show_progress=False,
        )
    with TeacherCache(cache) as opened:
        assert opened.teacher_record("k")["fingerprint"] == FakeTeacher(nan_on="zzz").fingerprint
    # the next run goes by the new record: everything is scored again by the new teacher
    summary = annotate(
        more, tmp_path / "b.spacy", LazyTeacher(changed, key="k"), cache=cache, show_progress=False
    )
    assert summary.n_teacher == 5 and changed.n_built == 2


def test_the_key_covers_the_config_and_the_files_it_names(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"1234")
    key = teacher_key({"model": str(model)}, [model])
    assert key == teacher_key({"model": str(model)}, [model])  # cheap and stable
    assert key != teacher_key({"model": str(model), "batch_size": 8}, [model])
    (model / "weights.bin").write_bytes(b"12345")
    assert key != teacher_key({"model": str(model)}, [model])


def test_cli_reruns_on_a_warm_cache_load_no_model_and_a_changed_model_rebuilds(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(6))
    model, cache = tmp_path / "model.bin", tmp_path / "cache.sqlite"
    model.write_bytes(b"weights")
    cfg = tmp_path / "teacher.cfg"
    cfg.write_text(
        '[teacher]\n@teachers = "spacy-distill-test.LazyCountingTeacher.v1"\nmodel = "model.bin"\n'
    )
    args = [
        "annotate",
        data,
        tmp_path / "out.spacy",
        "--teacher",
        cfg,
        "--cache",
        cache,
        "--no-progress",
    ]
    BUILT.clear()
    for expected_builds in (1, 1):  # the rerun is served from the cache: no build
        result, output = invoke_cli(*args)
        assert result.exit_code == 0, output
        assert len(BUILT) == expected_builds and "teacher fake-teacher" in output
    assert BUILT == [str(model)]  # the relative path was resolved against the config's folder
    assert "0 texts scored by the teacher" in output
    model.write_bytes(b"new weights")  # another model file: built again
    assert invoke_cli(*args)[0].exit_code == 0 and len(BUILT) == 2
    result, output = invoke_cli(*args, "--teacher.nan_on", "qqq")  # another config: built again
    assert result.exit_code == 0 and len(BUILT) == 3
    # a teacher that does not build fails as before, with its message
    cfg.write_text('[teacher]\n@teachers = "spacy-distill-test.NoSuchTeacher.v1"\n')
    result, output = invoke_cli(*args)
    assert result.exit_code == 1 and "does not build" in output
    assert lazy_teacher(tmp_path / "missing.cfg").key is None  # nothing to hash: always built


def test_the_input_is_read_once_and_sharded_and_limited_in_that_pass(tmp_path, monkeypatch):
    reads = []
    real_read_records = inputs_module.read_records

    def counting_read_records(path, **kwargs):
        reads.append(path)
        return real_read_records(path, **kwargs)

    monkeypatch.setattr(inputs_module, "read_records", counting_read_records)
    data = write_jsonl(tmp_path / "in.jsonl", _rows(12))
    summary = annotate(
        data,
        tmp_path / "chunks",
        FakeTeacher(),
        chunk_size=2,
        shard=(2, 3),
        limit=10,
        show_progress=False,
    )
    assert len(reads) == 1 and summary.n_written == 3  # valid records 2, 5, 8 of the first 10
    assert [d.text for d in read_targets(tmp_path / "chunks")] == [
        _rows(12)[i]["text"] for i in (1, 4, 7)
    ]
    with RecordStream(data, ("ham", "spam"), True, limit=5) as stream:
        stream.check()
        assert stream.n_records == 5 and list(stream) == list(stream)  # the spool reads again
        first, second = iter(stream), iter(stream)
        assert next(first) == next(second)  # two readers do not disturb each other
    with pytest.raises(DistillError, match="not checked yet"):
        list(RecordStream(data, ("ham", "spam"), True))


def test_problems_come_back_in_the_summary_and_nothing_is_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run_module, "SINGLE_FILE_WARN_DOCS", 3)
    data = write_jsonl(tmp_path / "in.jsonl", _rows(5) + [{"text": ""}])
    summary = annotate(
        data, tmp_path / "out.spacy", FakeTeacher(), on_error="skip", show_progress=False
    )
    assert summary.n_written == 5 and len(summary.errors) == 1 and "in.jsonl:6" in summary.errors[0]
    assert len(summary.warnings) == 1 and "holds all 5 docs in memory" in summary.warnings[0]
    assert "`output_path`" in summary.warnings[0] and "OUTPUT" in annotate_message(
        summary.warnings[0]
    )
    assert (
        annotate(
            data, tmp_path / "chunks", FakeTeacher(), on_error="skip", show_progress=False
        ).warnings
        == []
    )
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    with pytest.raises(RecordError) as info:
        annotate(data, tmp_path / "x.spacy", FakeTeacher(), show_progress=False)
    assert '`on_error="skip"`' in str(info.value) and "--" not in str(info.value)
    assert "--on-error skip" in annotate_message(str(info.value))


def test_the_cli_maps_argument_names_to_flags():
    assert annotate_message("use a different cache path (`cache`) or none (`cache=None`)") == (
        "use a different cache path (--cache) or none (--no-cache)"
    )
    assert (
        annotate_message("`hidden` needs the plain backend (`backend=None`)")
        == "--hidden needs the plain backend (--backend plain)"
    )
    assert annotate_message("`unknown` and `limit=3`") == "`unknown` and --limit 3"


def test_both_outputs_are_one_sink_protocol(tmp_path):
    run = {"input": "x", "chunk_size": 2}
    for sink in (
        SingleFileSink(tmp_path / "one.spacy"),
        ChunkedTargetWriter(tmp_path / "chunks", run),
    ):
        try:
            assert not sink.is_done(0) and sink.n_docs == 0
            for name in ("start", "add", "finish", "complete", "abort", "close"):
                assert callable(getattr(sink, name))
            assert sink.chunk_size == (0 if isinstance(sink, SingleFileSink) else 2)
        finally:
            sink.close()
    assert SingleFileSink(tmp_path / "one.spacy").abort() is None  # nothing done, nothing kept
    with ChunkedTargetWriter(tmp_path / "c2", run) as chunked:
        assert "0 complete chunk(s)" in chunked.abort()


def test_a_single_teacher_keeps_no_details_and_an_ensemble_its_members():
    from spacy_distill.teachers.ensemble import EnsembleTeacher

    scores, extras = score_with_details(FakeTeacher(), ["free cash", "hi"])
    assert scores.dtype == numpy.float32 and extras == [None, None]
    ensemble = EnsembleTeacher(
        {"a": FakeTeacher(), "b": FakeTeacher()}, weights={"a": 0.5, "b": 0.5}
    )
    _, extras = score_with_details(ensemble, ["free cash"])
    assert set(extras[0]["members"]) == {"a", "b"}


def test_a_stopped_run_logs_what_it_kept(tmp_path, caplog):
    class Dying(FakeTeacher):
        def score(self, texts):
            if len(self.calls) == 2:
                raise RuntimeError("teacher died")
            return super().score(texts)

    data = write_jsonl(tmp_path / "in.jsonl", _rows(12))
    with caplog.at_level(logging.WARNING, logger="spacy_distill"), pytest.raises(RuntimeError):
        annotate(data, tmp_path / "chunks", Dying(), chunk_size=3, show_progress=False)
    assert any("Stopped; 2 complete chunk(s) are kept in" in r.getMessage() for r in caplog.records)


def test_the_leakage_check_sees_every_record_in_the_same_read(tmp_path):
    dev = write_jsonl(
        tmp_path / "dev.jsonl", [{"text": "held out text", "id": "d1", "label": "ham"}]
    )
    rows = _rows(4) + [{"text": "held out text!", "parent": "d1", "method": "x", "id": "v1"}]
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    teacher = FakeTeacher()
    # the leaking record is in the other shard: it is refused all the same, before any teacher work
    with pytest.raises(DistillError, match="overlap the evaluation set"):
        annotate(
            data, tmp_path / "o.spacy", teacher, shard=(1, 2), eval_data=[dev], show_progress=False
        )
    assert teacher.calls == [] and not (tmp_path / "o.spacy").exists()
    assert (
        annotate(
            data, tmp_path / "o.spacy", teacher, limit=4, eval_data=[dev], show_progress=False
        ).n_written
        == 4
    )
