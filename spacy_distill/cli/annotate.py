from pathlib import Path

import typer
from spacy.cli._util import parse_config_overrides
from wasabi import msg

from ..annotate import annotate
from ..errors import DistillError
from ..teachers.loading import load_teacher
from ._app import OVERRIDES_CONTEXT, app


@app.command("annotate", context_settings=OVERRIDES_CONTEXT)
def annotate_cli(
    ctx: typer.Context,
    input_path: Path = typer.Argument(..., help="JSONL or CSV: text, optional label/labels and id", exists=True, dir_okay=False),
    output_path: Path = typer.Argument(..., help="The .spacy target file to write"),
    teacher: str = typer.Option(..., "--teacher", "-t", help="A teacher .cfg file with a [teacher] block, or a spaCy pipeline (name or path)"),
    lang: str = typer.Option("en", "--lang", help="Language of the tokenizer that makes the docs"),
    on_error: str = typer.Option("fail", "--on-error", help="A bad record: 'fail' (stop before the teacher runs) or 'skip' (report its line and skip it)"),
    limit: int = typer.Option(0, "--limit", help="Annotate the first N records only (0: all)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar"),
):
    """Score texts with a teacher and write its outputs as training targets.

    Extra options override the teacher config, e.g. `--teacher.batch_size 8`.
    """
    overrides = parse_config_overrides(ctx.args)
    try:
        teacher_obj = load_teacher(teacher, overrides)
        summary = annotate(
            input_path, output_path, teacher_obj, lang=lang, on_error=on_error, limit=limit,
            show_progress=progress,
        )
    except DistillError as err:
        msg.fail(str(err), exits=1)
    rate = summary.n_written / summary.seconds if summary.seconds else float("nan")
    msg.good(
        f"Wrote {summary.n_written} docs ({summary.n_gold} with gold) to {summary.output} "
        f"in {summary.seconds:.1f}s ({rate:.1f} docs/s); teacher {teacher_obj.teacher_id}, "
        f"labels {list(summary.labels)}"
    )
    if summary.n_skipped:
        msg.warn(f"Skipped {summary.n_skipped} bad record(s), each reported above")
