"""Cascade benchmark: a distilled student screens every text, the LLM teacher decides the doubtful.

Measured in one run, on the same texts, through the public runtime (`semantic_filter` with a
teacher): the student alone, the teacher alone, and the cascade at several escalation bands,
each band chosen on dev (`margin_for_rate` on the student's dev margins) and then applied to
the test texts. Per setting: accuracy and macro-F1 against gold, the fraction of test texts
actually escalated, docs/s of the whole pipeline (student + teacher calls), and how many
teacher calls were made.

Example (after `spacy project run all projects/llm_filter`):

    OMP_NUM_THREADS=2 python benchmarks/cascade.py \\
        projects/llm_filter/training/student_tuned projects/llm_filter/training/teacher.cfg \\
        --dev projects/llm_filter/corpus/dev.jsonl --test projects/llm_filter/corpus/test.jsonl

Writes results/cascade_<name>.json and .md and a PNG plot of accuracy vs escalation rate.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy
import spacy
import typer

from spacy_distill.evaluation import metrics
from spacy_distill.evaluation.data import load_evaluation_data
from spacy_distill.evaluation.tune import get_thresholds
from spacy_distill.filter.cascade import margin_for_rate
from spacy_distill.filter.decision import DecisionRule
from spacy_distill.pipeline.textcat_lookup import find_textcat, is_exclusive
from spacy_distill.teachers.loading import load_teacher

HERE = Path(__file__).resolve().parent
T0 = time.time()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - T0:7.1f}s] {message}", flush=True)


def run_pipeline(nlp, texts: List[str], batch_size: int, label: str) -> Dict[str, Any]:
    """Run nlp (with its filter) over texts; verdict details per doc and the wall time."""
    started = time.perf_counter()
    details = []
    every = max(1, len(texts) // 5)
    for i, doc in enumerate(nlp.pipe(texts, batch_size=batch_size), start=1):
        details.append(doc._.verdict_details)
        if i % every == 0 or i == len(texts):
            elapsed = time.perf_counter() - started
            log(
                f"  {label}: {i}/{len(texts)} docs, {i / elapsed:.1f} docs/s, ETA {(len(texts) - i) * elapsed / i:.0f}s"
            )
    seconds = time.perf_counter() - started
    return {"details": details, "seconds": seconds, "docs_per_s": len(texts) / seconds}


def score(
    details: List[Dict[str, Any]], gold: numpy.ndarray, labels: List[str], exclusive: bool
) -> Dict[str, float]:
    """Accuracy and macro-F1 of the filter's decided labels (one-hot) against gold."""
    decided = numpy.asarray([[float(label in d["labels"]) for label in labels] for d in details])
    known = ~numpy.isnan(gold).any(axis=1)
    result = metrics.classification_metrics(
        gold[known], decided[known], labels, exclusive=exclusive, threshold=0.5
    )
    return {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}


