import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest

from spacy_distill.annotate import annotate
from spacy_distill.cache import TeacherCache
from spacy_distill.errors import DistillError, TargetFormatError
from spacy_distill.shards import merge_target_files, parse_shard
from spacy_distill.targets import get_target, read_targets

from .conftest import FakeTeacher, write_jsonl

CODE = Path(__file__).parent / "fake_teacher_code.py"
COUNTING_FINGERPRINT = hashlib.sha256(b"counting-v1").hexdigest()


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
        annotate(data, tmp_path / f"shard{k}.spacy", FakeTeacher(), shard=(k, 3), show_progress=False)
    assert merge_target_files([tmp_path / f"shard{k}.spacy" for k in (3, 1, 2)], tmp_path / "merged.spacy") == 11
    full = list(read_targets(tmp_path / "full.spacy"))
    merged = list(read_targets(tmp_path / "merged.spacy"))
    assert [d.text for d in merged] == [d.text for d in full]
    assert [d.user_data for d in merged] == [d.user_data for d in full]
    assert (tmp_path / "merged.spacy").read_bytes() == (tmp_path / "full.spacy").read_bytes()
    with pytest.raises(TargetFormatError, match="is also in"):
        merge_target_files([tmp_path / "shard1.spacy", tmp_path / "shard1.spacy"], tmp_path / "x.spacy")
    assert parse_shard("2/8") == (2, 8)
    for bad in ("0/3", "4/3", "x"):
        with pytest.raises(DistillError, match="K/N"):
            parse_shard(bad)


def _run_annotate(tmp_path, data, out, log, delay):
    cfg = tmp_path / "teacher.cfg"
    cfg.write_text(f'[teacher]\n@teachers = "spacy-distill-test.CountingTeacher.v1"\nlog_path = "{log}"\ndelay = {delay}\n')
    cmd = [sys.executable, "-m", "spacy_distill", "annotate", str(data), str(out), "--teacher", str(cfg),
           "--code", str(CODE), "--cache", str(tmp_path / "cache.sqlite"), "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_run_resumes_without_loss_duplicates_or_recomputation(tmp_path):
    texts = _texts(40)
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    log = tmp_path / "scored.log"
    out = tmp_path / "out.spacy"
    process = _run_annotate(tmp_path, data, out, log, delay=0.3)
    deadline = time.time() + 60
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 12):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    scored_before = log.read_text().splitlines()
    assert 12 <= len(scored_before) < 40, "the run was not killed mid-way"
    assert not out.exists()
    with TeacherCache(tmp_path / "cache.sqlite") as cache:
        cached = {texts[i] for i in cache.get_many(COUNTING_FINGERPRINT, texts, 2)}
    # Only the batch in flight at the kill may be lost: every other scored text was committed.
    assert len(cached) >= len(scored_before) - 4 and cached <= set(scored_before)
    process = _run_annotate(tmp_path, data, out, log, delay=0.0)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    scored_after = log.read_text().splitlines()[len(scored_before):]
    assert not cached & set(scored_after), "a cached text was scored again"
    assert sorted(cached | set(scored_after)) == sorted(texts) and len(scored_after) == 40 - len(cached)
    assert [d.text for d in read_targets(out)] == texts  # every record exactly once, in order
    assert f"Teacher cache: {len(cached)} hits, {40 - len(cached)} texts scored" in " ".join(output.split())


def test_ensemble_member_distributions_reach_targets_and_cache(tmp_path):
    from spacy_distill.teachers.ensemble import EnsembleTeacher

    data = write_jsonl(tmp_path / "in.jsonl", [{"text": "free cash"}, {"text": "hello"}])
    teacher = EnsembleTeacher({"a": FakeTeacher(), "b": FakeTeacher(nan_on="zzz")}, weights={"a": 0.5, "b": 0.5})
    cache = tmp_path / "cache.sqlite"
    for name in ("first", "second"):  # the second run is served from the cache
        summary = annotate(data, tmp_path / f"{name}.spacy", teacher, cache=cache, show_progress=False)
        target = get_target(next(iter(read_targets(tmp_path / f"{name}.spacy"))))
        members = target.teacher_info["members"]
        assert set(members) == {"a", "b"} and sum(members["a"]) == pytest.approx(1.0, abs=1e-5)
        numpy.testing.assert_allclose(numpy.exp(FakeTeacher().score(["free cash"]))[0], members["a"], atol=1e-5)
    assert summary.n_cache_hits == 2
