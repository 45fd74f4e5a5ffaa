from pathlib import Path
from typing import Optional

import numpy
import spacy
import typer
from wasabi import msg

from ..errors import DistillError
from ..evaluation.data import load_evaluation_data
from ..evaluation.tune import OBJECTIVES, save_thresholds, tune_thresholds, unmet_targets
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
) -> dict:
    """Tune per-label thresholds of a student on dev data and save them with the pipeline.

    student (str): the student pipeline.
    data (Path): dev data with gold (JSONL/CSV or a target file).
    output (Optional[Path]): where to save the tuned pipeline (default: in place).
    objective (str): "f1", "precision" or "recall".
    value (Optional[float]): the precision or recall to reach.
    component (Optional[str]): the text classifier (default: the only one).
    RETURNS (dict): per label: threshold, precision, recall, f1, met, support.
    """
    nlp = spacy.load(student)
    name = find_textcat(nlp, component)
    labels = list(nlp.get_pipe(name).labels)
    dataset = load_evaluation_data(data, labels, exclusive=is_exclusive(nlp, name))
    if not dataset.n_gold:
        raise DistillError(f"{data}: no gold labels to tune thresholds on")
    probs = numpy.asarray([[doc.cats[label] for label in labels] for doc in nlp.pipe(dataset.texts)])
    chosen = tune_thresholds(dataset.gold, probs, labels, objective=objective, value=value)
    save_thresholds(nlp, chosen, objective=objective, value=value, data=str(data))
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
):
    """Choose per-label decision thresholds on dev data (best F1, precision >= p or recall >= r)
    and store them in the pipeline's meta.json, where the filter runtime reads them."""
    try:
        chosen = tune(student, data, output=output, objective=objective, value=value, component=component)
    except DistillError as err:
        msg.fail(str(err), exits=1)
    rows = [(label, info["threshold"], info["precision"], info["recall"], info["f1"], info["met"]) for label, info in chosen.items()]
    msg.table(rows, header=("label", "threshold", "precision", "recall", "F1", "target met"), aligns=("l", "r", "r", "r", "r", "l"))
    unmet = unmet_targets(chosen)
    if unmet:
        msg.warn(f"Target {objective} >= {value} not reached on dev for: {unmet}; the closest threshold was kept")
    msg.good(f"Saved thresholds to {(output or Path(student)) / 'meta.json'}")
