from pathlib import Path
from typing import Optional

import numpy
import spacy
import typer
from wasabi import msg

from ..errors import DistillError
from ..evaluation.data import load_evaluation_data
from ..evaluation.tune import OBJECTIVES, save_cascade, save_thresholds, tune_thresholds, unmet_targets
from ..filter.cascade import escalation_summary, margin_for_accuracy, margin_for_rate
from ..filter.decision import DecisionRule
from ..pipeline.textcat_lookup import find_textcat, is_exclusive
from ._app import app


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
    RETURNS (dict): per label: threshold, precision, recall, f1, met, support; and under
        "cascade" the band, if one was asked for.
    """
    if escalation_rate is not None and cascade_accuracy is not None:
        raise DistillError("choose the band by --escalation-rate or by --cascade-accuracy, not both")
    nlp = spacy.load(student)
    name = find_textcat(nlp, component)
    labels = list(nlp.get_pipe(name).labels)
    dataset = load_evaluation_data(data, labels, exclusive=is_exclusive(nlp, name))
    if not dataset.n_gold:
        raise DistillError(f"{data}: no gold labels to tune thresholds on")
    filters = [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory == "semantic_filter"]
    probs = numpy.asarray([[doc.cats[label] for label in labels] for doc in nlp.pipe(dataset.texts, disable=filters)])
    chosen = tune_thresholds(dataset.gold, probs, labels, objective=objective, value=value)
    save_thresholds(nlp, chosen, objective=objective, value=value, data=str(data))
    if escalation_rate is not None or cascade_accuracy is not None:
        exclusive = is_exclusive(nlp, name)
        thresholds = {k: v["threshold"] for k, v in chosen.items() if v["threshold"] is not None}
        rule = DecisionRule(labels, exclusive, thresholds)
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
    nlp.to_disk(output or student)
    return chosen


@app.command("tune")
def tune_cli(
    student: str = typer.Argument(..., help="The student pipeline directory"),
    data: Path = typer.Option(..., "--data", help="Dev data with gold labels (JSONL/CSV or target file)", exists=True),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Save the tuned pipeline here (default: in place)"),
    objective: str = typer.Option("f1", "--objective", help=f"One of {', '.join(OBJECTIVES)}"),
    value: Optional[float] = typer.Option(None, "--value", help="The precision or recall to reach (for those objectives)"),
    component: Optional[str] = typer.Option(None, "--component", help="The text classifier (default: the only one)"),
    escalation_rate: Optional[float] = typer.Option(None, "--escalation-rate", help="Also choose the cascade band that escalates this fraction of dev docs to the teacher"),
    cascade_accuracy: Optional[float] = typer.Option(None, "--cascade-accuracy", help="Also choose the narrowest cascade band that reaches this accuracy on dev"),
    teacher: Optional[str] = typer.Option(None, "--teacher", "-t", help="Teacher .cfg or pipeline for --cascade-accuracy when the data holds no teacher outputs"),
):
    """Choose per-label decision thresholds on dev data (best F1, precision >= p or recall >= r)
    and store them in the pipeline's meta.json, where the filter runtime reads them."""
    try:
        chosen = tune(student, data, output=output, objective=objective, value=value, component=component,
                      escalation_rate=escalation_rate, cascade_accuracy=cascade_accuracy, teacher=teacher)
    except DistillError as err:
        msg.fail(str(err), exits=1)
    band = chosen.pop("cascade", None)
    rows = [(label, info["threshold"], info["precision"], info["recall"], info["f1"], info["met"]) for label, info in chosen.items()]
    msg.table(rows, header=("label", "threshold", "precision", "recall", "F1", "target met"), aligns=("l", "r", "r", "r", "r", "l"))
    unmet = unmet_targets(chosen)
    if unmet:
        msg.warn(f"Target {objective} >= {value} not reached on dev for: {unmet}; the closest threshold was kept")
    if band is not None:
        text = f"Cascade band: margin {band['margin']:.4f}, escalates {band['escalation_rate']:.1%} of dev"
        if "accuracy" in band:
            text += f", cascade accuracy {band['accuracy']:.4f} (student {band['student_accuracy']:.4f}, teacher {band['teacher_accuracy']:.4f})"
        (msg.info if band.get("met", True) else msg.warn)(text + ("" if band.get("met", True) else "; the target was not reached, the best band was kept"))
    msg.good(f"Saved thresholds to {(output or Path(student)) / 'meta.json'}")
