from pathlib import Path
from typing import Any, Dict, List, Optional

import typer
from spacy.cli._util import parse_config_overrides
from wasabi import msg

from ..errors import DistillError
from ..teachers.loading import load_teacher
from ..vectors.build import DEFAULT_DIMS, build_word_vectors, build_word_vectors_from_token_states
from ..vectors.reduce import DEFAULT_SIF_COEFFICIENT, WEIGHTINGS
from ..vectors.subwords import DEFAULT_BUCKETS, DEFAULT_MAX_N, DEFAULT_MIN_N
from ..vectors.vocabulary import WORD_ATTRS
from ._app import (
    OVERRIDES_CONTEXT,
    app,
    cache_option,
    cache_path,
    code_option,
    import_code,
    option_flags,
    positive,
    progress_option,
    with_flags,
)

# Arguments that library messages name, as this command's flags.
WORD_VECTOR_FLAGS = option_flags(
    "teacher_vocab", "dims", "attr", "min_count", "max_words", "layer", "pooling"
)


@app.command("word-vectors", context_settings=OVERRIDES_CONTEXT)
def word_vectors_cli(
    ctx: typer.Context,
    output_path: Path = typer.Argument(
        ..., help="The folder to write (words.json, vectors.npy, meta.json)"
    ),
    teacher: Optional[str] = typer.Option(
        None,
        "--teacher",
        "-t",
        help="A teacher .cfg file (with a teacher block), or a spaCy pipeline with a spacy-transformers transformer",
    ),
    from_token_states: bool = typer.Option(
        False,
        "--from-token-states",
        help="Average each word's in-context token states stored in the --data files (annotate "
        "--hidden token|both) instead of encoding words alone with --teacher: no teacher call",
    ),
    data: List[Path] = typer.Option(
        ...,
        "--data",
        help="A .spacy target file whose words get vectors (repeatable: train, dev)",
        exists=True,
        dir_okay=False,
    ),
    dims: int = typer.Option(
        DEFAULT_DIMS, "--dims", min=1, help="PCA dimensions (a student may use a prefix of them)"
    ),
    attr: str = typer.Option(
        "lower", "--attr", help=f"How words are keyed: {', '.join(WORD_ATTRS)}"
    ),
    min_count: int = typer.Option(1, "--min-count", min=1, help="Drop words seen fewer times"),
    max_words: int = typer.Option(
        0, "--max-words", min=0, help="Keep the N most frequent words (0: all)"
    ),
    weighting: str = typer.Option(
        "sif", "--weighting", help=f"Frequency weighting: {', '.join(WEIGHTINGS)}"
    ),
    sif_coefficient: float = typer.Option(
        DEFAULT_SIF_COEFFICIENT,
        "--sif-coefficient",
        callback=positive,
        help="a in a / (a + p(word)), > 0",
    ),
    layer: Optional[int] = typer.Option(
        None, "--layer", help="Teacher hidden layer (default: the teacher's own)"
    ),
    pooling: Optional[str] = typer.Option(
        None,
        "--pooling",
        help="Pooling over a word's pieces: mean, cls or last (default: the teacher's own)",
    ),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Words per teacher call"),
    teacher_vocab: bool = typer.Option(
        False,
        "--teacher-vocab/--no-teacher-vocab",
        help="Also embed the whole words of the teacher tokenizer's vocabulary (e.g. ~22,000 "
        "for BERT's): words the data never showed get the teacher's vectors (--teacher only)",
    ),
    subwords: int = typer.Option(
        DEFAULT_BUCKETS,
        "--subwords",
        min=0,
        help="Hashed character n-gram vectors to fit to the word vectors: the unseen-word "
        "fallback of the static-subword students (0: none)",
    ),
    ngrams: str = typer.Option(
        f"{DEFAULT_MIN_N}-{DEFAULT_MAX_N}",
        "--ngrams",
        help="Character n-gram sizes MIN-MAX (word edges included)",
    ),
    cache: Optional[Path] = cache_option(),
    use_cache: bool = typer.Option(
        True, "--use-cache/--no-cache", help="Reuse and store word encodings"
    ),
    lang: str = typer.Option("en", "--lang", help="Language of the data files"),
    code: Optional[Path] = code_option(),
    progress: bool = progress_option(),
):
    """Teacher-derived word vectors for static-embedding students (init-config --vectors).

    Extra options override the teacher config, e.g. `--teacher.batch_size 8`.
    """
    overrides = parse_config_overrides(ctx.args)
    import_code(code)
    if from_token_states == (teacher is not None):
        msg.fail(
            "Pass either --teacher (encode each word alone) or --from-token-states (average the stored "
            "in-context token states of the --data files)",
            exits=1,
        )
    try:
        min_n, max_n = (int(n) for n in ngrams.split("-"))
    except ValueError:
        msg.fail(f"--ngrams must look like 3-5, got {ngrams!r}", exits=1)
    if from_token_states and teacher_vocab:
        msg.fail(
            "--teacher-vocab needs --teacher (its tokenizer's words are encoded by it)", exits=1
        )
    # The settings both ways of building share.
    settings: Dict[str, Any] = dict(
        dims=dims,
        attr=attr,
        min_count=min_count,
        max_words=max_words or None,
        weighting=weighting,
        sif_coefficient=sif_coefficient,
        lang=lang,
        show_progress=progress,
        subword_buckets=subwords,
        min_n=min_n,
        max_n=max_n,
    )
    if from_token_states:
        try:
            result = build_word_vectors_from_token_states(data, output_path, **settings)
        except DistillError as err:
            msg.fail(with_flags(str(err), WORD_VECTOR_FLAGS), exits=1)
        _report_written(result, output_path)
        msg.info(
            f"Averaged the token states of {result['n_docs']} docs ({result['vectors'].meta['teacher']['id']}); "
            f"{result['n_missing']} word types had no state (they start at the mean vector)"
        )
        _report_extras(result)
        return
    try:
        teacher_obj = load_teacher(teacher, overrides)
        result = build_word_vectors(
            teacher_obj,
            data,
            output_path,
            layer=layer,
            pooling=pooling,
            cache=cache_path(cache, use_cache),
            batch_size=batch_size,
            teacher_vocab=teacher_vocab,
            **settings,
        )
    except DistillError as err:
        msg.fail(with_flags(str(err), WORD_VECTOR_FLAGS), exits=1)
    _report_extras(result)
    rate = (
        result["n_encoded"] / result["seconds"]
        if result["seconds"] and result["n_encoded"]
        else float("nan")
    )
    _report_written(result, output_path)
    msg.info(
        f"Teacher {teacher_obj.teacher_id}: {result['n_encoded']} words encoded ({rate:.0f} words/s), "
        f"{result['n_cached']} from the cache"
    )


def _report_written(result, output_path: Path) -> None:
    vectors = result["vectors"]
    msg.good(
        f"Wrote {result['n_words']} word vectors ({vectors.dims} dims, {result['explained_variance']:.1%} "
        f"of the teacher's variance) to {output_path}"
    )


def _report_extras(result) -> None:
    if result.get("n_teacher_words"):
        msg.info(
            f"{result['n_teacher_words']} of the words come from the teacher's tokenizer vocabulary"
        )
    sub = result.get("subwords")
    if sub:
        msg.info(
            f"{sub['buckets']} character {sub['min_n']}-{sub['max_n']}-gram vectors fitted "
            f"({sub['buckets_used']} used); "
            f"the n-grams alone reconstruct {sub['r2']:.1%} of the word vectors' variance"
        )
