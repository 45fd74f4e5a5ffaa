"""Cost measurements: throughput and latency on fake predictors, sizes on disk, and the worker
process on a small and a large pipeline.

The machine running the tests is shared and noisy: the timing logic is checked on an injected
clock that only the fake predictors move, and the worker process only on plausibility bounds.
"""

import importlib.util
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy
import pytest
import spacy
from spacy.training import Example

from spacy_distill.evaluation import cost
from spacy_distill.evaluation.cost import (
    cost_summary,
    measure_in_subprocess,
    measure_latency,
    measure_throughput,
    peak_rss_mb,
    size_on_disk,
)

TEXTS = [f"text number {i} with some words" for i in range(40)]
SMALL_LENGTH = 2**12
LARGE_LENGTH = 2**22
N_LABELS = 2
# The BOW weight table: `length` rows of one float32 per label.
LARGE_TABLE_MB = LARGE_LENGTH * N_LABELS * 4 / 2**20


class FakeClock:
    """A clock that only the fake predictors move: timings are exact, however busy the machine."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def sleeper(seconds_per_doc, clock=None):
    """A predictor that takes `seconds_per_doc` per doc: on `clock` if given, else really."""

    def predict(batch):
        if clock is None:
            time.sleep(seconds_per_doc * len(batch))
        else:
            clock.now += seconds_per_doc * len(batch)
        return [None] * len(batch)

    return predict


def test_measure_throughput_counts_and_orders():
    clock = FakeClock()
    one = measure_throughput(sleeper(0.0005, clock), TEXTS, batch_size=8, warmup=4, clock=clock)
    two = measure_throughput(sleeper(0.001, clock), TEXTS, batch_size=8, warmup=4, clock=clock)
    assert one["n_docs"] == len(TEXTS)
    assert one["n_words"] == sum(len(t.split()) for t in TEXTS)
    # The warmup docs are run but not timed: one pass is exactly 40 docs * 0.5 ms.
    assert one["seconds"] == pytest.approx(0.0005 * len(TEXTS))
    assert one["docs_per_s"] == pytest.approx(2000.0)
    assert one["words_per_s"] == pytest.approx(2000.0 * one["n_words"] / len(TEXTS))
    assert two["docs_per_s"] == pytest.approx(1000.0)


def test_measure_throughput_keeps_the_fastest_pass():
    clock = FakeClock()
    per_pass = iter([0.3, 0.1, 0.2])

    def predict(batch):
        if len(batch) == len(TEXTS):  # one batch per pass: its cost is the pass's
            clock.now += next(per_pass)
        return batch

    result = measure_throughput(
        predict, TEXTS, batch_size=len(TEXTS), warmup=0, repeats=3, clock=clock
    )
    assert result["seconds"] == pytest.approx(0.1)
    assert result["docs_per_s"] == pytest.approx(len(TEXTS) / 0.1)


def test_measure_throughput_batches_and_consumes_iterators():
    seen = []

    def lazy(batch):
        seen.append(len(batch))
        return (len(text) for text in batch)

    result = measure_throughput(lazy, TEXTS, batch_size=16, warmup=0, repeats=2)
    assert seen == [16, 16, 8] * 2
    assert result["repeats"] == 2 and result["batch_size"] == 16


def test_measure_throughput_rejects_no_texts():
    with pytest.raises(ValueError, match="no texts"):
        measure_throughput(sleeper(0), [])


def test_measure_latency_percentiles():
    calls = []
    clock = FakeClock()

    def predict_one(text):
        calls.append(text)
        # Every tenth call is slow, so the tail differs from the median.
        clock.now += 0.002 if len(calls) % 10 == 0 else 0.0002

    result = measure_latency(predict_one, TEXTS[:7], n=50, warmup=5, clock=clock)
    assert len(calls) == 55
    assert result["n"] == 50
    # Timed calls 6..55: calls 10, 20, 30, 40 and 50 are slow, 5 of 50. Sorted, the 45 fast ones
    # (0.2 ms) hold ranks 0..44, so the median is 0.2 ms and the 95th/99th percentiles (ranks
    # 46.55, 48.51 by linear interpolation) are 2 ms; the mean is (45 * 0.2 + 5 * 2) / 50 ms.
    assert result["p50_ms"] == pytest.approx(0.2)
    assert result["p95_ms"] == pytest.approx(2.0)
    assert result["p99_ms"] == pytest.approx(2.0)
    assert result["max_ms"] == pytest.approx(2.0)
    assert result["mean_ms"] == pytest.approx(0.38)


def test_size_on_disk(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "b").write_bytes(b"y" * 2345)
    (tmp_path / "sub" / "deeper" / "c").write_bytes(b"")
    (tmp_path / "sub" / "deeper" / "d").write_bytes(b"z" * 7)
    assert size_on_disk(tmp_path / "a") == 1000
    assert size_on_disk(tmp_path / "sub") == 2352
    assert size_on_disk(tmp_path) == 3352
    with pytest.raises(FileNotFoundError, match="missing"):
        size_on_disk(tmp_path / "missing")


def test_cost_summary():
    student = {
        "throughput": {"docs_per_s": 1000.0},
        "latency": {"p50_ms": 0.5},
        "peak_rss_mb": 300.0,
        "python_baseline_rss_mb": 280.0,
        "size_on_disk_bytes": 1_000_000,
    }
    teacher = {
        "throughput": {"docs_per_s": 10.0},
        "latency": {"p50_ms": 50.0},
        "peak_rss_mb": 1500.0,
        "python_baseline_rss_mb": 300.0,
        "size_on_disk_bytes": 500_000_000,
    }
    summary = cost_summary(student, teacher)
    assert summary["speedup"] == pytest.approx(100.0)
    assert summary["latency_ratio"] == pytest.approx(100.0)
    assert summary["memory_ratio"] == pytest.approx(5.0)
    assert summary["model_memory_ratio"] == pytest.approx(60.0)
    assert summary["size_ratio"] == pytest.approx(500.0)
    missing = cost_summary({"throughput": {"docs_per_s": 5.0}, "latency": None}, {})
    assert all(
        missing[key] is None
        for key in ("speedup", "latency_ratio", "memory_ratio", "model_memory_ratio", "size_ratio")
    )


def build_bow_pipeline(path, length):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "textcat",
        config={
            "model": {
                "@architectures": "spacy.TextCatBOW.v3",
                "exclusive_classes": True,
                "ngram_size": 1,
                "no_output_layer": False,
                "length": length,
            }
        },
    )
    examples = [
        Example.from_dict(nlp.make_doc("free cash now"), {"cats": {"spam": 1.0, "ham": 0.0}}),
        Example.from_dict(nlp.make_doc("see you soon"), {"cats": {"spam": 0.0, "ham": 1.0}}),
    ]
    nlp.initialize(lambda: examples)
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Small pipeline, large pipeline and a teacher, each measured in its own worker.

    The workers run side by side: each spends most of its time importing spaCy, and only the
    memory figures, which concurrency does not change, are compared.
    """
    root = tmp_path_factory.mktemp("cost")
    small = build_bow_pipeline(root / "small", SMALL_LENGTH)
    large = build_bow_pipeline(root / "large", LARGE_LENGTH)
    texts = [
        f"win free cash now number {i}" if i % 2 else f"see you at lunch {i}" for i in range(120)
    ]
    options = dict(batch_size=32, warmup=10, latency_n=20, timeout=300, verbose=False)
    # Raise this process's peak RSS well above a worker's: getrusage's ru_maxrss would carry it
    # into every worker started from here, and the workers must report their own peak.
    ballast = numpy.ones(512 * 2**20, dtype="uint8")
    del ballast
    jobs = {
        "small": ("pipeline", small, False),
        "large": ("pipeline", large, False),
        # As a student ships: torch, transformers and spacy-transformers unimportable.
        "small_bare": ("pipeline", small, True),
        # A pipeline path is a teacher spec too (spacy-distill.SpacyTeacher.v1).
        "teacher": ("teacher", small, False),
    }
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {
            name: pool.submit(
                measure_in_subprocess, kind, spec, texts, without_frameworks=bare, **options
            )
            for name, (kind, spec, bare) in jobs.items()
        }
        results = {name: future.result() for name, future in futures.items()}
    results["paths"] = {"small": small, "large": large, "teacher": small, "small_bare": small}
    results["parent_peak_rss_mb"] = peak_rss_mb()
    return results


