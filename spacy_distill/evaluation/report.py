"""Write an evaluation report: report.json, report.md and the PNG plots it links."""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy


def write_report(
    report: Dict[str, Any], output_dir: Path, *, plots: bool = True
) -> Dict[str, Path]:
    """Write report.json, the plots (if asked and matplotlib is installed) and report.md.

    report (Dict[str, Any]): the report from `evaluate`.
    output_dir (Path): the folder to write to.
    plots (bool): whether to draw PNG plots.
    RETURNS (Dict[str, Path]): the files written, by kind.
    """
    output_dir = Path(output_dir)
    written: Dict[str, Path] = {}
    report["plots"] = _write_plots(report, output_dir) if plots else {}
    json_path = output_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2, default=_plain), encoding="utf8")
    md_path = output_dir / "report.md"
    md_path.write_text(render_markdown(report), encoding="utf8")
    written.update({"json": json_path, "markdown": md_path})
    written.update({name: output_dir / file_name for name, file_name in report["plots"].items()})
    return written


def _write_plots(report: Dict[str, Any], output_dir: Path) -> Dict[str, str]:
    try:
        from . import plots
    except ImportError:  # pragma: no cover - plots.py imports matplotlib lazily
        return {}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return {}
    written: Dict[str, str] = {}
    if report.get("calibration"):
        curves = {name: cal for name, cal in report["calibration"].items()}
        plots.plot_reliability(curves, output_dir / "reliability.png", "Reliability (calibration)")
        written["reliability"] = "reliability.png"
    for name, confusion in (report.get("confusion") or {}).items():
        if "matrix" in confusion:
            file_name = f"confusion_{name}.png"
            plots.plot_confusion(
                confusion["matrix"],
                confusion["labels"],
                output_dir / file_name,
                f"Confusion: {name}",
            )
            written[f"confusion_{name}"] = file_name
    cost = report.get("cost") or {}
    quality = report.get("quality") or {}
    points = []
    for name in ("student", "teacher"):
        if name in cost and name in quality:
            points.append(
                {
                    "name": name,
                    "docs_per_s": cost[name]["throughput"]["docs_per_s"],
                    "quality": quality[name]["accuracy"],
                    "size_mb": (cost[name].get("size_on_disk_bytes") or 0) / 1e6 or None,
                }
            )
    if points:
        plots.plot_speed_quality(points, output_dir / "speed_quality.png", "Speed vs accuracy")
        written["speed_quality"] = "speed_quality.png"
    if (report.get("cascade") or {}).get("points"):
        plots.plot_cascade(report["cascade"], output_dir / "cascade.png")
        written["cascade"] = "cascade.png"
    return written


