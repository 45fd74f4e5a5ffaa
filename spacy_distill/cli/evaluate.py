from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ..errors import DistillError
from ..evaluation.evaluate import evaluate
from ._app import app, library_log_shown


@app.command("evaluate")
def evaluate_cli(
    student: str = typer.Argument(..., help="The student pipeline (path or package name)"),
    data: Path = typer.Option(
        ...,
        "--data",
        help="JSONL/CSV records, or a target file (its stored teacher outputs are reused)",
        exists=True,
    ),
    output_dir: Path = typer.Option(
        Path("metrics"), "--output", "-o", help="Folder for report.json, report.md and plots"
    ),
    teacher: Optional[str] = typer.Option(
        None,
        "--teacher",
        "-t",
        help="Teacher .cfg or spaCy pipeline: scores texts without stored outputs, and is measured for cost",
    ),
    component: Optional[str] = typer.Option(
        None, "--component", help="The student's text classifier (default: the only one)"
    ),
    limit: int = typer.Option(0, "--limit", min=0, help="Evaluate on the first N texts (0: all)"),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Batch size for throughput"),
    cost: bool = typer.Option(
        True, "--cost/--no-cost", help="Measure speed and memory (each model in its own subprocess)"
    ),
    latency_n: int = typer.Option(
        200,
        "--latency-n",
        min=0,
        help="Single-text calls for latency percentiles (0: no latency measurement)",
    ),
    plots: bool = typer.Option(
        True, "--plots/--no-plots", help="Write PNG plots (needs matplotlib)"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars"),
    baseline: Optional[str] = typer.Option(
        None,
        "--baseline",
        help="A student trained on gold alone: reported beside the distilled one, with the "
        "labels where the teacher or the student is worse",
    ),
):
    """Student vs teacher on the same texts: quality, agreement, calibration, bias audit, cost."""
    try:
        with library_log_shown():
            report = evaluate(
                student,
                data,
                output_dir,
                teacher=teacher,
                component=component,
                limit=limit,
                batch_size=batch_size,
                measure_cost=cost,
                latency_n=latency_n,
                plots=plots,
                show_progress=progress,
                baseline=baseline,
            )
    except DistillError as err:
        msg.fail(str(err), exits=1)
    quality = report.get("quality", {})
    for name in ("student", "teacher", "gold_only"):
        if name in quality:
            msg.info(
                f"{name}: accuracy {quality[name]['accuracy']:.4f}, macro-F1 {quality[name]['macro_f1']:.4f}"
            )
    if report.get("agreement"):
        msg.info(f"agreement with the teacher: {report['agreement']['argmax']:.4f}")
    check = report.get("gold_check") or {}
    if check.get("teacher_worse"):
        msg.warn(
            f"The teacher is worse than the gold-only student on {check['teacher_worse']} (F1): trust it less there "
            "(init-config --label-trust) or improve it before distilling"
        )
    if check.get("student_worse"):
        msg.warn(
            f"The distilled student is worse than the gold-only student on {check['student_worse']} (F1)"
        )
    msg.good(f"Wrote {output_dir / 'report.md'}")
