"""Annotating into a directory of chunks: same targets as one file, read as one corpus by spaCy
and by TargetCorpus, and a run that dies mid-way resumes without loss, duplicates or recomputation
(SIGKILL at random points: tests/faults/test_annotate_output.py)."""

import json

import numpy
import pytest
import spacy

from spacy_distill.annotation.annotate import annotate
from spacy_distill.data.shards import merge_target_files
from spacy_distill.data.targets import get_target, read_targets
from spacy_distill.errors import DistillError
from spacy_distill.training.corpus import TargetCorpus

from .conftest import FakeTeacher, write_jsonl


def _rows(n):
    return [
        {
            "text": f"text {i} " + ("free cash" if i % 3 == 0 else "see you") + " x" * (i % 5),
            "label": "spam" if i % 3 == 0 else "ham",
        }
        for i in range(n)
    ]


class FailingTeacher(FakeTeacher):
    """Raises on its N-th call: a teacher (or machine) that dies mid-run."""

    def __init__(self, fail_on_call: int):
        super().__init__()
        self.fail_on_call = fail_on_call
        self.scored = []

    def score(self, texts):
        if len(self.calls) + 1 == self.fail_on_call:
            raise RuntimeError("teacher died")
        self.scored.extend(texts)
        return super().score(texts)


def _docs(path):
    return [(d.text, d.user_data, d.cats) for d in read_targets(path)]


