from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ..errors import DistillError
from ..evaluation.tune import OBJECTIVES, unmet_targets
from ..evaluation.tune_student import tune_student
from ..filter.decision import ALLOW
from ._app import app, option_flags, with_flags
from .export import parse_actions

# `spacy_distill.cli.tune.tune` was the function before it moved to the library.
tune = tune_student

# The arguments of tune_student that this command passes from options of the same name.
ARGUMENT_FLAGS = option_flags(
    "value", "escalation_rate", "cascade_accuracy", "teacher", "objective", "component"
)


@app.command("tune")
def tune_cli(
    student: str = typer.Argument(..., help="The student pipeline directory"),
    data: Path = typer.Option(
        ..., "--data", help="Dev data with gold labels (JSONL/CSV or target file)", exists=True
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Save the tuned pipeline here (default: in place)"
    ),
    objective: str = typer.Option("f1", "--objective", help=f"One of {', '.join(OBJECTIVES)}"),
    value: Optional[float] = typer.Option(
        None,
        "--value",
        min=0.0,
        max=1.0,
        help="The precision or recall to reach (for those objectives)",
    ),
    component: Optional[str] = typer.Option(
        None, "--component", help="The text classifier (default: the only one)"
    ),
    escalation_rate: Optional[float] = typer.Option(
        None,
        "--escalation-rate",
        min=0.0,
        max=1.0,
        help="Also choose the cascade band that escalates this fraction of dev docs to the teacher",
    ),
    cascade_accuracy: Optional[float] = typer.Option(
        None,
        "--cascade-accuracy",
        min=0.0,
        max=1.0,
        help="Also choose the narrowest cascade band that reaches this accuracy on dev",
    ),
    teacher: Optional[str] = typer.Option(
        None,
        "--teacher",
        "-t",
        help="Teacher .cfg or pipeline for --cascade-accuracy when the data holds no teacher outputs",
    ),
    action: List[str] = typer.Option(
        [],
        "--action",
        help="LABEL=ACTION of the filter you will ship (e.g. spam=block); thresholds are "
        "judged on its decisions and `export --filter` reuses them; repeatable or "
        "comma-separated",
    ),
    default_action: str = typer.Option(
        ALLOW, "--default-action", help="The filter's verdict when no label is decided"
    ),
    calibrate: bool = typer.Option(
        True,
        "--calibrate/--no-calibrate",
        help="First fit a temperature on the data (stored in the weights; never changes the argmax)",
    ),
):
    """Choose per-label decision thresholds on dev data (best F1, precision >= p or recall >= r)
    and store them in the pipeline's meta.json, where the filter runtime reads them."""
    try:
        chosen = tune_student(
            student,
            data,
            output=output,
            objective=objective,
            value=value,
            component=component,
            escalation_rate=escalation_rate,
            cascade_accuracy=cascade_accuracy,
            teacher=teacher,
            actions=parse_actions(action),
            default_action=default_action,
            calibrate=calibrate,
        )
    except DistillError as err:
        msg.fail(with_flags(str(err), ARGUMENT_FLAGS), exits=1)
    band = chosen.pop("cascade", None)
    decisions = chosen.pop("decisions", None)
    calibration = chosen.pop("calibration", None)
    if calibration is not None:
        msg.info(
            f"Calibrated on {calibration['n']} docs: temperature {calibration['temperature']:.3f}, "
            f"ECE {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}, "
            f"NLL {calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}"
        )
    rows = [
        (
            label,
            "argmax" if info["threshold"] is None else f"{info['threshold']:.4f}",
            info["precision"],
            info["recall"],
            info["f1"],
            info["met"],
        )
        for label, info in chosen.items()
    ]
    msg.table(
        rows,
        header=("label", "threshold", "precision", "recall", "F1", "target met"),
        aligns=("l", "r", "r", "r", "r", "l"),
    )
    unmet = unmet_targets(chosen)
    if unmet:
        msg.warn(
            f"Target {objective} >= {value} not reached on dev for: {unmet}; the closest threshold was kept"
        )
    if band is not None:
        text = f"Cascade band: margin {band['margin']:.4f}, escalates {band['escalation_rate']:.1%} of dev"
        if "accuracy" in band:
            text += (
                f", cascade accuracy {band['accuracy']:.4f} (student "
                f"{band['student_accuracy']:.4f}, teacher {band['teacher_accuracy']:.4f})"
            )
        (msg.info if band.get("met", True) else msg.warn)(
            text
            + (
                ""
                if band.get("met", True)
                else "; the target was not reached, the best band was kept"
            )
        )
    if decisions is not None:
        argmax, tuned = decisions["argmax"], decisions["tuned"]
        kept = [label for label, info in chosen.items() if info["threshold"] is not None]
        msg.info(
            f"Decisions on dev: argmax accuracy {argmax['accuracy']:.4f} / macro-F1 {argmax['macro_f1']:.4f}; "
            + (
                f"with thresholds for {kept}: {tuned['accuracy']:.4f} / {tuned['macro_f1']:.4f}"
                if kept
                else "no per-label threshold beat the argmax, so none is used"
            )
        )
    msg.good(f"Saved thresholds to {(output or Path(student)) / 'meta.json'}")