def render_markdown(report: Dict[str, Any]) -> str:
    """The Markdown report: quality, agreement, calibration, bias audit, cost, plots."""
    lines: List[str] = ["# Distillation report", ""]
    teacher = report.get("teacher") or {}
    lines += [
        f"- student: `{report['student']['path']}` (component `{report['student']['component']}`)",
        f"- teacher: `{teacher.get('id')}`"
        + (f" (outputs from {teacher['outputs_from']})" if teacher.get("outputs_from") else ""),
        f"- data: `{report['data']['path']}`: {report['data']['n_texts']} texts, {report['data']['n_gold']} with gold",
        f"- labels: {', '.join(report['labels'])} ({'exclusive' if report['exclusive'] else 'multi-label'})",
    ]
    if report.get("command"):
        lines.append(f"- command: `{report['command']}`")
    lines.append("")
    quality = report.get("quality") or {}
    if quality:
        names = list(quality)
        retention = report.get("retention") or {}
        lines += ["## Quality vs gold", ""]
        header = "| metric | " + " | ".join(names) + (" | retention |" if retention else " |")
        lines += [header, "|---" * (len(names) + 1 + bool(retention)) + "|"]
        for key in (
            "accuracy",
            "macro_f1",
            "micro_f1",
            "macro_precision",
            "macro_recall",
            "roc_auc",
        ):
            row = f"| {key} | " + " | ".join(_fmt(quality[n].get(key)) for n in names)
            lines.append(row + (f" | {_fmt(retention.get(key))} |" if retention else " |"))
        lines += [
            "",
            "Per label:",
            "",
            "| label | " + " | ".join(f"{n} P | {n} R | {n} F1" for n in names) + " | support |",
            "|---" * (3 * len(names) + 2) + "|",
        ]
        for label in report["labels"]:
            cells = []
            for n in names:
                per = quality[n]["per_label"].get(label, {})
                cells += [_fmt(per.get("precision")), _fmt(per.get("recall")), _fmt(per.get("f1"))]
            support = quality[names[0]]["per_label"].get(label, {}).get("support")
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {support} |")
        lines.append("")
    check = report.get("gold_check")
    if check:
        lines += [
            "## Against gold alone",
            "",
            f"A student trained on gold alone (`{(report.get('baseline') or {}).get('path')}`) "
            "beside the distilled one: "
            "distillation should never end below it.",
            "",
            "| label | gold-only F1 | student F1 | teacher F1 |",
            "|---|---|---|---|",
        ]
        for label, row in check["per_label"].items():
            lines.append(
                f"| {label} | {_fmt(row['gold_only_f1'])} | {_fmt(row['student_f1'])} | {_fmt(row.get('teacher_f1'))} |"
            )
        lines.append("")
        if check["teacher_worse"]:
            lines += [
                f"**The teacher is worse than gold alone on {', '.join(check['teacher_worse'])}**: trust it less "
                "there (`init-config --label-trust`, `SoftTargetLoss.v2`) or improve it before distilling.",
                "",
            ]
        if check["student_worse"]:
            lines += [
                f"**The distilled student is worse than gold alone on {', '.join(check['student_worse'])}.**",
                "",
            ]
    agreement = report.get("agreement")
    if agreement:
        lines += [
            "## Agreement with the teacher",
            "",
            f"- decisions agree on {_fmt(agreement.get('argmax'))} of texts",
            f"- mean KL(teacher ‖ student): {_fmt(agreement.get('mean_kl_teacher_to_student'))}",
            "- per label: "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in (agreement.get("per_label") or {}).items()),
            "",
        ]
    audit = report.get("teacher_bias_audit")
    if audit:
        lines += [
            "## Teacher-bias audit",
            "",
            f"- the teacher is wrong on {audit.get('teacher_wrong')} gold decisions: the student copies the error "
            f"on {_fmt(audit.get('student_copies_teacher_error'))} of them and gets "
            f"{_fmt(audit.get('student_right_where_teacher_wrong'))} right",
            f"- the teacher is right on {audit.get('teacher_right')}: the student loses "
            f"{_fmt(audit.get('student_loses'))} of them",
            "",
        ]
    calibration = report.get("calibration") or {}
    if calibration:
        lines += ["## Calibration", "", "| model | ECE | Brier |", "|---|---|---|"]
        for name, cal in calibration.items():
            lines.append(f"| {name} | {_fmt(cal.get('ece'))} | {_fmt(cal.get('brier'))} |")
        fit = report.get("calibration_fit")
        if fit:
            lines += [
                "",
                f"The student was calibrated by `tune` on `{fit.get('data')}` ({fit.get('n')} docs): temperature "
                f"{_fmt(fit.get('total_temperature'))}, ECE there "
                f"{_fmt(fit.get('ece_before'))} → {_fmt(fit.get('ece_after'))}, "
                f"NLL {_fmt(fit.get('nll_before'))} → {_fmt(fit.get('nll_after'))}.",
            ]
        lines.append("")
    cost = report.get("cost") or {}
    if cost:
        names = [n for n in ("student", "teacher") if n in cost]
        lines += [
            "## Cost (each model in its own subprocess, same texts, same run)",
            "",
            "| | " + " | ".join(names) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        rows = [
            ("docs/s", lambda c: c["throughput"]["docs_per_s"]),
            ("words/s", lambda c: c["throughput"]["words_per_s"]),
            # µs: a student's single-text latency is well under a millisecond.
            ("latency p50 (µs)", lambda c: c["latency"]["p50_ms"] * 1000),
            ("latency p95 (µs)", lambda c: c["latency"]["p95_ms"] * 1000),
            ("latency p99 (µs)", lambda c: c["latency"]["p99_ms"] * 1000),
            ("peak RSS (MB)", lambda c: c["peak_rss_mb"]),
            ("model RSS above Python (MB)", lambda c: c["model_rss_mb"]),
            ("load time (s)", lambda c: c["load_seconds"]),
            (
                "size on disk (MB)",
                lambda c: (
                    None if c.get("size_on_disk_bytes") is None else c["size_on_disk_bytes"] / 1e6
                ),
            ),
        ]
        for title, getter in rows:
            lines.append(
                f"| {title} | " + " | ".join(_fmt(_safe(getter, cost[n]), 1) for n in names) + " |"
            )
        lines.append(
            "| measured | "
            + " | ".join(str(cost[n].get("environment") or "n/a") for n in names)
            + " |"
        )
        summary = cost.get("summary") or {}
        if summary:
            lines += [
                "",
                "Ratios: "
                + ", ".join(f"{k} {_fmt(v, 1)}×" for k, v in summary.items() if v is not None),
            ]
        lines.append("")
    shipped = report.get("filter") or {}
    if shipped.get("decisions", {}).get("n"):
        decisions, argmax = shipped["decisions"], shipped["argmax"]
        lines += [
            "## Filter (the decisions the shipped filter makes)",
            "",
            f"Rule from {shipped['source']}: thresholds "
            f"{_thresholds(shipped['thresholds']) or 'none (argmax)'}, "
            f"actions {shipped['actions'] or 'none (allow)'}, default `{shipped['default_action']}`, "
            f"review band margin {_fmt(shipped['escalation_margin'])}.",
            "",
            "| decisions | accuracy | macro-F1 | no label |",
            "|---|---|---|---|",
            f"| shipped rule | {_fmt(decisions['accuracy'])} | {_fmt(decisions['macro_f1'])} | "
            f"{decisions['no_label_rate']:.1%} |",
            f"| argmax | {_fmt(argmax['accuracy'])} | {_fmt(argmax['macro_f1'])} | {argmax['no_label_rate']:.1%} |",
            "",
            "Verdicts: "
            + ", ".join(f"`{name}` {rate:.1%}" for name, rate in shipped["verdict_rates"].items())
            + f" (in the review band: {shipped['review_band_rate']:.1%}).",
            "",
        ]
        if decisions["accuracy"] < argmax["accuracy"] - 1e-12:
            lines += [
                "**The shipped rule decides worse than the argmax on these docs**: retune with "
                "`spacy-distill tune` (objective f1) or drop the thresholds.",
                "",
            ]
    cascade = report.get("cascade") or {}
    if cascade.get("points"):
        lines += [
            "## Cascade (doubtful docs escalated to the teacher)",
            "",
            "The student decides with its tuned thresholds; the docs closest to a threshold go to the "
            "teacher, whose decision replaces the student's. "
            f"Student alone: {_fmt(cascade['student_accuracy'])}, teacher alone: "
            f"{_fmt(cascade['teacher_accuracy'])} (accuracy of the filter's decisions on "
            f"{cascade['n']} docs with gold).",
            "",
            "| escalated | margin | accuracy |",
            "|---|---|---|",
        ]
        for point in cascade["points"]:
            lines.append(
                f"| {point['escalation_rate']:.1%} | {_fmt(point['margin'])} | {_fmt(point['accuracy'])} |"
            )
        for name, point in (cascade.get("named") or {}).items():
            lines.append(
                f"| {point['escalation_rate']:.1%} ({name} band) | {_fmt(point['margin'])} | "
                f"{_fmt(point['accuracy'])} |"
            )
        lines.append("")
    plots = report.get("plots") or {}
    if plots:
        lines += (
            ["## Plots", ""]
            + [f"![{name}]({file_name})" for name, file_name in plots.items()]
            + [""]
        )
    return "\n".join(lines)


def _safe(getter, value) -> Optional[float]:
    try:
        return getter(value)
    except (KeyError, TypeError):
        return None


def _thresholds(thresholds) -> str:
    """`{"spam": 0.4967}`, four digits each: the stored floats carry binary noise."""
    return ", ".join(f"{label} {float(value):.4f}" for label, value in (thresholds or {}).items())


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, numpy.integer)) and not isinstance(value, bool):
        return str(value)
    return f"{float(value):.{digits}f}"


def _plain(value):
    if isinstance(value, numpy.generic):
        return value.item()
    if isinstance(value, numpy.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
