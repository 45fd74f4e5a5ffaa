"""What a model costs to run: throughput, latency, memory and size on disk.

Memory is measured in a worker process of its own (`cost_worker`), so that the figures are the
model's, not those of the process that evaluates it (which may hold a teacher, a corpus, or both).
"""

import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy

KINDS = ("pipeline", "teacher")
WORKER_MODULE = "spacy_distill.evaluation.cost_worker"
# What a packaged student never needs: measured `without_frameworks`, the worker cannot import
# them, as in the venv with spaCy alone that the student ships to (with torch importable,
# `import spacy` alone costs hundreds of MB through thinc and spacy-transformers' entry points).
FRAMEWORKS = (
    "torch",
    "transformers",
    "spacy_transformers",
    "spacy_curated_transformers",
    "tensorflow",
    "jax",
    "cupy",
)
# The worker's exit status when the model needs one of them (it is then measured with them).
NEEDS_FRAMEWORK_EXIT = 3
# Blocked before anything is imported: `python -m` would import spacy_distill (and spaCy) first.
WITHOUT_FRAMEWORKS_BOOTSTRAP = (
    "import runpy, sys; sys.modules.update(dict.fromkeys({frameworks!r})); "
    "runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
)


def measure_throughput(
    predict: Callable[[List[str]], Any],
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    warmup: int = 50,
    repeats: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> Dict[str, Any]:
    """Time batched prediction over all texts.

    predict (Callable[[List[str]], Any]): runs the model on a batch of texts, e.g.
        `lambda batch: list(nlp.pipe(batch))` or `teacher.score`. An iterator it returns is
        consumed, so a lazy `nlp.pipe` is timed for the work it does, not for being created.
    texts (Sequence[str]): the texts, passed in batches of `batch_size`.
    batch_size (int): texts per call to `predict`.
    warmup (int): run the first `warmup` texts once, untimed, first (lazy loading, caches).
    repeats (int): time this many passes over the texts and keep the fastest, which is the one
        least disturbed by other work on the machine.
    clock (Callable[[], float]): seconds from an arbitrary origin (tests pass a fake one).
    RETURNS (Dict[str, Any]): n_docs, n_words (whitespace-split), seconds (of the fastest pass),
        docs_per_s, words_per_s, batch_size, repeats.
    """
    texts = _check_texts(texts)
    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more, not {batch_size}")
    if repeats < 1:
        raise ValueError(f"repeats must be 1 or more, not {repeats}")
    if warmup > 0:
        for batch in _batches(texts[:warmup], batch_size):
            _consume(predict(batch))
    batches = list(_batches(texts, batch_size))
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        for batch in batches:
            _consume(predict(batch))
        best = min(best, clock() - start)
    n_words = sum(len(text.split()) for text in texts)
    return {
        "n_docs": len(texts),
        "n_words": n_words,
        "seconds": best,
        "docs_per_s": _rate(len(texts), best),
        "words_per_s": _rate(n_words, best),
        "batch_size": batch_size,
        "repeats": repeats,
    }


def measure_latency(
    predict_one: Callable[[str], Any],
    texts: Sequence[str],
    *,
    n: int = 200,
    warmup: int = 20,
    clock: Callable[[], float] = time.perf_counter,
) -> Dict[str, Any]:
    """Time single-text calls, as a service answering one request at a time sees them.

    predict_one (Callable[[str], Any]): runs the model on one text, e.g. `nlp` or
        `lambda text: teacher.score([text])`.
    texts (Sequence[str]): the texts; cycled through when there are fewer than `n`.
    n (int): how many timed calls.
    warmup (int): untimed calls first.
    clock (Callable[[], float]): seconds from an arbitrary origin (tests pass a fake one).
    RETURNS (Dict[str, Any]): p50_ms, p95_ms, p99_ms, mean_ms, max_ms and n (the timed calls).
    """
    texts = _check_texts(texts)
    if n < 1:
        raise ValueError(f"n must be 1 or more, not {n}")
    for i in range(warmup):
        _consume(predict_one(texts[i % len(texts)]))
    times = numpy.empty(n, dtype="float64")
    for i in range(n):
        text = texts[i % len(texts)]
        start = clock()
        _consume(predict_one(text))
        times[i] = clock() - start
    times *= 1000.0
    p50, p95, p99 = numpy.percentile(times, [50, 95, 99])
    return {
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "mean_ms": float(times.mean()),
        "max_ms": float(times.max()),
        "n": n,
    }


def size_on_disk(path: Union[str, Path]) -> int:
    """Bytes of a file, or of all files under a directory.

    Symbolic links are counted as links, not followed, so a pipeline that links to shared
    vectors is not charged for them twice.

    path (Union[str, Path]): a file or directory.
    RETURNS (int): the size in bytes.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory to measure")
    if not path.is_dir():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_size
    return total


def measure_in_subprocess(
    kind: str,
    spec: Union[str, Path],
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    warmup: int = 50,
    latency_n: int = 200,
    timeout: float = 1800,
    overrides: Optional[Dict[str, Any]] = None,
    verbose: bool = True,
    without_frameworks: bool = False,
) -> Dict[str, Any]:
    """Load and run a model in a fresh Python process and report what it cost.

    kind (str): "pipeline" (a spaCy pipeline name or directory, run with `nlp.pipe`) or
        "teacher" (a spec for `load_teacher`, run with `teacher.score` in batches of the
        teacher's own `batch_size`).
    spec (Union[str, Path]): the pipeline, or the teacher `.cfg` file / pipeline.
    texts (Sequence[str]): the texts to run, passed to the worker in a temporary JSONL file.
    batch_size (int): texts per `nlp.pipe` batch (pipelines only).
    warmup (int): texts run untimed before the throughput pass (and calls before the latency one).
    latency_n (int): timed single-text calls; 0 skips the latency measurement.
    timeout (float): seconds before the worker is killed.
    overrides (Optional[Dict[str, Any]]): teacher config overrides, e.g. {"teacher.batch_size": 8}.
    verbose (bool): echo the worker's progress lines to stderr as they come.
    without_frameworks (bool): measure with FRAMEWORKS unimportable (and their entry points
        ignored), as the model runs in a venv with spaCy alone; a model that needs one of them
        is measured again with them, and `environment` says so.
    RETURNS (Dict[str, Any]): environment (what the worker could import), kind, spec, model_id,
        load_seconds, python_baseline_rss_mb (peak RSS after interpreter start and imports,
        before the model loads), rss_after_load_mb,
        peak_rss_mb, model_rss_mb (peak above the baseline), size_on_disk_bytes and model_path
        (None when the model has no directory to measure, e.g. a teacher behind an API),
        n_texts, batch_size (the one used), throughput (see `measure_throughput`), latency (see
        `measure_latency`, or None) and versions (Python, spaCy, spacy-distill, platform).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    texts = _check_texts(texts)
    with tempfile.TemporaryDirectory(prefix="spacy-distill-cost-") as tmp:
        texts_path = Path(tmp) / "texts.jsonl"
        result_path = Path(tmp) / "result.json"
        with texts_path.open("w", encoding="utf8") as file_:
            for text in texts:
                file_.write(json.dumps({"text": text}) + "\n")
        arguments = [
            "--kind",
            kind,
            "--spec",
            str(spec),
            "--texts",
            str(texts_path),
            "--output",
            str(result_path),
            "--batch-size",
            str(batch_size),
            "--warmup",
            str(warmup),
            "--latency-n",
            str(latency_n),
            "--overrides",
            json.dumps(overrides or {}),
        ]
        environment = "with every installed package"
        if without_frameworks:
            bootstrap = WITHOUT_FRAMEWORKS_BOOTSTRAP.format(
                frameworks=FRAMEWORKS, module=WORKER_MODULE
            )
            cmd = [
                sys.executable,
                "-c",
                bootstrap,
                *arguments,
                "--without-frameworks",
                ",".join(FRAMEWORKS),
            ]
            returncode, tail = _run_worker(cmd, timeout=timeout, verbose=verbose, spec=spec)
            environment = f"without {', '.join(FRAMEWORKS[:3])} (as in a venv with spaCy alone)"
            if returncode == NEEDS_FRAMEWORK_EXIT:
                why = tail.strip().splitlines()[-1] if tail.strip() else "it needs a framework"
                environment = f"with every installed package ({why})"
        if not without_frameworks or returncode == NEEDS_FRAMEWORK_EXIT:
            cmd = [sys.executable, "-m", WORKER_MODULE, *arguments]
            returncode, tail = _run_worker(cmd, timeout=timeout, verbose=verbose, spec=spec)
        if returncode != 0:
            raise RuntimeError(
                f"measuring {kind} {spec}: the cost worker failed (exit code {returncode}); "
                f"its last output:\n{tail}"
            )
        try:
            result = json.loads(result_path.read_text(encoding="utf8"))
            result["environment"] = environment
            return result
        except (OSError, ValueError) as err:
            raise RuntimeError(
                f"measuring {kind} {spec}: the cost worker exited cleanly but left no readable "
                f"result in {result_path} ({err}); its last output:\n{tail}"
            ) from err


def cost_summary(student: Dict[str, Any], teacher: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """How much cheaper the student is to run than the teacher.

    Every ratio is "times better for the student" (over 1 is good). Where a figure is missing
    or zero on either side the ratio is None. `model_memory_ratio` compares the memory above
    the Python baseline (interpreter, spaCy and the texts), which is what the model itself adds;
    for a tiny student that difference is a few MB and noisy, so read it as an order of magnitude.

    student (Dict[str, Any]): a `measure_in_subprocess` result (or a flat dict with the same keys).
    teacher (Dict[str, Any]): the same for the teacher.
    RETURNS (Dict[str, Optional[float]]): only ratios: speedup (student docs/s / teacher
        docs/s), latency_ratio (teacher p50 / student p50), memory_ratio (teacher peak RSS /
        student peak RSS), model_memory_ratio (the same above each one's baseline) and size_ratio
        (teacher bytes on disk / student bytes).
    """
    return {
        "speedup": _ratio(
            _lookup(student, "throughput", "docs_per_s"),
            _lookup(teacher, "throughput", "docs_per_s"),
        ),
        "latency_ratio": _ratio(
            _lookup(teacher, "latency", "p50_ms"), _lookup(student, "latency", "p50_ms")
        ),
        "memory_ratio": _ratio(
            _lookup(teacher, None, "peak_rss_mb"), _lookup(student, None, "peak_rss_mb")
        ),
        "model_memory_ratio": _ratio(_model_rss(teacher), _model_rss(student)),
        "size_ratio": _ratio(
            _lookup(teacher, None, "size_on_disk_bytes"),
            _lookup(student, None, "size_on_disk_bytes"),
        ),
    }


def peak_rss_mb() -> Optional[float]:
    """This process's peak resident set size in MB, or None where it cannot be read.

    On Linux this reads VmHWM from /proc/self/status rather than `getrusage().ru_maxrss`: the
    kernel carries ru_maxrss across fork and exec, so a worker started by a process that once
    held 2 GB reports at least 2 GB however small its own model is. VmHWM belongs to the
    process's own address space, which exec replaces.
    """
    value = _proc_status_kb("VmHWM")
    if value is not None:
        return value / 1024.0
    try:
        import resource
    except ImportError:  # Windows
        return None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # macOS reports bytes, other Unixes kilobytes.
    return maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0


def current_rss_mb() -> Optional[float]:
    """This process's resident set size now, in MB (the peak where "now" cannot be read)."""
    value = _proc_status_kb("VmRSS")
    if value is not None:
        return value / 1024.0
    return peak_rss_mb()


def _proc_status_kb(field: str) -> Optional[float]:
    try:
        with open("/proc/self/status", encoding="ascii") as file_:
            for line in file_:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _run_worker(cmd: List[str], *, timeout: float, verbose: bool, spec: Any):
    env = dict(os.environ)
    # The worker must import this very checkout, installed or not.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"  # progress lines arrive while the work runs, not at exit
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        encoding="utf8",
        errors="replace",
    )
    tail: collections.deque = collections.deque(maxlen=40)

    def pump() -> None:
        # Read on a thread so a chatty worker can never fill the pipe and block.
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line)
            if verbose:
                sys.stderr.write(line)
                sys.stderr.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        reader.join(timeout=5)
        raise RuntimeError(
            f"measuring {spec}: the cost worker ran past timeout={timeout}s and was killed; "
            f"its last output:\n{''.join(tail)}"
        ) from None
    reader.join(timeout=5)
    return returncode, "".join(tail)


def _check_texts(texts: Iterable[str]) -> List[str]:
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to measure on: pass at least one")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is a {type(text).__name__}, not a str")
    return texts


def _batches(items: List[str], size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _consume(result: Any) -> None:
    if hasattr(result, "__next__"):
        collections.deque(result, maxlen=0)


def _rate(count: float, seconds: float) -> Optional[float]:
    return count / seconds if seconds > 0 else None


def _lookup(result: Dict[str, Any], section: Optional[str], key: str) -> Optional[float]:
    nested = result.get(section) if section else None
    if isinstance(nested, dict) and nested.get(key) is not None:
        return nested[key]
    return result.get(key)


def _model_rss(result: Dict[str, Any]) -> Optional[float]:
    if result.get("model_rss_mb") is not None:
        return result["model_rss_mb"]
    peak = result.get("peak_rss_mb")
    base = result.get("python_baseline_rss_mb")
    if peak is None or base is None:
        return None
    return peak - base


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return float(numerator) / float(denominator)