@pytest.mark.parametrize("name", ["small", "large", "small_bare", "teacher"])
def test_measure_in_subprocess_is_plausible(measured, name):
    result = measured[name]
    assert result["kind"] == ("teacher" if name == "teacher" else "pipeline")
    assert result["n_texts"] == 120
    assert 30 < result["peak_rss_mb"] < 4096
    assert result["python_baseline_rss_mb"] <= result["rss_after_load_mb"] <= result["peak_rss_mb"]
    assert result["model_rss_mb"] == pytest.approx(
        result["peak_rss_mb"] - result["python_baseline_rss_mb"]
    )
    assert result["load_seconds"] > 0
    assert result["throughput"]["n_docs"] == 120
    assert result["throughput"]["docs_per_s"] > 0
    latency = result["latency"]
    assert latency["n"] == 20
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    assert result["size_on_disk_bytes"] == size_on_disk(measured["paths"][name])


def test_a_student_is_measured_as_it_ships_without_torch(measured):
    full, bare = measured["small"], measured["small_bare"]
    assert full["environment"] == "with every installed package"
    assert bare["environment"].startswith("without torch, transformers, spacy_transformers")
    assert bare["throughput"]["n_docs"] == full["throughput"]["n_docs"]
    # The model's own memory is the same; what `import spacy` pulls in beside torch is not.
    assert bare["model_rss_mb"] == pytest.approx(full["model_rss_mb"], abs=15)
    if importlib.util.find_spec("torch") is not None:  # CI installs it: thinc imports it with spaCy
        assert bare["peak_rss_mb"] < full["peak_rss_mb"] - 100


