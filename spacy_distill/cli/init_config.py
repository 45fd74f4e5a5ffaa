from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ..data.targets import read_target_summary
from ..errors import DistillError
from ..training.student_config import (
    ARCHITECTURES,
    HIDDEN_LEVELS,
    HIDDEN_LOSSES,
    HIDDEN_PROJECTORS,
    VECTOR_ARCHITECTURES,
    choose_architecture,
    make_student_config,
)
from ._app import app, option_flags, positive, with_flags

# The arguments of make_student_config that this command passes from options of the same name.
ARGUMENT_FLAGS = option_flags(
    "arch",
    "factory",
    "hidden",
    "hidden_loss",
    "hidden_projector",
    "hidden_weight",
    "label_trust",
    "max_steps",
    "temperature",
    "alpha",
    "vectors",
    "width",
)


@app.command("init-config")
def init_config_cli(
    output_path: Path = typer.Argument(
        ..., help="The config file to write ('-' for stdout)", allow_dash=True
    ),
    train: Path = typer.Option(
        ..., "--train", help="Training target file (labels are read from it)", exists=True
    ),
    dev: Optional[Path] = typer.Option(
        None, "--dev", help="Development target file (default: --train)", exists=True
    ),
    arch: Optional[str] = typer.Option(
        None,
        "--arch",
        help=f"Student architecture: {', '.join(ARCHITECTURES)} (default, or an empty string: "
        "picked from the data and --vectors, and the choice explained)",
    ),
    vectors: Optional[Path] = typer.Option(
        None,
        "--vectors",
        help="Teacher-derived word vectors (`spacy-distill word-vectors`) for the static* students",
        exists=True,
        file_okay=False,
    ),
    width: Optional[int] = typer.Option(
        None,
        "--width",
        min=1,
        help="Embedding width of a static* student (default: the vectors' dims; 128 for "
        "static-subword*, 64 for the CNN ones)",
    ),
    factory: str = typer.Option(
        "distill",
        "--factory",
        help="'distill' (soft targets) or 'textcat' (spaCy's own, gold only: a baseline)",
    ),
    temperature: float = typer.Option(
        2.0, "--temperature", "-T", callback=positive, help="Distillation temperature T (> 0)"
    ),
    alpha: float = typer.Option(
        0.5, "--alpha", min=0.0, max=1.0, help="Weight of the teacher term for docs that have gold"
    ),
    lang: str = typer.Option("en", "--lang", help="Pipeline language"),
    max_steps: int = typer.Option(20000, "--max-steps", min=1, help="Training step budget"),
    hidden: Optional[str] = typer.Option(
        None,
        "--hidden",
        help=f"Add hidden-state distillation at this level ({', '.join(HIDDEN_LEVELS)}): a "
        "shared tok2vec and a training-only distill_hidden component (cnn/ensemble only)",
    ),
    hidden_loss: str = typer.Option(
        "mse", "--hidden-loss", help=f"Hidden-state loss: {', '.join(HIDDEN_LOSSES)}"
    ),
    hidden_weight: float = typer.Option(
        1.0, "--hidden-weight", min=0.0, help="Weight of the hidden-state loss"
    ),
    hidden_projector: str = typer.Option(
        "linear",
        "--hidden-projector",
        help=f"Mapping layer to the teacher's width: {', '.join(HIDDEN_PROJECTORS)}",
    ),
    label_trust: Optional[str] = typer.Option(
        None,
        "--label-trust",
        help="Trust the teacher per label (loss SoftTargetLoss.v2: alpha scaled by the trust "
        "of a doc's gold label): 'auto' (the teacher's F1 per label on the --dev docs with "
        "gold) or the JSON of `check-teacher --output`",
    ),
):
    """Write a complete student training config that `spacy train` runs unchanged."""
    try:
        if not arch:  # an empty --arch (a project var left empty) asks for the default too
            arch, why = choose_architecture(train, vectors)
            why = with_flags(why, ARGUMENT_FLAGS)
        else:
            why = "chosen with --arch"
            if vectors is not None and arch not in VECTOR_ARCHITECTURES:
                # A project passes the vectors it built whatever student its vars name.
                msg.warn(f"--arch {arch} does not use word vectors: --vectors {vectors} is ignored")
                vectors = None
        # On stderr: with '-' the config itself goes to stdout.
        typer.echo(f"Student: {arch} ({why})", err=True)
        config = make_student_config(
            train,
            dev,
            arch=arch,
            vectors=vectors,
            width=width,
            factory=factory,
            temperature=temperature,
            alpha=alpha,
            lang=lang,
            max_steps=max_steps,
            hidden=hidden,
            hidden_loss=hidden_loss,
            hidden_weight=hidden_weight,
            hidden_projector=hidden_projector,
            label_trust=label_trust or None,
        )
    except DistillError as err:
        msg.fail(with_flags(str(err), ARGUMENT_FLAGS), exits=1)
    if factory == "distill" and read_target_summary(train)["n_teacher"] == 0:
        msg.warn(
            f"{train}: no doc has teacher targets, so this student learns the gold labels alone "
            "(the distillation term is never used): annotate the texts with a teacher "
            "(`spacy-distill annotate`), or write a plain gold-only baseline with --factory textcat"
        )
    trust = config["components"]["textcat"].get("loss", {}).get("label_trust")
    if trust:
        typer.echo(
            f"Teacher trust per label (alpha scaled by it where a doc has gold): {dict(trust)}",
            err=True,
        )
    if str(output_path) == "-":
        print(config.to_str())
        return
    output_path.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(output_path)
    msg.good(
        f"Wrote {output_path}",
        f"Train it with: python -m spacy train {output_path} --output OUTPUT_DIR",
    )
