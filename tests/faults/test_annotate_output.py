"""`annotate` output under faults: an output that cannot be written, a full disk, an interrupt, a
teacher that fails on one text, an input edited between a run and its resume, two runs into one
directory, a stale partial file, bad numbers, and SIGKILL at random points (then a resume)."""

import errno
import hashlib
import logging
import multiprocessing
import os
import random
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import spacy
from typer.testing import CliRunner

from spacy_distill.annotation.annotate import annotate
from spacy_distill.annotation.cache import TeacherCache
from spacy_distill.cli import app
from spacy_distill.data.shards import merge_target_files
from spacy_distill.data.targets import read_targets
from spacy_distill.errors import DistillError, TargetFormatError, TeacherError
from spacy_distill.registry import registry
from spacy_distill.training.corpus import TargetCorpus

from ..conftest import FakeTeacher, write_jsonl
from ..conftest import invoke_cli as invoke

CODE = Path(__file__).parents[1] / "fake_teacher_code.py"
COUNTING_FINGERPRINT = hashlib.sha256(b"counting-v1").hexdigest()
COUNTING_BATCH = 4  # CountingTeacher.batch_size: what one kill can cost the cache
BUILT = []


@registry.teachers("spacy-distill-faults.BuildCountingTeacher.v1")
def build_counting_teacher() -> FakeTeacher:
    BUILT.append(1)
    return FakeTeacher()


def _rows(n):
    return [
        {"text": f"text {i} " + ("free cash" if i % 3 == 0 else "see you") + " x" * (i % 5)}
        for i in range(n)
    ]


class DyingTeacher(FakeTeacher):
    """Raises `error` on its N-th call to `score` (a teacher, or a user, that stops the run)."""

    def __init__(self, fail_on_call: int, error: BaseException = RuntimeError("teacher died")):
        super().__init__()
        self.fail_on_call, self.error = fail_on_call, error

    def score(self, texts):
        if len(self.calls) + 1 == self.fail_on_call:
            self.calls.append(len(texts))
            raise self.error
        return super().score(texts)


def _scratch(folder):
    return sorted(
        p.name for p in Path(folder).rglob("*") if p.name.endswith(".tmp") or ".partial." in p.name
    )


# --- 3: an output that cannot be written; a full disk; an interrupt ---------------------------


def test_an_unwritable_output_fails_before_the_teacher_is_built(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(5))
    (tmp_path / "blocker").write_text("a file, not a folder")
    out = tmp_path / "blocker" / "out.spacy"
    cfg = tmp_path / "teacher.cfg"
    cfg.write_text('[teacher]\n@teachers = "spacy-distill-faults.BuildCountingTeacher.v1"\n')
    BUILT.clear()
    result, output = invoke("annotate", data, out, "--teacher", cfg, "--no-progress")
    assert result.exit_code == 1 and f"{out}: cannot be written" in output, output
    assert BUILT == []  # failed before the teacher was even built
    teacher = FakeTeacher()
    with pytest.raises(DistillError, match="cannot be written"):
        annotate(data, out, teacher, show_progress=False)
    assert teacher.calls == []
    # a chunk directory whose path is taken by a file fails as early
    with pytest.raises(DistillError, match="is not a directory"):
        annotate(data, tmp_path / "blocker", teacher, show_progress=False)
    assert teacher.calls == []


