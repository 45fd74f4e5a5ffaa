import logging
from pathlib import Path
from typing import List, Optional

import typer
from spacy.cli._util import parse_config_overrides
from wasabi import msg

from ..annotation.annotate import DEFAULT_CHUNK_SIZE, annotate, check_output_path
from ..backends.base import BACKEND_CHOICES
from ..data.shards import parse_shard
from ..errors import DistillError
from ..hidden.storage import HiddenRequest
from ..teacher_protocol import as_capable
from ..teachers.loading import lazy_teacher
from ._app import (
    OVERRIDES_CONTEXT,
    app,
    cache_option,
    cache_path,
    code_option,
    import_code,
    library_log_shown,
    option_flags,
    progress_option,
    with_flags,
)


@app.command("annotate", context_settings=OVERRIDES_CONTEXT)
def annotate_cli(
    ctx: typer.Context,
    input_path: Path = typer.Argument(
        ..., help="JSONL or CSV: text, optional label/labels and id", exists=True, dir_okay=False
    ),
    output_path: Path = typer.Argument(
        ...,
        help="The .spacy target file to write, or a directory to write .spacy chunks into "
        "(constant memory; a rerun resumes)",
    ),
    teacher: str = typer.Option(
        ...,
        "--teacher",
        "-t",
        help="A teacher .cfg file with a [teacher] block, or a spaCy pipeline (name or path)",
    ),
    lang: str = typer.Option("en", "--lang", help="Language of the tokenizer that makes the docs"),
    on_error: str = typer.Option(
        "fail",
        "--on-error",
        help="A bad record: 'fail' (stop before the teacher runs) or 'skip' (report its line and skip it)",
    ),
    limit: int = typer.Option(
        0, "--limit", min=0, help="Annotate the first N records only (0: all)"
    ),
    cache: Optional[Path] = cache_option(),
    use_cache: bool = typer.Option(
        True,
        "--use-cache/--no-cache",
        help="Reuse and store teacher outputs (a rerun scores only what is missing)",
    ),
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        help="K/N: annotate the K-th of N interleaved shares (join outputs with `merge`)",
    ),
    code: Optional[Path] = code_option(),
    progress: bool = progress_option(),
    eval_data: Optional[List[Path]] = typer.Option(
        None,
        "--eval-data",
        help="An evaluation set (JSONL/CSV or .spacy; repeatable): refuse augmented texts "
        "whose parent or text is in it",
    ),
    hidden: Optional[str] = typer.Option(
        None,
        "--hidden",
        help="Also store the teacher's hidden states: doc (pooled), token (aligned to spaCy tokens) or both",
    ),
    hidden_dims: Optional[int] = typer.Option(
        None,
        "--hidden-dims",
        min=1,
        help="Reduce hidden states to K dims (a fixed projection, saved and reused)",
    ),
    hidden_reduction: str = typer.Option(
        "random",
        "--hidden-reduction",
        help="How --hidden-dims reduces: random (seeded Gaussian projection) or pca (fitted on the first texts)",
    ),
    hidden_projection: Optional[Path] = typer.Option(
        None,
        "--hidden-projection",
        help="The projection file (.npz): read if it exists, else written; default <output>.hidden-projection.npz",
    ),
    hidden_layer: Optional[int] = typer.Option(
        None,
        "--hidden-layer",
        help="The teacher's hidden layer (0: embeddings, -1: last; default: the teacher's)",
    ),
    hidden_last_k: Optional[int] = typer.Option(
        None, "--hidden-last-k", min=1, help="Average the teacher's last K hidden layers instead"
    ),
    hidden_pooling: Optional[str] = typer.Option(
        None,
        "--hidden-pooling",
        help="Doc-level pooling: mean, cls or last (default: the teacher's)",
    ),
    chunk_size: int = typer.Option(
        DEFAULT_CHUNK_SIZE,
        "--chunk-size",
        min=1,
        help="Docs per .spacy chunk when OUTPUT is a directory",
    ),
    backend: str = typer.Option(
        "plain",
        "--backend",
        help="Where the teacher runs: plain (this process) or ray (Ray Data batch inference on "
        "an actor pool; needs spacy-distill[ray])",
    ),
    ray_address: Optional[str] = typer.Option(
        None,
        "--ray-address",
        help="Ray cluster: auto, ray://host:10001 or host:6379; default (or 'local'): start a Ray on this machine",
    ),
    ray_actors: int = typer.Option(
        1, "--ray-actors", min=1, help="Teacher actors (model copies) in the Ray pool"
    ),
    ray_batch_size: Optional[int] = typer.Option(
        None,
        "--ray-batch-size",
        min=1,
        help="Texts per actor call (default: the teacher's batch size x 16)",
    ),
    ray_gpus: float = typer.Option(
        0.0, "--ray-gpus", min=0.0, help="GPUs per teacher actor (0: CPU; 0.5: two actors per GPU)"
    ),
    ray_cpus: float = typer.Option(1.0, "--ray-cpus", min=0.0, help="CPUs per teacher actor"),
):
    """Score texts with a teacher and write its outputs as training targets.

    Extra options override the teacher config, e.g. `--teacher.batch_size 8`.
    """
    overrides = parse_config_overrides(ctx.args)
    import_code(code)
    try:
        # A teacher can take minutes to load (or cost money to call): an OUTPUT that cannot be
        # written fails first.
        check_output_path(output_path)
        hidden_request = None
        if hidden is not None:
            hidden_request = HiddenRequest(
                hidden,
                dims=hidden_dims,
                reduction=hidden_reduction,
                projection_path=hidden_projection,
                layer=hidden_layer,
                last_k=hidden_last_k,
                pooling=hidden_pooling,
            )
        # Built only if some text is not cached yet: a rerun on a warm cache loads no model.
        teacher_obj = lazy_teacher(teacher, overrides, code=code)
        scoring_backend = None
        if backend == "ray":
            from ..backends.ray import RayBackend, TeacherSpec, import_ray

            import_ray()  # fails early, naming the extra
            scoring_backend = RayBackend(
                TeacherSpec(str(teacher), dict(overrides), str(code.resolve()) if code else None),
                address=ray_address,
                num_actors=ray_actors,
                batch_size=ray_batch_size,
                num_gpus=ray_gpus,
                num_cpus=ray_cpus,
            )
        elif backend != "plain":
            raise DistillError(f"--backend must be one of {list(BACKEND_CHOICES)}, got {backend!r}")
        # What the library logs as it goes (what a stopped run kept, damaged cache entries) is
        # shown as the command's own warnings.
        with library_log_shown(logging.WARNING, rewrite=annotate_message):
            summary = annotate(
                input_path,
                output_path,
                teacher_obj,
                lang=lang,
                on_error=on_error,
                limit=limit,
                cache=cache_path(cache, use_cache),
                shard=parse_shard(shard) if shard else None,
                show_progress=progress,
                eval_data=eval_data or (),
                hidden=hidden_request,
                chunk_size=chunk_size,
                backend=scoring_backend,
            )
    except (DistillError, OSError) as err:
        # An OSError names its file (a full disk while writing OUTPUT): a message, not a traceback.
        msg.fail(annotate_message(str(err)), exits=1)
    for error in summary.errors:
        msg.warn(f"Skipped: {error}")
    for warning in summary.warnings:
        msg.warn(annotate_message(warning))
    rate = summary.n_written / summary.seconds if summary.seconds else float("nan")
    msg.good(
        f"Wrote {summary.n_written} docs ({summary.n_gold} with gold) to {summary.output} "
        f"in {summary.seconds:.1f}s ({rate:.1f} texts/s); teacher {summary.teacher_id}, "
        f"labels {list(summary.labels)}"
    )
    msg.info(
        f"Teacher cache: {summary.n_cache_hits} hits, {summary.n_teacher} texts scored by the teacher"
    )
    if summary.n_resumed:
        msg.info(
            f"Resumed: {summary.n_resumed} records were in complete chunks of an earlier run and kept"
        )
    stats = as_capable(teacher_obj).stats()
    if stats:  # a teacher never built (every text cached) counted nothing
        msg.info(f"Teacher stats: {stats}")
    if summary.hidden is not None:
        request = summary.hidden
        projection = request.projection
        width = projection.dims if projection is not None else request.source.get("width")
        msg.info(
            f"Hidden states ({request.level}, width {width}, float16): "
            f"{request.bytes_per_doc:.0f} bytes per doc ({request.array_bytes_per_doc:.0f} of "
            f"them arrays and masks), {request.n_bytes} in all; "
            f"{request.n_truncated} text(s) truncated by the teacher"
        )
        if projection is not None:
            where = request.projection_path or "not saved"
            msg.info(
                f"Hidden projection: {projection.method}, {projection.in_width} -> "
                f"{projection.dims} dims, fingerprint {projection.fingerprint[:12]} ({where})"
            )
    if summary.n_skipped:
        msg.warn(f"Skipped {summary.n_skipped} bad record(s), each reported above")


# The library's messages name its arguments (`name` or `name=value`); the user typed flags.
ARGUMENT_FLAGS = {
    **option_flags(
        "on_error",
        "hidden",
        "backend",
        "cache",
        "limit",
        "shard",
        "chunk_size",
        "lang",
        "eval_data",
    ),
    "output_path": "OUTPUT",
    "input_path": "INPUT",
}
# Argument values that are a flag of their own.
VALUE_FLAGS = {"cache=None": "--no-cache", "backend=None": "--backend plain"}


def annotate_message(message: str) -> str:
    """A library message with the arguments it names (`on_error="skip"`) as this command's
    flags (--on-error skip)."""
    return with_flags(message, ARGUMENT_FLAGS, VALUE_FLAGS)
