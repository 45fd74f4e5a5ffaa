from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ..annotation.annotate import convert
from ..annotation.escalations import escalations_to_targets
from ..data.records import label_set
from ..errors import DistillError
from ..filter.escalations import is_escalation_log
from ._app import app, option_flags, with_flags


@app.command("convert")
def convert_cli(
    input_path: Path = typer.Argument(
        ...,
        help="JSONL or CSV with text and label/labels; with --from-escalations a semantic_filter "
        "escalation log (with its rotated files), a folder of logs or a glob pattern",
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
    from_escalations: bool = typer.Option(
        False,
        "--from-escalations",
        help="INPUT is a semantic_filter escalation log (its `record` setting): write the "
        "teacher's decisions as targets (a file whose first line is such a record is detected)",
    ),
):
    """Write gold-labelled records as a target file without a teacher (teacher training
    data, gold-only baselines, evaluation sets), or the teacher's decisions that a
    semantic_filter recorded (--from-escalations), to train the next student on them."""
    label_list = [label.strip() for label in labels.split(",")] if labels else None
    if not from_escalations and input_path.is_file() and is_escalation_log(input_path):
        msg.info(f"{input_path} is an escalation log: converting it as with --from-escalations")
        from_escalations = True
    if from_escalations:
        if labels_from or multilabel is not None or limit or on_error != "fail":
            msg.fail(
                "An escalation log takes --labels and --lang only (the labels and their "
                "exclusivity are the log's; every record is checked)",
                exits=1,
            )
        _convert_escalations(input_path, output_path, label_list, lang)
        return
    if not input_path.is_file():
        msg.fail(f"INPUT {input_path}: no such file", exits=1)
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


def _convert_escalations(
    input_path: Path, output_path: Path, labels: Optional[List[str]], lang: str
) -> None:
    try:
        summary = escalations_to_targets(input_path, output_path, labels=labels, lang=lang)
    except DistillError as err:
        msg.fail(
            with_flags(str(err), {**option_flags("labels", "lang"), "log_paths": "INPUT"}),
            exits=1,
        )
    msg.good(
        f"Wrote {summary.n_written} targets to {summary.output} from {summary.n_records} "
        f"escalation(s) in {len(summary.files)} file(s); labels {list(summary.labels)}, "
        f"{'exclusive' if summary.exclusive else 'multi-label'}; teacher(s) {summary.teachers}"
    )
    if summary.n_duplicates:
        msg.info(f"{summary.n_duplicates} repeated text(s): the latest record of each was kept")
