from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ..annotation.annotate import convert
from ..data.records import label_set
from ..errors import DistillError
from ._app import app, option_flags, with_flags


@app.command("convert")
def convert_cli(
    input_path: Path = typer.Argument(
        ..., help="JSONL or CSV with text and label/labels", exists=True, dir_okay=False
    ),
    output_path: Path = typer.Argument(..., help="The .spacy target file to write"),
    labels: Optional[str] = typer.Option(
        None, "--labels", help="Comma-separated label set (default: the labels found, sorted)"
    ),
    labels_from: List[Path] = typer.Option(
        [],
        "--labels-from",
        help="Take the label set (and exclusivity) from the records of these files, e.g. all "
        "splits, so that every split gets the same labels; repeatable",
        exists=True,
        dir_okay=False,
    ),
    multilabel: Optional[bool] = typer.Option(
        None, "--multilabel/--exclusive", help="Default: multi-label if records use 'labels' lists"
    ),
    lang: str = typer.Option("en", "--lang", help="Language of the tokenizer that makes the docs"),
    on_error: str = typer.Option("fail", "--on-error", help="'fail' or 'skip' bad records"),
    limit: int = typer.Option(
        0, "--limit", min=0, help="Convert the first N records only (0: all)"
    ),
):
    """Write gold-labelled records as a target file without a teacher (teacher training
    data, gold-only baselines, evaluation sets)."""
    label_list = [label.strip() for label in labels.split(",")] if labels else None
    exclusive = None if multilabel is None else not multilabel
    if labels_from and label_list is not None:
        msg.fail("Pass either --labels or --labels-from", exits=1)
    try:
        if labels_from:
            found, found_exclusive = label_set(labels_from)
            label_list = list(found)
            exclusive = found_exclusive if exclusive is None else exclusive
        summary = convert(
            input_path,
            output_path,
            labels=label_list,
            exclusive=exclusive,
            lang=lang,
            on_error=on_error,
            limit=limit,
        )
    except DistillError as err:
        flags = {
            **option_flags("on_error", "limit", "labels", "lang"),
            "input_path": "INPUT",
            "output_path": "OUTPUT",
        }
        msg.fail(with_flags(str(err), flags), exits=1)
    for error in summary.errors:
        msg.warn(f"Skipped: {error}")
    for warning in summary.warnings:
        msg.warn(warning)
    msg.good(
        f"Wrote {summary.n_written} docs to {summary.output}; labels {list(summary.labels)}, "
        f"{'exclusive' if summary.exclusive else 'multi-label'}"
    )
    if summary.n_skipped:
        msg.warn(f"Skipped {summary.n_skipped} bad record(s), each reported above")
