"""Load one model in this process, run it, and write what it cost as JSON.

Started by `spacy_distill.evaluation.cost.measure_in_subprocess`, so that the memory figures
are this model's own. It can also be run by hand to reproduce a measurement:

    python -m spacy_distill.evaluation.cost_worker --kind pipeline --spec ./student \
        --texts texts.jsonl --output cost.json
"""

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

# Imported before the baseline is read: the interpreter and spaCy are what every model pays;
# the baseline is what the model adds on top of them.
import spacy

import spacy_distill
from spacy_distill.evaluation.cost import (
    NEEDS_FRAMEWORK_EXIT,
    current_rss_mb,
    measure_latency,
    measure_throughput,
    peak_rss_mb,
    size_on_disk,
)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["pipeline", "teacher"], required=True)
    parser.add_argument("--spec", required=True, help="pipeline name/path, or teacher spec")
    parser.add_argument("--texts", required=True, type=Path, help='JSONL, one {"text": ...} a line')
    parser.add_argument("--output", type=Path, default=None, help="result JSON (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--overrides", default="{}", help="teacher config overrides as JSON")
    parser.add_argument(
        "--without-frameworks",
        default="",
        help="comma-separated frameworks that cost.WITHOUT_FRAMEWORKS_BOOTSTRAP made unimportable: "
        "ignore their entry points too",
    )
    args = parser.parse_args(argv)

    texts = read_texts(args.texts)
    frameworks = tuple(f for f in args.without_frameworks.split(",") if f)
    if frameworks:
        ignore_entry_points_of(frameworks)
    # Constructing any Language loads every installed `spacy_factories` entry point (with
    # spacy-transformers installed, that is torch and transformers: hundreds of MB). Every
    # pipeline in this environment pays that, so it belongs to the baseline, not to the model.
    spacy.blank("xx")
    # Read after the texts are in memory: they are the input, not part of the model.
    baseline_mb = peak_rss_mb()
    say(args.spec, f"loading {args.kind} ({len(texts)} texts; baseline {_mb(baseline_mb)})")
    start = time.perf_counter()
    if args.kind == "pipeline":
        try:
            nlp = spacy.load(args.spec)
        except Exception as err:  # noqa: BLE001  (E002 for a factory, ImportError for code...)
            if not frameworks:
                raise
            # The last line is the reason the report gives.
            reason = (
                str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            )
            print(f"it does not load without {', '.join(frameworks[:3])}: {reason}", flush=True)
            return NEEDS_FRAMEWORK_EXIT
        model_id = f"{nlp.meta.get('lang', nlp.lang)}_{nlp.meta.get('name', 'pipeline')}"
        model_path = nlp.path
        batch_size = args.batch_size

        def predict(batch):
            return list(nlp.pipe(batch, batch_size=batch_size))

        predict_one = nlp
    else:
        from spacy_distill.teachers.loading import load_teacher

        teacher = load_teacher(args.spec, json.loads(args.overrides))
        model_id = teacher.teacher_id
        model_path = _teacher_path(teacher, args.spec)
        # A teacher's batch size is part of what it is (an API's request size, a GPU's memory).
        batch_size = int(teacher.batch_size)
        predict = teacher.score

        def predict_one(text):
            return teacher.score([text])

    load_seconds = time.perf_counter() - start
    rss_after_load = current_rss_mb()
    say(args.spec, f"loaded in {load_seconds:.1f}s, RSS {_mb(rss_after_load)}")

    say(args.spec, f"throughput on {len(texts)} texts, batch size {batch_size} ...")
    throughput = measure_throughput(predict, texts, batch_size=batch_size, warmup=args.warmup)
    say(args.spec, f"throughput {throughput['docs_per_s']:.1f} docs/s")
    latency = None
    if args.latency_n > 0:
        say(args.spec, f"latency over {args.latency_n} single-text calls ...")
        latency = measure_latency(
            predict_one, texts, n=args.latency_n, warmup=min(args.warmup, args.latency_n)
        )
        say(args.spec, f"latency p50 {latency['p50_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms")
    peak = peak_rss_mb()
    say(args.spec, f"peak RSS {_mb(peak)}")

    result: Dict[str, Any] = {
        "kind": args.kind,
        "spec": str(args.spec),
        "model_id": model_id,
        "n_texts": len(texts),
        "batch_size": batch_size,
        "load_seconds": load_seconds,
        "python_baseline_rss_mb": baseline_mb,
        "rss_after_load_mb": rss_after_load,
        "peak_rss_mb": peak,
        "model_rss_mb": None if peak is None or baseline_mb is None else peak - baseline_mb,
        "size_on_disk_bytes": size_on_disk(model_path) if model_path is not None else None,
        "model_path": None if model_path is None else str(model_path),
        "throughput": throughput,
        "latency": latency,
        "versions": {
            "python": platform.python_version(),
            "spacy": spacy.__version__,
            "spacy_distill": spacy_distill.__version__,
            "platform": platform.platform(),
        },
    }
    payload = json.dumps(result, indent=2)
    if args.output is None:
        print(payload)
    else:
        args.output.write_text(payload, encoding="utf8")
    return 0


def ignore_entry_points_of(frameworks) -> None:
    """Drop the entry points whose code lives in a blocked framework (spacy-transformers
    registers its factories so): spaCy imports every factory entry point when it builds a
    pipeline, and in a venv without the framework they would not exist."""
    import importlib.metadata

    import catalogue

    def keep(entry_point) -> bool:
        return entry_point.value.split(":")[0].split(".")[0] not in frameworks

    available = catalogue.AVAILABLE_ENTRY_POINTS
    # Python 3.10-3.11 give a dict of group -> entry points that also has `select`; 3.12 a flat
    # EntryPoints. catalogue only calls `select(group=...)`, which a flat EntryPoints answers.
    with warnings.catch_warnings():  # 3.10-3.11 call the dict interface deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        flat = (
            [ep for group in available.values() for ep in group]
            if isinstance(available, dict)
            else list(available)
        )
    catalogue.AVAILABLE_ENTRY_POINTS = importlib.metadata.EntryPoints(ep for ep in flat if keep(ep))


def read_texts(path: Path) -> List[str]:
    """Texts from a JSONL file with one {"text": ...} object a line."""
    texts = []
    with path.open(encoding="utf8") as file_:
        for line_no, line in enumerate(file_, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f'{path}:{line_no}: expected {{"text": "..."}}, got {line[:80]!r}')
            texts.append(row["text"])
    return texts


def say(spec: str, message: str) -> None:
    print(f"measuring {spec}: {message}", file=sys.stderr, flush=True)


def _teacher_path(teacher: Any, spec: str) -> Optional[Path]:
    # A spaCy-backed teacher knows its directory; a pipeline spec is one; a .cfg file names a
    # model the worker cannot size in general (an API, a hub id), so report none.
    # Imported here, after the baseline: the teacher has loaded it already if it is one.
    from spacy_distill.teachers.spacy_teacher import SpacyTeacher

    if isinstance(teacher, SpacyTeacher) and teacher.nlp.path is not None:
        return Path(teacher.nlp.path)
    candidate = Path(spec)
    if candidate.is_dir():
        return candidate
    return None


def _mb(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.0f} MB"


if __name__ == "__main__":
    sys.exit(main())