def test_a_pipeline_that_needs_torch_is_measured_with_it_and_says_so(tmp_path):
    pytest.importorskip("spacy_transformers")
    from spacy.util import load_model_from_config
    from thinc.api import Config

    from .tiny_models import TRF_TEXTCAT_CONFIG as TRF_TEACHER_CONFIG
    from .tiny_models import build_tiny_bert

    config = Config().from_str(
        TRF_TEACHER_CONFIG.format(model_dir=build_tiny_bert(tmp_path / "bert"))
    )
    nlp = load_model_from_config(config, auto_fill=True)
    nlp.initialize(
        lambda: [Example.from_dict(nlp.make_doc("free cash"), {"cats": {"spam": 1.0, "ham": 0.0}})]
    )
    nlp.to_disk(tmp_path / "trf")
    result = measure_in_subprocess(
        "pipeline",
        tmp_path / "trf",
        ["free cash now", "see you"] * 5,
        batch_size=4,
        warmup=1,
        latency_n=2,
        verbose=False,
        without_frameworks=True,
    )
    assert result["environment"].startswith(
        "with every installed package (it does not load without torch"
    )
    assert "transformer" in result["environment"] and result["throughput"]["n_docs"] == 10


def test_large_pipeline_costs_its_table(measured):
    small, large = measured["small"], measured["large"]
    size_diff_mb = (large["size_on_disk_bytes"] - small["size_on_disk_bytes"]) / 2**20
    assert LARGE_TABLE_MB * 0.9 < size_diff_mb < LARGE_TABLE_MB * 1.2
    # Loading holds the serialized bytes and the array at once (and may copy), so the peak
    # grows by one to a few table sizes; the worker's baseline does not depend on the model.
    peak_diff = large["peak_rss_mb"] - small["peak_rss_mb"]
    model_diff = large["model_rss_mb"] - small["model_rss_mb"]
    assert LARGE_TABLE_MB * 0.75 < peak_diff < LARGE_TABLE_MB * 8
    assert LARGE_TABLE_MB * 0.75 < model_diff < LARGE_TABLE_MB * 8
    summary = cost_summary(small, large)
    assert summary["memory_ratio"] > 1
    assert summary["size_ratio"] > 100


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_worker_peak_is_its_own(measured):
    assert measured["parent_peak_rss_mb"] > measured["small"]["peak_rss_mb"] + 256


