"""The Ray backend on a local two-CPU Ray: the same targets as the plain backend, the cache
honoured (a rerun computes nothing), and a clear error when Ray is not installed."""

import sys

import numpy
import pytest
import ray  # noqa: E402
import ray.data  # noqa: E402,F401
from typer.testing import CliRunner

from spacy_distill.annotation.annotate import annotate
from spacy_distill.cli import app
from spacy_distill.data.targets import get_target, read_targets
from spacy_distill.errors import DistillError
from spacy_distill.teachers.loading import load_teacher

from .conftest import write_jsonl


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (starting one costs ~10 s): two CPUs, two workers."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def _rows(n):
    words = ["free", "cash", "lunch", "meeting", "prize", "notes", "home", "win"]
    return [
        {
            "text": " ".join(words[(i * k) % len(words)] for k in range(1, 2 + i % 6)) + f" {i}",
            "id": str(i),
        }
        for i in range(n)
    ]


def _targets(path):
    return [(d.text, get_target(d)) for d in read_targets(path)]


def test_ray_backend_gives_the_plain_backend_targets(tmp_path, local_ray, spacy_teacher_path):
    from spacy_distill.backends.ray import RayBackend, TeacherSpec

    data = write_jsonl(tmp_path / "in.jsonl", _rows(50))
    teacher = load_teacher(spacy_teacher_path)
    plain = annotate(data, tmp_path / "plain.spacy", teacher, show_progress=False)
    backend = RayBackend(
        TeacherSpec(str(spacy_teacher_path), {}), num_actors=2, batch_size=8, block_size=16
    )
    cache = tmp_path / "cache.sqlite"
    on_ray = annotate(
        data,
        tmp_path / "ray",
        teacher,
        cache=cache,
        chunk_size=20,
        backend=backend,
        show_progress=False,
    )
    assert (on_ray.n_written, on_ray.n_teacher, on_ray.n_cache_hits) == (plain.n_written, 50, 0)
    expected, got = _targets(tmp_path / "plain.spacy"), _targets(tmp_path / "ray")
    assert [text for text, _ in got] == [text for text, _ in expected]
    for (_, a), (_, b) in zip(expected, got):
        assert (a.teacher_id, a.fingerprint, a.provenance) == (
            b.teacher_id,
            b.fingerprint,
            b.provenance,
        )
        numpy.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    # a rerun into a new output computes nothing: every text comes from the cache
    again = annotate(
        data, tmp_path / "again.spacy", teacher, cache=cache, backend=backend, show_progress=False
    )
    assert (again.n_teacher, again.n_cache_hits) == (0, 50)


def test_ray_backend_scores_only_what_the_cache_lacks(tmp_path, local_ray, spacy_teacher_path):
    from spacy_distill.backends.ray import RayBackend, TeacherSpec

    data = write_jsonl(tmp_path / "in.jsonl", _rows(30))
    teacher = load_teacher(spacy_teacher_path)
    cache = tmp_path / "cache.sqlite"
    # an earlier run that stopped after 12 records (its scores are in the cache)
    annotate(data, tmp_path / "first.spacy", teacher, cache=cache, limit=12, show_progress=False)
    backend = RayBackend(TeacherSpec(str(spacy_teacher_path), {}), num_actors=2, batch_size=4)
    summary = annotate(
        data,
        tmp_path / "out",
        teacher,
        cache=cache,
        chunk_size=10,
        backend=backend,
        show_progress=False,
    )
    assert (summary.n_teacher, summary.n_cache_hits, summary.n_written) == (18, 12, 30)


def test_ray_cli(tmp_path, local_ray, spacy_teacher_path):
    data = write_jsonl(tmp_path / "in.jsonl", _rows(20))
    result = CliRunner().invoke(
        app,
        [
            "annotate",
            str(data),
            str(tmp_path / "out"),
            "--teacher",
            str(spacy_teacher_path),
            "--backend",
            "ray",
            "--ray-actors",
            "2",
            "--ray-batch-size",
            "5",
            "--chunk-size",
            "8",
            "--cache",
            str(tmp_path / "cache.sqlite"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "0 hits, 20 texts scored by the teacher" in " ".join(result.output.split())
    assert len(list(read_targets(tmp_path / "out"))) == 20
    bad = CliRunner().invoke(
        app,
        [
            "annotate",
            str(data),
            str(tmp_path / "x"),
            "--teacher",
            str(spacy_teacher_path),
            "--backend",
            "spark",
        ],
    )
    assert bad.exit_code == 1 and "--backend must be one of" in bad.output


def test_missing_ray_names_the_extra(monkeypatch):
    from spacy_distill.backends.ray import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(DistillError, match=r"spacy-distill\[ray\]"):
        import_ray()
