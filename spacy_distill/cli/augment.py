from pathlib import Path
from typing import List, Optional

import typer
from spacy.cli._util import parse_config_overrides
from wasabi import msg

from ..augment.config import load_augment_config
from ..augment.run import augment_file
from ..errors import DistillError
from ._app import OVERRIDES_CONTEXT, app, import_code, option_flags, with_flags


@app.command("augment", context_settings=OVERRIDES_CONTEXT)
def augment_cli(
    ctx: typer.Context,
    input_path: Path = typer.Argument(
        ...,
        help="Seed texts: JSONL or CSV (text, optional label/labels and id)",
        exists=True,
        dir_okay=False,
    ),
    output_path: Path = typer.Argument(
        ..., help="The JSONL file of new texts to write (no labels: annotate them with a teacher)"
    ),
    config: Path = typer.Option(
        ...,
        "--config",
        "-C",
        help="A .cfg file with an [augment] block (steps, seed, keep_seeds)",
        exists=True,
        dir_okay=False,
    ),
    seed: Optional[int] = typer.Option(
        None, "--seed", help="The run's seed (overrides [augment] seed)"
    ),
    keep_seeds: Optional[bool] = typer.Option(
        None,
        "--keep-seeds/--no-keep-seeds",
        help="Also write the seeds, with their labels, first (overrides [augment] keep_seeds)",
    ),
    eval_data: Optional[List[Path]] = typer.Option(
        None,
        "--eval-data",
        help="An evaluation set (JSONL/CSV or .spacy; repeatable): refuse seeds that are in "
        "it, drop variants with its texts",
    ),
    on_error: str = typer.Option(
        "fail", "--on-error", help="A bad record: 'fail' or 'skip' (report its line and skip it)"
    ),
    limit: int = typer.Option(0, "--limit", min=0, help="Use the first N seeds only (0: all)"),
    code: Optional[Path] = typer.Option(
        None,
        "--code",
        "-c",
        help="A Python file to import first, e.g. one registering your own augmenter",
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show a progress bar with rate and ETA"
    ),
):
    """Write new texts from seed texts through the augmenters of a config.

    Every new text records its parent, method and parameters; it has no label (the teacher
    labels it at annotate time). Extra options override the config, e.g.
    `--augment.steps.typos.rate 0.1`.
    """
    overrides = parse_config_overrides(ctx.args)
    import_code(code)
    try:
        plan = load_augment_config(config, overrides)
        summary = augment_file(
            input_path,
            output_path,
            plan.steps,
            seed=plan.seed if seed is None else seed,
            keep_seeds=plan.keep_seeds if keep_seeds is None else keep_seeds,
            on_error=on_error,
            limit=limit,
            eval_data=eval_data or (),
            show_progress=progress,
        )
    except DistillError as err:
        flags = {
            **option_flags("eval_data", "on_error", "limit", "seed", "config"),
            "input_path": "INPUT",
            "output_path": "OUTPUT",
        }
        msg.fail(with_flags(str(err), flags), exits=1)
    rate = summary.n_seeds / summary.seconds if summary.seconds else float("nan")
    per_step = ", ".join(f"{name} {summary.n_variants.get(name, 0)}" for name in plan.steps)
    msg.good(
        f"Wrote {summary.n_written} texts to {summary.output} from {summary.n_seeds} seeds "
        f"in {summary.seconds:.1f}s ({rate:.1f} seeds/s); variants per step: {per_step}"
    )
    dropped = {k: v for k, v in summary.n_dropped.items() if v}
    if dropped:
        msg.info(f"Dropped variants: {dropped}")
    if summary.errors:
        msg.warn(f"Skipped {len(summary.errors)} bad record(s): " + "; ".join(summary.errors[:5]))