def main(
    student: Path = typer.Argument(..., help="The tuned student pipeline"),
    teacher: str = typer.Argument(..., help="The teacher (.cfg or pipeline)"),
    dev: Path = typer.Option(
        ..., "--dev", help="Dev data (JSONL/CSV/target file): chooses the bands"
    ),
    test: Path = typer.Option(..., "--test", help="Test data with gold"),
    rates: str = typer.Option(
        "0.05,0.1,0.2,0.3,0.5", "--rates", help="Escalation rates to choose bands for (on dev)"
    ),
    limit: int = typer.Option(0, "--limit", help="First N test texts (0: all)"),
    batch_size: int = typer.Option(64, "--batch-size"),
    name: str = typer.Option("sst2", "--name", help="Results are written as cascade_<name>.*"),
    results_dir: Path = typer.Option(HERE / "results", "--results-dir"),
):
    """Accuracy vs escalation rate of the student → teacher cascade, all in one run."""
    command = "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])
    nlp = spacy.load(student)
    textcat = find_textcat(nlp)
    labels = list(nlp.get_pipe(textcat).labels)
    exclusive = is_exclusive(nlp, textcat)
    thresholds = {k: v for k, v in get_thresholds(nlp).items() if k in labels}
    rule = DecisionRule(labels, exclusive, thresholds)
    dev_data = load_evaluation_data(dev, labels, exclusive=exclusive)
    test_data = load_evaluation_data(test, labels, exclusive=exclusive, limit=limit)
    log(
        f"student {student} ({labels}, thresholds {thresholds}); dev {len(dev_data.texts)}, test {len(test_data.texts)}"
    )
    with nlp.select_pipes(enable=[textcat]):
        dev_probs = rule.probabilities(
            [doc.cats for doc in nlp.pipe(dev_data.texts, batch_size=256)]
        )
    dev_margins = rule.margins(dev_probs)
    bands = [(float(r), margin_for_rate(dev_margins, float(r))) for r in rates.split(",")]

    log(f"loading the teacher {teacher}")
    started = time.perf_counter()
    teacher_model = load_teacher(teacher)
    load_seconds = time.perf_counter() - started
    filt = nlp.add_pipe("semantic_filter", config={"escalation_margin": 0.0})
    filt.set_teacher(teacher_model)
    rows: List[Dict[str, Any]] = []

    def record(
        setting: str,
        margin: Optional[float],
        dev_rate: Optional[float],
        run: Dict[str, Any],
        teacher_calls: int,
    ):
        quality = score(run["details"], test_data.gold, labels, exclusive)
        escalated = float(numpy.mean([d["escalated"] for d in run["details"]]))
        rows.append(
            {
                "setting": setting,
                "dev_rate": dev_rate,
                "margin": margin,
                "escalation_rate": escalated,
                "teacher_calls": teacher_calls,
                **quality,
                "docs_per_s": run["docs_per_s"],
                "seconds": run["seconds"],
            }
        )
        log(
            f"{setting}: accuracy {quality['accuracy']:.4f}, macro-F1 {quality['macro_f1']:.4f}, "
            f"escalated {escalated:.1%}, {run['docs_per_s']:.1f} docs/s"
        )

    # The student alone (band 0) and the teacher alone (everything escalates) run through the same
    # component, so every setting pays the same overheads.
    filt.escalation_margin = 0.0
    for _ in nlp.pipe(test_data.texts[:200], batch_size=batch_size):  # warm-up
        pass
    record("student alone", 0.0, 0.0, run_pipeline(nlp, test_data.texts, batch_size, "student"), 0)
    for dev_rate, margin in bands:
        filt.escalation_margin = margin
        before = filt.n_escalated
        run = run_pipeline(nlp, test_data.texts, batch_size, f"cascade {dev_rate:.0%}")
        record(f"cascade ({dev_rate:.0%} of dev)", margin, dev_rate, run, filt.n_escalated - before)
    filt.escalation_margin = 2.0
    before = filt.n_escalated
    run = run_pipeline(nlp, test_data.texts, batch_size, "teacher")
    record("teacher alone", 2.0, 1.0, run, filt.n_escalated - before)

    result = {
        "command": command,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "versions": {"spacy": spacy.__version__, "python": platform.python_version()},
        "student": str(student),
        "teacher": str(teacher),
        "teacher_id": teacher_model.teacher_id,
        "teacher_load_seconds": load_seconds,
        "labels": labels,
        "thresholds": thresholds,
        "dev": str(dev),
        "test": str(test),
        "n_test": len(test_data.texts),
        "rows": rows,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"cascade_{name}.json").write_text(json.dumps(result, indent=2), encoding="utf8")
    plot = _plot(rows, results_dir / f"cascade_{name}.png")
    (results_dir / f"cascade_{name}.md").write_text(_markdown(result, plot), encoding="utf8")
    log(f"wrote {results_dir / f'cascade_{name}.md'}")


def _plot(rows: List[Dict[str, Any]], path: Path) -> Optional[str]:
    try:
        from spacy_distill.evaluation.plots import plot_cascade
    except ImportError:
        return None
    student = rows[0]
    teacher = rows[-1]
    cascade = {
        "points": [
            {"escalation_rate": r["escalation_rate"], "accuracy": r["accuracy"]} for r in rows
        ],
        "student_accuracy": student["accuracy"],
        "teacher_accuracy": teacher["accuracy"],
    }
    plot_cascade(cascade, path, "Cascade on the test texts (measured)")
    return path.name


def _markdown(result: Dict[str, Any], plot: Optional[str]) -> str:
    machine = result["machine"]
    lines = [
        "# Cascade: student screens, LLM teacher decides the doubtful",
        "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']}; {machine['cpus']} CPUs, load average "
        f"{', '.join(f'{x:.1f}' for x in machine['load_avg'])}, "
        f"OMP_NUM_THREADS={machine['omp_num_threads']}",
        f"- student: `{result['student']}` (thresholds {result['thresholds']}); teacher: "
        f"`{result['teacher_id']}` (loaded in {result['teacher_load_seconds']:.1f} s, not "
        "counted below)",
        f"- bands chosen on `{result['dev']}` for the escalation rates below, applied to "
        f"{result['n_test']} texts of `{result['test']}`",
        "",
        "| setting | band (margin) | escalated on test | teacher calls | accuracy | macro-F1 | docs/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['setting']} | {row['margin']:.4f} | {row['escalation_rate']:.1%} | {row['teacher_calls']} | "
            f"{row['accuracy']:.4f} | {row['macro_f1']:.4f} | {row['docs_per_s']:.1f} |"
        )
    if plot:
        lines += ["", f"![accuracy vs escalation rate]({plot})"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    typer.run(main)
