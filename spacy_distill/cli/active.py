from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ..errors import DistillError
from ._app import (
    app,
    cache_option,
    cache_path,
    code_option,
    import_code,
    library_log_shown,
    option_flags,
    with_flags,
)
from .select import STRATEGY_HELP


@app.command("active")
def active_cli(
    pool: List[Path] = typer.Argument(
        ..., help="The unlabelled pool: JSONL/CSV files or folders of them", exists=True
    ),
    output_dir: Path = typer.Option(..., "--output", "-o", help="Folder for the rounds and report"),
    teacher: str = typer.Option(..., "--teacher", "-t", help="Teacher .cfg or spaCy pipeline"),
    budget: int = typer.Option(..., "--budget", "-n", min=1, help="Teacher calls in all"),
    dev: Path = typer.Option(
        ..., "--dev", help="Development target file (spacy train scores on it)", exists=True
    ),
    test: Path = typer.Option(
        ...,
        "--test",
        help="Test set: JSONL/CSV with gold, or a target file (with the teacher's outputs: retention too)",
        exists=True,
    ),
    rounds: int = typer.Option(
        4, "--rounds", min=1, help="Rounds: a random seed set, then selections"
    ),
    first: Optional[int] = typer.Option(
        None, "--first", min=1, help="Seed set size (default: budget / rounds)"
    ),
    strategy: str = typer.Option("hybrid", "--strategy", "-s", help=STRATEGY_HELP),
    config: Optional[Path] = typer.Option(
        None,
        "--config",
        help="Student training config (default: init-config --arch ARCH from round 0's targets)",
        exists=True,
    ),
    arch: str = typer.Option(
        "bow", "--arch", help="Student architecture when --config is not given"
    ),
    max_steps: int = typer.Option(
        1000, "--max-steps", min=1, help="Training steps when --config is not given"
    ),
    exclude: List[Path] = typer.Option(
        [], "--exclude", help="More texts never to label; repeatable", exists=True
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the selections and of training"),
    use_cache: bool = typer.Option(True, "--use-cache/--no-cache", help="Use the teacher cache"),
    cache: Optional[Path] = cache_option(),
    lang: str = typer.Option("en", "--lang", help="Language of the tokenizer"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write learning_curve.png"),
    code: Optional[Path] = code_option("teacher or selector"),
):
    """Budget-aware distillation in rounds: label a random seed set with the teacher, train a
    student, select what it most needs (--strategy), annotate (cache hits cost nothing), retrain,
    until --budget teacher calls are spent. Each round lands in OUTPUT/round_<i> (a rerun skips
    finished rounds); OUTPUT/report.md and learning_curve.png show quality against teacher calls.
    """
    from ..active.report import write_report
    from ..active.rounds import run_rounds
    from ..teachers.loading import lazy_teacher

    if code is not None:
        import_code(code)
    flags = {
        **option_flags(
            "budget",
            "rounds",
            "first",
            "strategy",
            "config",
            "arch",
            "max_steps",
            "exclude",
            "seed",
            "dev",
            "test",
        ),
        "output_dir": "--output",
        "pool": "POOL",
    }

    def show(result) -> None:
        scores = f"macro-F1 {result.macro_f1:.4f}" if result.macro_f1 is not None else ""
        if result.retention is not None:
            scores += f", retention {result.retention:.4f}, agreement {result.agreement:.4f}"
        msg.info(
            f"Round {result.round} ({result.strategy}): {result.n_picked} picked, "
            f"{result.teacher_calls} teacher calls ({result.total_teacher_calls} in all), {scores}"
        )

    settings = {
        "budget": budget,
        "rounds": rounds,
        "first": first,
        "strategy": strategy,
        "seed": seed,
        "arch": None if config else arch,
        "max_steps": None if config else max_steps,
    }
    try:
        with library_log_shown(rewrite=lambda text: with_flags(text, flags)):
            results = run_rounds(
                pool,
                output_dir,
                lazy_teacher(teacher),
                budget=budget,
                test=test,
                dev=dev,
                rounds=rounds,
                first=first,
                strategy=strategy,
                config=config,
                arch=arch,
                max_steps=max_steps,
                exclude=exclude,
                seed=seed,
                cache=cache_path(cache, use_cache),
                lang=lang,
                on_round=show,
            )
            write_report(results, output_dir, settings, plots=plots)
    except DistillError as err:
        msg.fail(with_flags(str(err), flags), exits=1)
    msg.good(f"Report: {output_dir / 'report.md'}; last student: {results[-1].student}")
