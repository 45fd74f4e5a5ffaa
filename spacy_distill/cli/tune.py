from pathlib import Path
from typing import Dict, List, Optional

import numpy
import spacy
import typer
from wasabi import msg

from ..calibration import calibrate as fit_and_apply_temperature
from ..errors import DistillError
from ..evaluation.data import load_evaluation_data
from ..evaluation.tune import (
    OBJECTIVES,
    save_actions,
    save_cascade,
    save_thresholds,
    select_exclusive_thresholds,
    tune_thresholds,
    unmet_targets,
)
from ..filter.cascade import escalation_summary, margin_for_accuracy, margin_for_rate
from ..filter.decision import ALLOW, DecisionRule
from ..pipeline.textcat_lookup import find_textcat, is_exclusive
from ._app import app
from .export import parse_actions


def tune(
    student: str,
    data: Path,
    *,
    output: Optional[Path] = None,
    objective: str = "f1",
    value: Optional[float] = None,
    component: Optional[str] = None,
    escalation_rate: Optional[float] = None,
    cascade_accuracy: Optional[float] = None,
    teacher: Optional[str] = None,
    actions: Optional[Dict[str, str]] = None,
    default_action: str = ALLOW,
    calibrate: bool = True,
) -> dict:
    """Tune per-label thresholds of a student on dev data and save them with the pipeline;
    optionally also the cascade band (the margin around the thresholds whose docs escalate).

    student (str): the student pipeline.
    data (Path): dev data with gold (JSONL/CSV or a target file).
    output (Optional[Path]): where to save the tuned pipeline (default: in place).
    objective (str): "f1", "precision" or "recall".
    value (Optional[float]): the precision or recall to reach.
    component (Optional[str]): the text classifier (default: the only one).
    escalation_rate (Optional[float]): choose the band that escalates this fraction of dev.
    cascade_accuracy (Optional[float]): choose the narrowest band whose cascade reaches this
        accuracy on dev (needs the teacher's outputs: a dev target file, or `teacher`).
    teacher (Optional[str]): a teacher spec to score dev when the data holds no teacher outputs.
    actions (Optional[Dict[str, str]]): label -> the filter's action (e.g. {"spam": "block"});
        exclusive thresholds are judged on the decisions these actions make, and they are stored
        for `export --filter`.
    default_action (str): the filter's verdict when no label is decided.
    calibrate (bool): first fit a temperature on the data and store it in the weights (see
        `spacy_distill.calibration`); thresholds are then tuned on the calibrated probabilities.
    RETURNS (dict): per label: threshold, precision, recall, f1, met, support; and under
        "cascade" the band, if one was asked for.
    """
    if escalation_rate is not None and cascade_accuracy is not None:
        raise DistillError("choose the band by escalation_rate or by cascade_accuracy, not both")
    for arg, given in (("value", value), ("escalation_rate", escalation_rate), ("cascade_accuracy", cascade_accuracy)):
        if given is not None and not 0.0 <= given <= 1.0:
            raise DistillError(f"{arg} must be in [0, 1], got {given!r}")
    nlp = spacy.load(student)
    name = find_textcat(nlp, component)
    labels = list(nlp.get_pipe(name).labels)
    dataset = load_evaluation_data(data, labels, exclusive=is_exclusive(nlp, name))
    if not dataset.n_gold:
        raise DistillError(f"{data}: no gold labels to tune thresholds on")
    filters = [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory == "semantic_filter"]
    probs = numpy.asarray([[doc.cats[label] for label in labels] for doc in nlp.pipe(dataset.texts, disable=filters)])
    exclusive = is_exclusive(nlp, name)
    actions = dict(actions or {})
    calibration = None
    if calibrate:
        calibration = fit_and_apply_temperature(nlp, name, dataset.gold, probs, exclusive=exclusive, data=str(data))
        calibration.pop("probabilities")
        # The model's own outputs now, so that thresholds sit where the runtime's scores fall.
        probs = numpy.asarray([[doc.cats[label] for label in labels] for doc in nlp.pipe(dataset.texts, disable=filters)])
    chosen = tune_thresholds(dataset.gold, probs, labels, objective=objective, value=value)
    decisions = None
    if exclusive and objective == "f1":
        selection = select_exclusive_thresholds(
            dataset.gold, probs, labels, {k: v["threshold"] for k, v in chosen.items()},
            actions=actions, default_action=default_action,
        )
        for label, info in chosen.items():
            info["one_vs_rest_threshold"] = info["threshold"]
            info["threshold"] = selection["thresholds"].get(label)
        decisions = {"argmax": selection["argmax"], "tuned": selection["tuned"]}
    save_thresholds(nlp, chosen, objective=objective, value=value, data=str(data), decisions=decisions)
    save_actions(nlp, actions, default_action)
    if escalation_rate is not None or cascade_accuracy is not None:
        thresholds = {k: v["threshold"] for k, v in chosen.items() if v["threshold"] is not None}
        rule = DecisionRule(labels, exclusive, thresholds, actions, default_action)
        if escalation_rate is not None:
            band = escalation_summary(rule.margins(probs), margin_for_rate(rule.margins(probs), escalation_rate))
            band["met"] = True
            band_objective, band_value = "escalation_rate", escalation_rate
        else:
            from ..evaluation.evaluate import teacher_probabilities_for

            teacher_probs, _, _ = teacher_probabilities_for(dataset, teacher, exclusive)
            if teacher_probs is None:
                raise DistillError(
                    f"{data}: holds no teacher outputs, which --cascade-accuracy needs; pass a target "
                    "file written by `spacy-distill annotate`, or --teacher"
                )
            band = margin_for_accuracy(
                dataset.gold, probs, teacher_probs, rule, DecisionRule(labels, exclusive), cascade_accuracy  # type: ignore[arg-type]
            )
            band_objective, band_value = "accuracy", cascade_accuracy
        save_cascade(nlp, band, objective=band_objective, value=band_value, data=str(data))  # type: ignore[arg-type]
        chosen = {**chosen, "cascade": band}
    if decisions is not None:
        chosen = {**chosen, "decisions": decisions}
    if calibration is not None:
        chosen = {**chosen, "calibration": calibration}
    nlp.to_disk(output or student)
    return chosen


