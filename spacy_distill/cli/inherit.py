from pathlib import Path
from typing import List

import typer
from wasabi import msg

from ..errors import DistillError
from ._app import app, option_flags, with_flags


@app.command("inherit")
def inherit_cli(
    targets: List[Path] = typer.Argument(
        ..., help="The annotated target files (or folders) of the picked texts", exists=True
    ),
    duplicates: Path = typer.Option(
        ...,
        "--duplicates",
        "-d",
        help="The duplicates file `select` wrote (<picks stem>.duplicates.jsonl)",
        exists=True,
        dir_okay=False,
    ),
    output: Path = typer.Option(..., "--output", "-o", help="The .spacy target file to write"),
    lang: str = typer.Option("en", "--lang", help="Language of the tokenizer that makes the docs"),
):
    """Give the duplicates `select` left out the targets of the texts they repeat: training data
    without a teacher call (provenance method "inherited", naming the text and similarity)."""
    from ..select.inherit import inherit_targets

    try:
        summary = inherit_targets(targets, duplicates, output, lang=lang)
    except DistillError as err:
        flags = {**option_flags("duplicates", "output", "lang"), "target_paths": "TARGETS"}
        msg.fail(with_flags(str(err), flags), exits=1)
    msg.good(f"Wrote {summary.n_written} inherited targets to {summary.path}")
    if summary.n_missing:
        msg.info(
            f"{summary.n_missing} duplicate(s) repeat a text with no teacher target in TARGETS "
            "(not picked yet): they inherit once it is annotated"
        )
