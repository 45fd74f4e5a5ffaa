"""Faults in what a run loads from disk. The teacher cache: a damaged file, altered entries,
entries from an older version, file modes, teacher errors on a partly cached batch. Model
weights: pickled weights are refused unless allowed."""

import logging
import os
import shutil
import sqlite3
import stat

import numpy
import pytest

from spacy_distill.annotation.annotate import annotate
from spacy_distill.annotation.cache import CachedScorer, TeacherCache, cache_key
from spacy_distill.data.targets import get_target, read_targets
from spacy_distill.errors import DistillError, TeacherError

from ..conftest import FakeTeacher, write_jsonl

N_TEXTS = 3000  # enough pages that the middle of the file is table or index pages


def _texts(n):
    return [f"message {i} about free cash " * (1 + i % 3) for i in range(n)]


@pytest.fixture(scope="module")
def filled_cache(tmp_path_factory):
    """A closed (checkpointed) cache holding N_TEXTS entries of FakeTeacher."""
    path = tmp_path_factory.mktemp("filled") / "cache.sqlite"
    texts = _texts(N_TEXTS)
    teacher = FakeTeacher()
    with TeacherCache(path) as cache:
        cache.put_many(teacher.fingerprint, texts, teacher.score(texts))
    assert not path.with_name("cache.sqlite-wal").exists()  # all data is in the main file
    return path


def _truncate_half(data):
    return data[: len(data) // 2]


def _garbage_header(data):
    return b"\xa5" * 100 + data[100:]


def _garbage_middle(data):
    # Two whole pages (4096 bytes each) overwritten: page headers SQLite must read are broken.
    middle = (len(data) // 2) // 4096 * 4096
    return data[:middle] + b"\xa5" * 8192 + data[middle + 8192 :]


@pytest.mark.parametrize("damage", [_truncate_half, _garbage_header, _garbage_middle])
def test_damaged_cache_file_is_named_with_a_way_out(tmp_path, filled_cache, damage):
    path = tmp_path / "damaged.sqlite"
    path.write_bytes(damage(filled_cache.read_bytes()))
    texts = _texts(N_TEXTS)
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    out = tmp_path / "out.spacy"
    with pytest.raises(DistillError) as info:
        annotate(data, out, FakeTeacher(), cache=path, show_progress=False)
    message = str(info.value)
    assert not isinstance(info.value, sqlite3.Error)
    assert str(path) in message and "damaged" in message
    assert "Remove it" in message and "`cache=None`" in message
    assert str(out) not in message and "--" not in message  # blames the cache; no CLI flags
    assert not out.exists()


def _annotate_scores(tmp_path, name, texts, cache, teacher):
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    summary = annotate(data, tmp_path / f"{name}.spacy", teacher, cache=cache, show_progress=False)
    docs = list(read_targets(tmp_path / f"{name}.spacy"))
    return summary, numpy.asarray([get_target(d).scores for d in docs])


def test_altered_entry_is_detected_recomputed_and_overwritten(tmp_path, caplog):
    texts = _texts(6)
    path = tmp_path / "cache.sqlite"
    teacher = FakeTeacher()
    _, expected = _annotate_scores(tmp_path, "first", texts, path, teacher)
    # Alter two entries' bytes on disk: one stays a valid distribution (swapped log-probs),
    # one gets a wrong length; neither is caught by SQLite.
    with sqlite3.connect(path) as db:
        swapped = expected[2][::-1].astype("float32").tobytes()
        db.execute(
            "UPDATE teacher_scores SET scores = ? WHERE key = ?",
            (swapped, cache_key(teacher.fingerprint, texts[2])),
        )
        db.execute(
            "UPDATE teacher_scores SET scores = ? WHERE key = ?",
            (b"\x00" * 12, cache_key(teacher.fingerprint, texts[4])),
        )
    again = FakeTeacher()
    with caplog.at_level(logging.WARNING, logger="spacy_distill.annotation.cache"):
        summary, got = _annotate_scores(tmp_path, "second", texts, path, again)
    numpy.testing.assert_allclose(got, expected, atol=1e-6)  # not the swapped values
    assert (summary.n_cache_hits, summary.n_teacher, sum(again.calls)) == (4, 2, 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        str(path) in w and "2 teacher cache entries failed their checksum" in w for w in warnings
    )
    # Overwritten with good entries: the next run is served from the cache, silently.
    caplog.clear()
    third = FakeTeacher()
    with caplog.at_level(logging.WARNING, logger="spacy_distill.annotation.cache"):
        summary, got = _annotate_scores(tmp_path, "third", texts, path, third)
    assert (summary.n_cache_hits, third.calls) == (6, []) and not caplog.records
    numpy.testing.assert_allclose(got, expected, atol=1e-6)


def test_entries_from_an_older_cache_without_checksums_are_rescored_once(tmp_path, caplog):
    texts = _texts(4)
    teacher = FakeTeacher()
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the schema before checksums, with a trusted-looking entry
        db.execute(
            "CREATE TABLE teacher_scores (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, "
            "n_labels INTEGER NOT NULL, scores BLOB NOT NULL, created REAL NOT NULL, extra TEXT)"
        )
        db.execute(
            "INSERT INTO teacher_scores VALUES (?, ?, 2, ?, 0, NULL)",
            (
                cache_key(teacher.fingerprint, texts[0]),
                teacher.fingerprint,
                numpy.log(numpy.asarray([0.5, 0.5], dtype="float32")).tobytes(),
            ),
        )
    with caplog.at_level(logging.WARNING, logger="spacy_distill.annotation.cache"):
        summary, got = _annotate_scores(tmp_path, "out", texts, path, teacher)
    assert (summary.n_cache_hits, summary.n_teacher) == (0, 4)
    numpy.testing.assert_allclose(got, FakeTeacher().score(texts), atol=1e-6)
    assert any(
        "no checksum" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records
    )
    with TeacherCache(path) as cache:
        assert len(cache.get_many(teacher.fingerprint, texts, 2)) == 4


def test_new_cache_and_folders_are_private_existing_folder_is_kept(tmp_path):
    previous = os.umask(0o022)  # the common default, which made the cache world-readable
    try:
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o755)
        path = shared / "a" / "b" / "cache.sqlite"
        with TeacherCache(path) as cache:
            cache.put_many("fp", ["x"], numpy.zeros((1, 2)))
            files = [path, path.with_name("cache.sqlite-wal"), path.with_name("cache.sqlite-shm")]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
        assert modes == {p.name: 0o600 for p in files}
        assert stat.S_IMODE((shared / "a").stat().st_mode) == 0o700
        assert stat.S_IMODE((shared / "a" / "b").stat().st_mode) == 0o700
        assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # chosen by the user: left alone
        # An existing cache file keeps its mode too.
        mine = shared / "mine.sqlite"
        mine.touch(mode=0o640)
        mine.chmod(0o640)
        TeacherCache(mine).close()
        assert stat.S_IMODE(mine.stat().st_mode) == 0o640
    finally:
        os.umask(previous)


def test_unusable_cache_path_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DistillError, match=r"file/cache\.sqlite: cannot create the teacher cache"):
        TeacherCache(blocker / "cache.sqlite")
    folder = tmp_path / "folder.sqlite"
    folder.mkdir()
    with pytest.raises(DistillError, match=r"folder\.sqlite: cannot open the teacher cache"):
        TeacherCache(folder)


