"""The report of an active distillation run: report.json, report.md and learning_curve.png."""

from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import srsly

from ..data.files import write_atomically
from .rounds import RoundResult

PathLike = Union[str, Path]


def write_report(
    results: Sequence[RoundResult],
    output_dir: PathLike,
    settings: Dict[str, Any],
    plots: bool = True,
) -> Dict[str, Any]:
    """Write the rounds' report into `output_dir`. RETURNS (Dict[str, Any]): the report."""
    output_dir = Path(output_dir)
    report = {"settings": settings, "rounds": [asdict(r) for r in results]}
    write_atomically(output_dir / "report.json", srsly.json_dumps(report, indent=2).encode("utf8"))
    png: Optional[Path] = None
    if plots and results:
        from ..evaluation.plots import plot_learning_curve

        has_retention = all(r.retention is not None for r in results)
        key = "retention" if has_retention else "macro_f1"
        png = plot_learning_curve(
            {
                settings.get("strategy", "rounds"): {
                    "calls": [r.total_teacher_calls for r in results],
                    "mean": [getattr(r, key) for r in results],
                }
            },
            output_dir / "learning_curve.png",
            ylabel="retention (student / teacher macro-F1)"
            if has_retention
            else "student macro-F1",
            reference=("teacher", 1.0) if has_retention else None,
        )
    write_atomically(output_dir / "report.md", _markdown(results, settings, png).encode("utf8"))
    return report


def _fmt(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.4f}"


def _markdown(results: Sequence[RoundResult], settings: Dict[str, Any], png: Optional[Path]) -> str:
    lines: List[str] = [
        "# Active distillation",
        "",
        "Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()),
        "",
        "| round | strategy | picked | labelled | teacher calls (total) | cache hits | duplicates "
        "left out | macro-F1 | agreement | retention | select s | annotate s | train s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.round} | {r.strategy} | {r.n_picked} | {r.n_labelled} | {r.teacher_calls} "
            f"({r.total_teacher_calls}) | {r.cache_hits} | {r.n_duplicates} | {_fmt(r.macro_f1)} | "
            f"{_fmt(r.agreement)} | {_fmt(r.retention)} | {r.seconds.get('select', 0):.1f} | "
            f"{r.seconds.get('annotate', 0):.1f} | {r.seconds.get('train', 0):.1f} |"
        )
    if results and results[0].teacher_macro_f1 is not None:
        lines += ["", f"Teacher macro-F1 on the test set: {results[0].teacher_macro_f1:.4f}."]
    if png is not None:
        lines += ["", f"![learning curve]({png.name})"]
    return "\n".join(lines) + "\n"


__all__ = ["write_report"]