@app.command("tune")
def tune_cli(
    student: str = typer.Argument(..., help="The student pipeline directory"),
    data: Path = typer.Option(..., "--data", help="Dev data with gold labels (JSONL/CSV or target file)", exists=True),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Save the tuned pipeline here (default: in place)"),
    objective: str = typer.Option("f1", "--objective", help=f"One of {', '.join(OBJECTIVES)}"),
    value: Optional[float] = typer.Option(None, "--value", min=0.0, max=1.0, help="The precision or recall to reach (for those objectives)"),
    component: Optional[str] = typer.Option(None, "--component", help="The text classifier (default: the only one)"),
    escalation_rate: Optional[float] = typer.Option(None, "--escalation-rate", min=0.0, max=1.0, help="Also choose the cascade band that escalates this fraction of dev docs to the teacher"),
    cascade_accuracy: Optional[float] = typer.Option(None, "--cascade-accuracy", min=0.0, max=1.0, help="Also choose the narrowest cascade band that reaches this accuracy on dev"),
    teacher: Optional[str] = typer.Option(None, "--teacher", "-t", help="Teacher .cfg or pipeline for --cascade-accuracy when the data holds no teacher outputs"),
    action: List[str] = typer.Option([], "--action", help="LABEL=ACTION of the filter you will ship (e.g. spam=block); thresholds are judged on its decisions and `export --filter` reuses them; repeatable or comma-separated"),
    default_action: str = typer.Option(ALLOW, "--default-action", help="The filter's verdict when no label is decided"),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="First fit a temperature on the data (stored in the weights; never changes the argmax)"),
):
    """Choose per-label decision thresholds on dev data (best F1, precision >= p or recall >= r)
    and store them in the pipeline's meta.json, where the filter runtime reads them."""
    try:
        chosen = tune(student, data, output=output, objective=objective, value=value, component=component,
                      escalation_rate=escalation_rate, cascade_accuracy=cascade_accuracy, teacher=teacher,
                      actions=parse_actions(action), default_action=default_action, calibrate=calibrate)
    except DistillError as err:
        msg.fail(str(err), exits=1)
    band = chosen.pop("cascade", None)
    decisions = chosen.pop("decisions", None)
    calibration = chosen.pop("calibration", None)
    if calibration is not None:
        msg.info(
            f"Calibrated on {calibration['n']} docs: temperature {calibration['temperature']:.3f}, "
            f"ECE {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}, "
            f"NLL {calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}"
        )
    rows = [(label, "argmax" if info["threshold"] is None else f"{info['threshold']:.4f}", info["precision"], info["recall"], info["f1"], info["met"]) for label, info in chosen.items()]
    msg.table(rows, header=("label", "threshold", "precision", "recall", "F1", "target met"), aligns=("l", "r", "r", "r", "r", "l"))
    unmet = unmet_targets(chosen)
    if unmet:
        msg.warn(f"Target {objective} >= {value} not reached on dev for: {unmet}; the closest threshold was kept")
    if band is not None:
        text = f"Cascade band: margin {band['margin']:.4f}, escalates {band['escalation_rate']:.1%} of dev"
        if "accuracy" in band:
            text += f", cascade accuracy {band['accuracy']:.4f} (student {band['student_accuracy']:.4f}, teacher {band['teacher_accuracy']:.4f})"
        (msg.info if band.get("met", True) else msg.warn)(text + ("" if band.get("met", True) else "; the target was not reached, the best band was kept"))
    if decisions is not None:
        argmax, tuned = decisions["argmax"], decisions["tuned"]
        kept = [label for label, info in chosen.items() if info["threshold"] is not None]
        msg.info(
            f"Decisions on dev: argmax accuracy {argmax['accuracy']:.4f} / macro-F1 {argmax['macro_f1']:.4f}; "
            + (f"with thresholds for {kept}: {tuned['accuracy']:.4f} / {tuned['macro_f1']:.4f}" if kept
               else "no per-label threshold beat the argmax, so none is used")
        )
    msg.good(f"Saved thresholds to {(output or Path(student)) / 'meta.json'}")
