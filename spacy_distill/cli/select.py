from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ..errors import DistillError
from ._app import app, code_option, import_code, library_log_shown, option_flags, with_flags

STRATEGY_HELP = (
    "random, uncertainty (the student's margin), diversity (k-center over hashed character "
    "n-grams), hybrid (clusters x uncertainty, with class balance), or a registered selector "
    "(@spacy_distill_selectors), e.g. one your --code file registers"
)


@app.command("select")
def select_cli(
    pool: List[Path] = typer.Argument(
        ..., help="The unlabelled pool: JSONL/CSV files or folders of them (chunks)", exists=True
    ),
    output: Path = typer.Option(..., "--output", "-o", help="The JSONL to write the picks to"),
    budget: int = typer.Option(
        ..., "--budget", "-n", min=1, help="How many texts the teacher labels"
    ),
    strategy: str = typer.Option("random", "--strategy", "-s", help=STRATEGY_HELP),
    student: Optional[Path] = typer.Option(
        None,
        "--student",
        help="The current student (a trained pipeline), for uncertainty and hybrid",
    ),
    exclude: List[Path] = typer.Option(
        [],
        "--exclude",
        help="Texts never to pick: already labelled (JSONL/CSV, earlier selections, .spacy target "
        "files) and evaluation sets; repeatable",
        exists=True,
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed: the same inputs and seed give the same picks"
    ),
    dedupe: bool = typer.Option(
        True, "--dedupe/--no-dedupe", help="Leave out exact duplicates of earlier pool texts"
    ),
    near_duplicates: bool = typer.Option(
        True, "--near-duplicates/--exact-only", help="With --dedupe, also near-duplicates (MinHash)"
    ),
    threshold: float = typer.Option(
        0.8,
        "--threshold",
        min=0.0,
        max=1.0,
        help="Near-duplicate similarity (estimated Jaccard of character 3-grams)",
    ),
    on_error: str = typer.Option("fail", "--on-error", help="'fail' or 'skip' bad records"),
    code: Optional[Path] = code_option("selector"),
):
    """Pick the texts of an unlabelled pool that the teacher should label next, within a budget.

    Exact and near-duplicates and the --exclude texts are left out first, so the teacher never
    pays twice for one message. The picks are written in priority order, each with why it was
    picked ("select": rank, strategy, score, reason); annotate them with `spacy-distill
    annotate`. The duplicates go beside them (<output stem>.duplicates.jsonl), each naming the
    text it repeats.
    """
    from ..select import select_pool

    if code is not None:
        import_code(code)
    flags = {
        **option_flags(
            "budget", "strategy", "student", "exclude", "seed", "threshold", "on_error", "output"
        ),
        "pool": "POOL",
    }
    try:
        with library_log_shown(rewrite=lambda text: with_flags(text, flags)):
            summary = select_pool(
                pool,
                output,
                budget,
                strategy=strategy,
                student=student,
                exclude=exclude,
                seed=seed,
                dedupe=dedupe,
                near_duplicates=near_duplicates,
                threshold=threshold,
                on_error=on_error,
                show_progress=True,
            )
    except DistillError as err:
        msg.fail(with_flags(str(err), flags), exits=1)
    for error in summary.errors:
        msg.warn(f"Skipped: {error}")
    for warning in summary.warnings:
        msg.warn(with_flags(warning, flags))
    msg.info(
        f"Read {summary.n_read} pool texts: {summary.n_excluded} excluded (labelled or evaluation "
        f"texts), {summary.n_duplicates} duplicates ({summary.n_exact_duplicates} exact), "
        f"{summary.n_candidates} candidates"
    )
    msg.good(
        f"Wrote {summary.n_selected} picks ({summary.strategy}, seed {summary.seed}) to "
        f"{summary.output} and the duplicates to {summary.duplicates} in {summary.seconds:.1f} s"
    )