def test_teacher_kind_uses_teacher_batch_size(measured):
    teacher = measured["teacher"]
    assert teacher["batch_size"] == 64  # SpacyTeacher's default, not the pipeline batch size
    assert teacher["model_id"].startswith("spacy:")
    assert teacher["model_path"] == str(measured["paths"]["teacher"])


def fake_worker(tmp_path, monkeypatch, source):
    """Swap the worker for a tiny module: a real one spends seconds importing spaCy."""
    (tmp_path / "fake_cost_worker.py").write_text(source, encoding="utf8")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(cost, "WORKER_MODULE", "fake_cost_worker")


def test_measure_in_subprocess_reports_worker_failure(tmp_path, monkeypatch):
    fake_worker(
        tmp_path,
        monkeypatch,
        (
            "import sys\n"
            "print('measuring x: loading ...', file=sys.stderr)\n"
            "raise OSError('[E050] Can\\'t find model no-such-pipeline')\n"
        ),
    )
    with pytest.raises(RuntimeError, match="cost worker failed") as excinfo:
        measure_in_subprocess("pipeline", "no-such-pipeline", ["a text"], verbose=False)
    # The output tail says why.
    assert "E050" in str(excinfo.value) and "loading" in str(excinfo.value)


def test_measure_in_subprocess_without_result(tmp_path, monkeypatch):
    fake_worker(tmp_path, monkeypatch, "print('spaCy printed something')\n")
    with pytest.raises(RuntimeError, match="no readable result"):
        measure_in_subprocess("pipeline", "x", ["a text"], verbose=False)


def test_measure_in_subprocess_timeout(tmp_path, monkeypatch):
    fake_worker(
        tmp_path, monkeypatch, "import time\nprint('started', flush=True)\ntime.sleep(60)\n"
    )
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="timeout=1") as excinfo:
        measure_in_subprocess("teacher", "x.cfg", ["a text"], timeout=1, verbose=False)
    assert "started" in str(excinfo.value)
    assert time.perf_counter() - start < 30  # killed, not waited for


def test_measure_in_subprocess_passes_arguments(tmp_path, monkeypatch):
    fake_worker(
        tmp_path,
        monkeypatch,
        (
            "import json, sys\n"
            "args = sys.argv[1:]\n"
            "opts = dict(zip(args[::2], args[1::2]))\n"
            "texts = [json.loads(line)['text'] for line in open(opts['--texts'], encoding='utf8')]\n"
            "opts['texts'] = texts\n"
            "open(opts['--output'], 'w', encoding='utf8').write(json.dumps(opts))\n"
        ),
    )
    texts = ["one", "two with\nnewline", "drei über"]
    result = measure_in_subprocess(
        "teacher",
        "teacher.cfg",
        texts,
        batch_size=8,
        warmup=3,
        latency_n=0,
        overrides={"teacher.batch_size": 4},
        verbose=False,
    )
    assert result["texts"] == texts
    assert result["--kind"] == "teacher" and result["--spec"] == "teacher.cfg"
    assert (result["--batch-size"], result["--warmup"], result["--latency-n"]) == ("8", "3", "0")
    assert json.loads(result["--overrides"]) == {"teacher.batch_size": 4}


def test_measure_in_subprocess_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        measure_in_subprocess("model", "x", ["a text"])
