from pathlib import Path
from typing import Optional

import srsly
import typer
from wasabi import msg

from ..errors import DistillError
from ..evaluation.trust import WEAK_F1, label_trust, teacher_quality, weak_labels
from ._app import app


@app.command("check-teacher")
def check_teacher_cli(
    data: Path = typer.Argument(
        ..., help="A target file written by `annotate` for texts with gold (dev)", exists=True
    ),
    weak_f1: float = typer.Option(
        WEAK_F1,
        "--weak-f1",
        min=0.0,
        max=1.0,
        help="Warn for labels whose teacher F1 is below this",
    ),
    output: Optional[Path] = typer.Option(
        None,
        "--output",
        "-o",
        help="Write the report (and label_trust for SoftTargetLoss.v2) as JSON",
    ),
    strict: bool = typer.Option(False, "--strict", help="Exit with an error when a label is weak"),
):
    """The teacher's per-label quality on texts with gold, before distilling from it: where it is
    weak, a student copies the weakness (use SoftTargetLoss.v2's label_trust, or a better teacher)."""
    try:
        quality = teacher_quality(data)
    except DistillError as err:
        msg.fail(str(err), exits=1)
    rows = [
        (
            label,
            f"{q['precision']:.3f}",
            f"{q['recall']:.3f}",
            f"{q['f1']:.3f}",
            q["support"],
            q["predicted"],
        )
        for label, q in quality["per_label"].items()
    ]
    msg.table(
        rows,
        header=("label", "precision", "recall", "F1", "gold", "predicted"),
        aligns=("l", "r", "r", "r", "r", "r"),
    )
    if "accuracy" in quality:
        msg.info(f"teacher accuracy on {quality['n']} texts with gold: {quality['accuracy']:.4f}")
    trust = label_trust(quality)
    if output is not None:
        srsly.write_json(output, {**quality, "label_trust": trust})
        msg.good(f"Wrote {output}")
    weak = weak_labels(quality, weak_f1)
    if weak:
        text = (
            f"The teacher is weak on {weak} (F1 < {weak_f1} on {data}): a student distilled from it copies that. "
            f"Trust it less there (loss spacy-distill.SoftTargetLoss.v2, label_trust = {trust}) or improve the teacher."
        )
        if strict:
            msg.fail(text, exits=1)
        msg.warn(text)