class _FailingTeacher(FakeTeacher):
    """Fails on the text containing `bad`, with its index in the texts it was given."""

    def __init__(self, bad):
        super().__init__()
        self.bad = bad

    def score(self, texts):
        for i, text in enumerate(texts):
            if self.bad in text:
                raise TeacherError(f"cannot score {text!r}", index=i)
        return super().score(texts)


def test_teacher_error_index_is_a_position_in_the_batch(tmp_path):
    batch = ["cached one", "fresh one", "cached two", "the bad one"]
    teacher = _FailingTeacher("bad")
    with TeacherCache(tmp_path / "cache.sqlite") as cache:
        cached = [batch[0], batch[2]]
        cache.put_many(teacher.fingerprint, cached, FakeTeacher().score(cached))
        with pytest.raises(TeacherError) as info:
            CachedScorer(teacher, cache).score(batch)
    # The teacher saw ["fresh one", "the bad one"] and said 1; in the batch it is 3.
    assert info.value.index == 3


def test_pickled_weights_are_refused_unless_allowed(tmp_path, monkeypatch, request):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from spacy_distill.hf.loading import ALLOW_PICKLE_ENV, weights_kwargs
    from spacy_distill.teachers.hf_classifier import HFClassifierTeacher

    from ..tiny_models import build_tiny_classifier, build_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    # Tiny models on a shared CPU: torch's thread pool only adds contention.
    request.addfinalizer(lambda threads=torch.get_num_threads(): torch.set_num_threads(threads))
    torch.set_num_threads(1)
    texts = ["win a free prize now", "see you at lunch"]
    safe = build_tiny_classifier(tmp_path / "safe", build_tokenizer(), ["ham", "spam"])
    expected = HFClassifierTeacher(str(safe), device="cpu").score(texts)
    pickled = tmp_path / "pickled"
    shutil.copytree(safe, pickled)
    (pickled / "model.safetensors").unlink()
    model = transformers.BertForSequenceClassification.from_pretrained(safe)
    model.save_pretrained(pickled, safe_serialization=False)
    assert (pickled / "pytorch_model.bin").exists() and not (pickled / "model.safetensors").exists()
    with pytest.raises(DistillError) as info:
        HFClassifierTeacher(str(pickled), device="cpu")
    message = str(info.value)
    assert str(pickled / "pytorch_model.bin") in message
    assert "`allow_pickle=True`" in message and f"{ALLOW_PICKLE_ENV}=1" in message
    # the opt-ins: the teacher's setting (as in a [teacher] config block), or the environment
    allowed = HFClassifierTeacher(str(pickled), device="cpu", allow_pickle=True)
    numpy.testing.assert_allclose(allowed.score(texts), expected, atol=1e-5)
    monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")
    allowed = HFClassifierTeacher(str(pickled), device="cpu")
    numpy.testing.assert_allclose(allowed.score(texts), expected, atol=1e-5)
    # With both, safetensors are loaded: a pickle beside them is never opened, even when allowed.
    (safe / "pytorch_model.bin").write_bytes(b"not a pickle at all")
    both = HFClassifierTeacher(str(safe), device="cpu")
    numpy.testing.assert_allclose(both.score(texts), expected, atol=1e-5)
    # GGUF is parsed, not unpickled; a hub model gets safetensors only without the opt-in.
    assert weights_kwargs(str(pickled), gguf_file="model.gguf", allow_pickle=False) == {}
    assert weights_kwargs("org/model", allow_pickle=False) == {"use_safetensors": True}
    assert weights_kwargs("org/model", allow_pickle=True) == {}