class _FailingFile:
    """Writes half of what it is given, then fails as a full disk (or a dying one) does."""

    def __init__(self, file_, error_number):
        self._file, self._errno = file_, error_number

    def write(self, data):
        self._file.write(data[: len(data) // 2])
        self._file.flush()
        raise OSError(self._errno, os.strerror(self._errno))

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def _fail_writes_to(monkeypatch, names, error_number):
    # No tmpfs can be mounted without root, so a full disk is simulated: writes to these files
    # (by name) put half their bytes on disk and raise OSError(error_number).
    real_open = Path.open

    def open_(self, mode="r", *args, **kwargs):
        file_ = real_open(self, mode, *args, **kwargs)
        return _FailingFile(file_, error_number) if "w" in mode and self.name in names else file_

    monkeypatch.setattr(Path, "open", open_)


def test_a_full_disk_leaves_no_tmp_names_the_output_and_points_at_the_cache(
    tmp_path, monkeypatch, caplog, capsys
):
    """ENOSPC is simulated (see `_fail_writes_to`): the output and the partial file both fail."""
    data = write_jsonl(tmp_path / "in.jsonl", _rows(10))
    out, cache = tmp_path / "out" / "out.spacy", tmp_path / "cache.sqlite"
    _fail_writes_to(monkeypatch, {"out.spacy.tmp", "out.partial.spacy.tmp"}, errno.ENOSPC)
    with caplog.at_level(logging.WARNING, logger="spacy_distill"), pytest.raises(OSError) as info:
        annotate(data, out, FakeTeacher(), cache=cache, show_progress=False)
    assert info.value.errno == errno.ENOSPC and str(out) in str(info.value)
    assert _scratch(tmp_path) == [] and not out.exists()  # no truncated .tmp, no half file
    # the library logs what a stopped run kept (the CLI shows it); it prints nothing itself
    warning = " ".join(
        " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING).split()
    )
    assert (
        "Stopped after 10 docs, but they could not be saved in" in warning and str(cache) in warning
    )
    assert capsys.readouterr().out == ""
    monkeypatch.undo()
    teacher = FakeTeacher()
    summary = annotate(data, out, teacher, cache=cache, show_progress=False)
    assert teacher.calls == [] and summary.n_cache_hits == 10  # the cache kept the work
    assert len(list(read_targets(out))) == 10


def test_a_failed_final_write_keeps_the_work_in_the_partial_file(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(10))
    out = tmp_path / "out.spacy"
    _fail_writes_to(monkeypatch, {"out.spacy.tmp"}, errno.EIO)
    with pytest.raises(OSError, match=re.escape(str(out))):
        annotate(data, out, FakeTeacher(), show_progress=False)
    monkeypatch.undo()
    assert not out.exists() and _scratch(tmp_path) == ["out.partial.spacy"]
    assert len(list(read_targets(tmp_path / "out.partial.spacy"))) == 10


def test_an_interrupt_keeps_the_partial_file(tmp_path):
    # 60 records: the first window of 48 is done when call 17 (in the second window) stops the run
    data = write_jsonl(tmp_path / "in.jsonl", _rows(60))
    out = tmp_path / "out.spacy"
    with pytest.raises(KeyboardInterrupt):
        annotate(data, out, DyingTeacher(17, KeyboardInterrupt()), show_progress=False)
    assert not out.exists() and _scratch(tmp_path) == ["out.partial.spacy"]
    assert len(list(read_targets(tmp_path / "out.partial.spacy"))) == 48


# --- 6: a teacher that fails on one text --------------------------------------------------------


class PoisonTeacher(FakeTeacher):
    """Raises TeacherError on a text containing `poison`, with its index in `texts` or none."""

    def __init__(self, poison=None, with_index=True):
        super().__init__()  # same fingerprint as any FakeTeacher: it shares their cache entries
        self.poison, self.with_index = poison, with_index

    def score(self, texts):
        for i, text in enumerate(texts):
            if self.poison and self.poison in text:
                raise TeacherError("the server answered 'banana'", i if self.with_index else None)
        return super().score(texts)


def test_a_teacher_error_names_the_input_record_and_keeps_the_partial_file(tmp_path):
    filler = [{"text": f"filler text number {i}"} for i in range(48)]  # the first window
    tail = [  # lines 49-54; length-sorted, the first batch is lines 50, 51, 52
        {"text": "hello there friend", "id": "h"},
        {"text": "x1 cached", "id": "c1"},
        {"text": "x2 cached!", "id": "c2"},
        {"text": "poison pill", "id": "abc"},
        {"text": "a much longer text with words in it", "id": "l"},
        {"text": "medium text here!!", "id": "m"},
    ]
    data = write_jsonl(tmp_path / "in.jsonl", filler + tail)
    cache, out = tmp_path / "cache.sqlite", tmp_path / "out.spacy"
    # Lines 50 and 51 are cached: the teacher sees the poisoned text alone, at its index 0.
    annotate(
        write_jsonl(tmp_path / "seen.jsonl", tail[1:3]),
        tmp_path / "seen.spacy",
        PoisonTeacher(),
        cache=cache,
        show_progress=False,
    )
    with pytest.raises(TeacherError) as info:
        annotate(data, out, PoisonTeacher("poison"), cache=cache, show_progress=False)
    assert str(info.value) == f"{data}:52 (id 'abc'): the server answered 'banana'"
    assert len(list(read_targets(tmp_path / "out.partial.spacy"))) == 48
    with pytest.raises(TeacherError) as info:
        annotate(data, out, PoisonTeacher("poison", with_index=False), show_progress=False)
    assert (
        str(info.value)
        == f"one of 3 records from {data}:50 to {data}:52: the server answered 'banana'"
    )


# --- 11: an input edited between a run and its resume ------------------------------------------


def test_a_resume_after_a_same_size_edit_of_the_input_is_refused(tmp_path):
    rows = _rows(12)
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "chunks"
    # batch size 3, chunk size 4: call 4 dies in chunk 1, after chunk 0 was written
    with pytest.raises(RuntimeError, match="teacher died"):
        annotate(data, out, DyingTeacher(4), chunk_size=4, show_progress=False)
    assert (out / "part-000000.spacy").exists()
    size = data.stat().st_size
    rows[1]["text"] = rows[1]["text"].upper()  # same length, other text
    write_jsonl(data, rows)
    assert data.stat().st_size == size
    with pytest.raises(DistillError) as info:
        annotate(data, out, FakeTeacher(), chunk_size=4, show_progress=False)
    message = str(info.value)
    assert (
        f"{out / 'manifest.json'}: the chunks here were written from other content of {data}"
        in message
    )
    assert "the input changed since" in message and "remove this directory" in message
    # other settings that change what a chunk holds are refused as well
    rows[1]["text"] = rows[1]["text"].lower()
    write_jsonl(data, rows)
    with pytest.raises(DistillError, match="run.lang"):
        annotate(data, out, FakeTeacher(), chunk_size=4, lang="de", show_progress=False)


# --- 12: two runs into one directory -----------------------------------------------------------


class NestingTeacher(FakeTeacher):
    """Starts a second run (`nested`) from inside its first call: two runs, one directory."""

    def __init__(self, nested):
        super().__init__()
        self.nested, self.errors, self.seconds = nested, [], None

    def score(self, texts):
        if self.nested is not None:
            nested, self.nested = self.nested, None
            start = time.perf_counter()
            try:
                nested()
            except DistillError as err:
                self.errors.append(str(err))
            self.seconds = time.perf_counter() - start
        return super().score(texts)


def test_a_second_run_into_the_same_directory_is_refused_at_once(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(10))
    out = tmp_path / "chunks"
    teacher = NestingTeacher(
        lambda: annotate(data, out, FakeTeacher(), chunk_size=4, show_progress=False)
    )
    summary = annotate(data, out, teacher, chunk_size=4, show_progress=False)
    assert len(teacher.errors) == 1 and teacher.seconds < 5  # refused, not left waiting
    assert f"{out}: another annotate run is writing into this directory" in teacher.errors[0]
    annotate(data, tmp_path / "one.spacy", FakeTeacher(), show_progress=False)
    assert summary.n_written == 10
    assert [d.to_bytes() for d in read_targets(out)] == [
        d.to_bytes() for d in read_targets(tmp_path / "one.spacy")
    ]
    # the lock goes with the run, whether it ends well or not
    with pytest.raises(RuntimeError, match="teacher died"):
        annotate(data, tmp_path / "other", DyingTeacher(2), chunk_size=4, show_progress=False)
    assert (
        annotate(
            data, tmp_path / "other", FakeTeacher(), chunk_size=4, show_progress=False
        ).n_written
        == 10
    )
    assert annotate(data, out, FakeTeacher(), chunk_size=4, show_progress=False).n_resumed == 10


# --- 13: a stale partial file -------------------------------------------------------------------


def test_a_successful_run_removes_the_partial_file_and_readers_skip_scratch_files(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(60))
    corpus = tmp_path / "corpus"
    out = corpus / "train.spacy"
    with pytest.raises(RuntimeError, match="teacher died"):
        annotate(data, out, DyingTeacher(17), show_progress=False)
    partial = corpus / "train.partial.spacy"
    kept = partial.read_bytes()
    assert len(list(read_targets(partial))) == 48
    annotate(data, out, FakeTeacher(), show_progress=False)
    assert not partial.exists()
    nlp = spacy.blank("en")
    assert sum(1 for _ in TargetCorpus(corpus)(nlp)) == 60
    # Scratch files that reach a target directory anyway (another run's partial, a killed
    # write's .tmp) are not read as targets.
    (corpus / "dev.partial.spacy").write_bytes(kept)
    (corpus / "train.spacy.tmp").write_bytes(kept)
    (corpus / "chunks").mkdir()
    (corpus / "chunks" / "part-000000.spacy.tmp").write_bytes(kept)
    assert sum(1 for _ in TargetCorpus(corpus)(nlp)) == 60
    assert merge_target_files([corpus], tmp_path / "merged.spacy") == 60
    only_scratch = tmp_path / "only_scratch"
    only_scratch.mkdir()
    (only_scratch / "train.partial.spacy").write_bytes(kept)
    with pytest.raises(TargetFormatError, match="only the scratch files"):
        list(TargetCorpus(only_scratch)(nlp))


# --- 16: numbers out of range ------------------------------------------------------------------


def test_numeric_options_and_arguments_out_of_range_are_refused(tmp_path, fake_teacher_cfg):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(5))
    out = tmp_path / "out.spacy"
    for option, value in [
        ("--limit", -5),
        ("--chunk-size", 0),
        ("--ray-actors", 0),
        ("--hidden-dims", 0),
    ]:
        result, output = invoke(
            "annotate", data, out, "--teacher", fake_teacher_cfg, "--no-progress", option, value
        )
        assert result.exit_code == 2 and option in output, (option, output)
    assert not out.exists()
    cases = [
        ({"limit": -5}, "limit must be >= 0, got -5"),
        ({"chunk_size": 0}, "chunk_size must be >= 1, got 0"),
        ({"shard": (0, 2)}, "shard index K must be >= 1, got 0"),
        ({"shard": (3, 2)}, "shard must be K/N with 1 <= K <= N, got 3/2"),
        ({"shard": (1, 0)}, "shard count N must be >= 1, got 0"),
        ({"limit": 2.5}, "limit must be an integer, got 2.5"),
    ]
    for kwargs, message in cases:
        with pytest.raises(DistillError, match=re.escape(message)):
            annotate(data, out, FakeTeacher(), show_progress=False, **kwargs)
    teacher = FakeTeacher()
    teacher.batch_size = 0
    with pytest.raises(DistillError, match=re.escape("teacher.batch_size must be >= 1, got 0")):
        annotate(data, out, teacher, show_progress=False)
    assert not out.exists()


# --- SIGKILL at random points, then a resume ---------------------------------------------------


def _log_lines(log):
    return log.read_text(encoding="utf8").splitlines() if log.exists() else []


def _teacher_cfg(path, log, delay):
    path.write_text(
        f'[teacher]\n@teachers = "spacy-distill-test.CountingTeacher.v1"\nlog_path = "{log}"\ndelay = {delay}\n'
    )
    return path


def _run_cli(args):
    sys.exit(CliRunner().invoke(app, [str(a) for a in args]).exit_code)


def _kill_after_scoring(args, log, n_texts):
    """Run `spacy-distill annotate ARGS` in a child process and SIGKILL it once its teacher has
    scored n_texts more texts (or when it ends first); return whether it was killed mid-run.

    The child is forked from this process, where spaCy is imported already: the same CLI code
    as `python -m spacy_distill`, without the 10-25 s a fresh interpreter spends here importing
    spaCy (and torch, through thinc), so the sweep can afford several kill points.
    """
    start = len(_log_lines(log))
    process = multiprocessing.get_context("fork").Process(target=_run_cli, args=(args,))
    process.start()
    deadline = time.time() + 60
    while process.is_alive() and time.time() < deadline and len(_log_lines(log)) - start < n_texts:
        time.sleep(0.005)
    killed = process.is_alive()
    if killed:
        process.kill()  # SIGKILL: no handler, no finally, no partial file
    process.join()
    assert process.exitcode in (0, -signal.SIGKILL), (
        f"the run failed by itself (exit code {process.exitcode})"
    )
    return killed


def _kill_and_resume(tmp_path, data, out, extra, expected, n_kills, rng):
    """Kill a run n_kills times at random points, resume it, and check the teacher's work: no
    cached text scored again, at most the batch in flight lost per kill, every text scored."""
    log, cache = tmp_path / f"{out.name}.log", tmp_path / "cache.sqlite"
    slow = _teacher_cfg(tmp_path / f"{out.name}.slow.cfg", log, 0.05)
    fast = _teacher_cfg(tmp_path / f"{out.name}.fast.cfg", log, 0.0)
    args = ["annotate", data, out, "--code", CODE, "--cache", cache, "--no-progress", *extra]
    killed = []
    for _ in range(n_kills):
        left = len(set(expected) - set(_log_lines(log)))
        killed.append(
            _kill_after_scoring([*args, "--teacher", slow], log, rng.randint(1, max(1, left)))
        )
    assert any(killed), "no run was killed mid-way"
    before = _log_lines(log)
    cached = set()
    if cache.exists():
        with TeacherCache(cache) as opened:
            cached = {expected[i] for i in opened.get_many(COUNTING_FINGERPRINT, expected, 2)}
    assert cached <= set(before) and len(cached) >= len(set(before)) - COUNTING_BATCH * n_kills
    # complete chunks are kept as they are; their texts are neither scored nor looked up again
    kept = sum(1 for p in out.glob("part-*.spacy") for _ in read_targets(p)) if out.is_dir() else 0
    result, output = invoke(*args, "--teacher", fast)
    assert result.exit_code == 0, output
    after = _log_lines(log)[len(before) :]
    assert not cached & set(after), "a cached text was scored again"
    assert set(before) | set(after) == set(expected)
    assert (
        f"Teacher cache: {len(cached) - kept} hits, {len(after)} texts scored by the teacher"
        in output
    )
    assert (f"Resumed: {kept} records" in output) == bool(kept)


def _baseline(tmp_path, data, name, extra=()):
    """The uninterrupted run, through the CLI in this process (which also loads what forked
    children then need: the registries' entry points)."""
    out = tmp_path / "baseline" / name
    cfg = _teacher_cfg(tmp_path / "baseline.cfg", tmp_path / "baseline.log", 0.0)
    result, output = invoke(
        "annotate",
        data,
        out,
        "--teacher",
        cfg,
        "--code",
        CODE,
        "--no-cache",
        "--no-progress",
        *extra,
    )
    assert result.exit_code == 0, output
    return out


@pytest.mark.parametrize("mode", ["single", "chunked", "sharded"])
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_output(tmp_path, mode):
    rng = random.Random(f"issue-18-{mode}")
    texts = [f"message number {i} " + "x" * (i % 7) for i in range(24)]
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    if mode == "single":
        baseline = _baseline(tmp_path, data, "out.spacy")
        out = tmp_path / "out.spacy"
        _kill_and_resume(tmp_path, data, out, [], texts, 3, rng)
        assert out.read_bytes() == baseline.read_bytes()
    elif mode == "chunked":
        baseline = _baseline(tmp_path, data, "chunks", ["--chunk-size", "5"])
        out = tmp_path / "chunks"
        _kill_and_resume(tmp_path, data, out, ["--chunk-size", "5"], texts, 3, rng)
        names = sorted(p.name for p in baseline.glob("*.spacy"))
        assert sorted(p.name for p in out.glob("*.spacy")) == names
        assert all((out / name).read_bytes() == (baseline / name).read_bytes() for name in names)
    else:
        baseline = _baseline(tmp_path, data, "full.spacy")
        shard_outputs = [
            (tmp_path / "s1.spacy", ["--shard", "1/2"]),
            (tmp_path / "s2", ["--shard", "2/2", "--chunk-size", "3"]),
        ]
        for k, (out, extra) in enumerate(shard_outputs, start=1):
            _kill_and_resume(tmp_path, data, out, extra, texts[k - 1 :: 2], 2, rng)
        merged = tmp_path / "merged.spacy"
        assert merge_target_files([out for out, _ in shard_outputs], merged) == len(texts)
        assert merged.read_bytes() == baseline.read_bytes()
        out = merged
    # every record exactly once, in order; no scratch file left behind
    assert [d.text for d in read_targets(out)] == texts
    leftovers = _scratch(tmp_path)
    assert leftovers == [], leftovers