def test_directory_output_writes_chunks_with_the_same_targets(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(23))
    single = annotate(data, tmp_path / "one.spacy", FakeTeacher(), show_progress=False)
    chunked = annotate(data, tmp_path / "chunks", FakeTeacher(), chunk_size=5, show_progress=False)
    assert sorted(p.name for p in (tmp_path / "chunks").glob("*.spacy")) == [
        f"part-{i:06d}.spacy" for i in range(5)
    ]
    assert (chunked.n_written, chunked.n_gold) == (single.n_written, single.n_gold) == (23, 23)
    assert _docs(tmp_path / "chunks") == _docs(tmp_path / "one.spacy")
    manifest = json.loads((tmp_path / "chunks" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["n_docs"] == 23 and manifest["run"]["chunk_size"] == 5
    # merge joins a chunk directory like any other input (e.g. shard outputs written as chunks)
    annotate(data, tmp_path / "s1", FakeTeacher(), chunk_size=4, shard=(1, 2), show_progress=False)
    annotate(data, tmp_path / "s2", FakeTeacher(), chunk_size=4, shard=(2, 2), show_progress=False)
    assert merge_target_files([tmp_path / "s2", tmp_path / "s1"], tmp_path / "merged.spacy") == 23
    assert (tmp_path / "merged.spacy").read_bytes() == (tmp_path / "one.spacy").read_bytes()


def test_spacy_corpus_and_target_corpus_read_the_chunks_as_one_corpus(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(12))
    annotate(data, tmp_path / "one.spacy", FakeTeacher(), show_progress=False)
    annotate(data, tmp_path / "chunks", FakeTeacher(), chunk_size=5, show_progress=False)
    nlp = spacy.blank("en")
    expected = [
        (eg.reference.text, eg.reference.user_data)
        for eg in TargetCorpus(tmp_path / "one.spacy")(nlp)
    ]
    ours = [
        (eg.reference.text, eg.reference.user_data) for eg in TargetCorpus(tmp_path / "chunks")(nlp)
    ]
    assert ours == expected and len(ours) == 12
    reader = spacy.registry.resolve(
        {
            "r": {
                "@readers": "spacy.Corpus.v1",
                "path": str(tmp_path / "chunks"),
                "gold_preproc": False,
            }
        }
    )["r"]
    theirs = [(eg.reference.text, eg.reference.cats) for eg in reader(nlp)]
    assert theirs == [
        (text, d.cats) for (text, _), d in zip(expected, read_targets(tmp_path / "one.spacy"))
    ]


def test_spacy_train_reads_a_chunk_directory(tmp_path):
    from spacy.cli.train import train

    from spacy_distill.training.student_config import make_student_config

    data = write_jsonl(tmp_path / "in.jsonl", _rows(20))
    annotate(data, tmp_path / "chunks", FakeTeacher(), chunk_size=6, show_progress=False)
    config = make_student_config(tmp_path / "chunks", arch="bow", max_steps=4)
    config_path = tmp_path / "student.cfg"
    config.to_disk(config_path)
    train(
        config_path,
        tmp_path / "out",
        overrides={"paths.train": str(tmp_path / "chunks"), "paths.dev": str(tmp_path / "chunks")},
    )
    assert (tmp_path / "out" / "model-last").is_dir()


def test_a_run_that_dies_resumes_after_its_complete_chunks(tmp_path):
    rows = _rows(30)
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    cache = tmp_path / "cache.sqlite"
    out = tmp_path / "chunks"
    # batch size 3, 16 batches per window: a chunk of 6 is 2 calls; call 6 dies inside chunk 2
    dying = FailingTeacher(fail_on_call=6)
    with pytest.raises(RuntimeError, match="teacher died"):
        annotate(data, out, dying, cache=cache, chunk_size=6, show_progress=False)
    kept = sorted(p.name for p in out.glob("*.spacy"))
    assert kept == ["part-000000.spacy", "part-000001.spacy"]
    mtimes = {name: (out / name).stat().st_mtime_ns for name in kept}
    resumed_teacher = FailingTeacher(fail_on_call=0)
    summary = annotate(data, out, resumed_teacher, cache=cache, chunk_size=6, show_progress=False)
    assert summary.n_resumed == 12 and summary.n_written == 30
    # what the dead run scored in chunk 2 came from the cache; nothing was scored twice
    assert not set(resumed_teacher.scored) & set(dying.scored)
    assert sorted(dying.scored + resumed_teacher.scored) == sorted(r["text"] for r in rows)
    assert summary.n_cache_hits == len(dying.scored) - 12
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == mtimes  # kept, not rewritten
    annotate(data, tmp_path / "one.spacy", FakeTeacher(), show_progress=False)
    assert _docs(out) == _docs(tmp_path / "one.spacy")  # every record once, in order
    again = annotate(data, out, FakeTeacher(), cache=cache, chunk_size=6, show_progress=False)
    assert again.n_resumed == 30 and again.n_teacher == 0


def test_a_directory_of_another_run_is_refused(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(10))
    annotate(data, tmp_path / "chunks", FakeTeacher(), chunk_size=4, show_progress=False)
    with pytest.raises(DistillError, match="run.chunk_size"):
        annotate(data, tmp_path / "chunks", FakeTeacher(), chunk_size=5, show_progress=False)
    with pytest.raises(DistillError, match="run.fingerprint"):
        annotate(
            data, tmp_path / "chunks", FakeTeacher(nan_on="zzz"), chunk_size=4, show_progress=False
        )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "train.spacy").write_bytes(
        (tmp_path / "chunks" / "part-000000.spacy").read_bytes()
    )
    with pytest.raises(DistillError, match="no manifest.json"):
        annotate(data, tmp_path / "other", FakeTeacher(), show_progress=False)


def test_streaming_keeps_record_checks_and_nan_handling(tmp_path):
    rows = _rows(6) + [{"text": ""}, {"text": "zzz free"}]
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    with pytest.raises(DistillError, match=r"in.jsonl:7: field 'text': empty text"):
        annotate(data, tmp_path / "c", FakeTeacher(nan_on="zzz"), chunk_size=3, show_progress=False)
    assert not (tmp_path / "c").exists()  # checked before any output or teacher work
    summary = annotate(
        data,
        tmp_path / "c",
        FakeTeacher(nan_on="zzz"),
        chunk_size=3,
        on_error="skip",
        show_progress=False,
    )
    assert summary.n_written == 6 and len(summary.errors) == 2
    assert any("in.jsonl:8: the teacher returned NaN" in e for e in summary.errors)
    scores = [get_target(d).scores for d in read_targets(tmp_path / "c")]
    numpy.testing.assert_allclose(
        scores, FakeTeacher().score([r["text"] for r in rows[:6]]), atol=1e-6
    )


def test_augment_streams_its_seeds_and_dedups_on_disk(tmp_path):
    from spacy_distill.augment.noise import KeyboardTypos
    from spacy_distill.augment.run import augment_file, augment_records
    from spacy_distill.data.records import read_records
    from spacy_distill.data.seen import DiskSet

    with DiskSet(["a b"]) as seen:
        assert "a b" in seen and not seen.add("a b") and seen.add("c") and len(seen) == 2
    rows = [{"text": f"free cash offer {i % 7}", "id": str(i)} for i in range(20)]  # texts repeat
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    steps = {"typos": KeyboardTypos(n=2, rate=0.2)}
    augment_file(seeds, tmp_path / "out.jsonl", steps, seed=3, keep_seeds=True, show_progress=False)
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    variants = [row["text"] for row in written if "parent" in row]
    assert len(variants) == len(set(variants)) and not set(variants) & {r["text"] for r in rows}
    # the file is read once per pass (a function that reads it anew), never kept as a list
    passes = []

    def read_seeds():
        passes.append(1)
        return read_records(seeds)

    again = list(augment_records(read_seeds, steps, seed=3, keep_seeds=True))
    assert again == written and len(passes) == 3  # ids/texts, seeds, variants


def test_msgpack_codecs_are_looked_up_once_within_the_block():
    import srsly

    from spacy_distill.data.msgpack_codecs import cached_msgpack_codecs

    data = {"spacy_distill": {"scores": [0.5, -1.0]}}
    with cached_msgpack_codecs():
        assert "get_all" in vars(srsly.msgpack_encoders)
        with cached_msgpack_codecs():  # nested: a no-op
            assert srsly.msgpack_loads(srsly.msgpack_dumps(data)) == data
        assert "get_all" in vars(srsly.msgpack_encoders)
    assert "get_all" not in vars(srsly.msgpack_encoders) and "get_all" not in vars(
        srsly.msgpack_decoders
    )
