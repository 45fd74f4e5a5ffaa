"""Turn input records into a target file: scored by a teacher (`annotate`) or gold only (`convert`).

How a run goes is in `spacy_distill.annotation`; this module is its API.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Tuple, Union

import spacy

from ..arguments import check_int_argument
from ..data.records import read_records, split_errors
from ..data.targets import TeacherTarget, set_target
from ..errors import DistillError
from ..hidden.storage import HiddenRequest
from ..teacher_protocol import Teacher
from .cache import TeacherCache
from .inputs import (  # noqa: F401 (re-exported)
    ON_ERROR_CHOICES,
    RecordStream,
    check_record_labels,
    gold_cats,
    record_provenance,
)
from .run import (  # noqa: F401 (re-exported)
    DEFAULT_CHUNK_SIZE,
    LENGTH_BUCKET_BATCHES,
    SINGLE_FILE_WARN_DOCS,
    AnnotationRun,
    AnnotationSummary,
)
from .sinks import SingleFileSink, check_output_path, partial_path  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from ..backends.base import ScoringBackend


def annotate(
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    teacher: Teacher,
    *,
    lang: str = "en",
    on_error: str = "fail",
    limit: int = 0,
    cache: Optional[Union[str, Path, TeacherCache]] = None,
    shard: Optional[Tuple[int, int]] = None,
    show_progress: bool = True,
    eval_data: Sequence[Union[str, Path]] = (),
    hidden: Optional[HiddenRequest] = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    backend: Optional["ScoringBackend"] = None,
) -> AnnotationSummary:
    """Score the texts of a JSONL/CSV file with a teacher and write targets.

    The input is read once, as a stream: every record is checked before any teacher work, and
    the valid ones are kept in a temporary file on disk, so memory does not grow with the corpus
    when OUTPUT is a directory. What does not stop the run (skipped records, a warning) comes
    back in the summary; what a run that stops keeps is logged (`logging`, as a warning).

    input_path (Union[str, Path]): JSONL or CSV records (`text`, optional `label`/`labels`, `id`).
    output_path (Union[str, Path]): a `.spacy` target file (one DocBin, held in memory until
        written), or a directory to write `.spacy` chunks of `chunk_size` docs into (constant
        memory; a rerun resumes after the last complete chunk). See `spacy_distill.annotation.chunked`.
    teacher (Teacher): the teacher. A `teachers.loading.LazyTeacher` is built only if some
        text is not in the cache (or hidden states are asked for).
    lang (str): the language whose tokenizer makes the docs.
    on_error (str): "fail" stops at the first bad record, before the teacher runs; "skip"
        reports each bad record (file and line) in the summary's `errors` and leaves it out.
    limit (int): annotate only the first N good records (0: all).
    cache (Optional[Union[str, Path, TeacherCache]]): the teacher cache (an SQLite path or an
        open cache); None scores every text. A rerun after a crash scores only what is missing.
    shard (Optional[Tuple[int, int]]): (K, N): annotate only the K-th of N interleaved shares
        of the records (1-based), for N machines; `merge` joins the outputs.
    show_progress (bool): show a progress bar with rate and ETA.
    eval_data (Sequence[Union[str, Path]]): evaluation sets (JSONL/CSV or `.spacy`); the run
        stops, before the teacher runs, if an augmented text's parent or text is one of theirs.
    hidden (Optional[HiddenRequest]): also store the teacher's hidden states (doc and/or token
        level, optionally projected); the teacher must have `hidden_states`.
    chunk_size (int): docs per chunk file when OUTPUT is a directory.
    backend (Optional[ScoringBackend]): who runs the teacher on the texts the cache lacks, before
        the targets are written (e.g. `spacy_distill.backends.ray.RayBackend`); None: this
        process, batch by batch.
    RETURNS (AnnotationSummary): what was written, what was skipped, warnings, and cache hits.
    """
    return AnnotationRun(
        input_path,
        output_path,
        teacher,
        lang=lang,
        on_error=on_error,
        limit=limit,
        cache=cache,
        shard=shard,
        show_progress=show_progress,
        eval_data=eval_data,
        hidden=hidden,
        chunk_size=chunk_size,
        backend=backend,
    ).run()


def convert(
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    *,
    labels: Optional[Sequence[str]] = None,
    exclusive: Optional[bool] = None,
    lang: str = "en",
    on_error: str = "fail",
    limit: int = 0,
) -> AnnotationSummary:
    """Write gold-only records as a target file (no teacher): for teachers' training data,
    gold-only baselines, and evaluation sets.

    input_path (Union[str, Path]): JSONL or CSV records with `label` or `labels`.
    output_path (Union[str, Path]): the `.spacy` target file to write.
    labels (Optional[Sequence[str]]): the label set; None collects it from the records (sorted).
    exclusive (Optional[bool]): None: exclusive unless the records use `labels` lists.
    lang (str): the language whose tokenizer makes the docs.
    on_error (str): "fail" or "skip" (see `annotate`).
    limit (int): convert only the first N good records (0: all).
    RETURNS (AnnotationSummary): what was written and what was skipped.
    """
    check_int_argument("limit", limit, 0)
    if labels is None or exclusive is None:
        found, _ = split_errors(read_records(input_path))
        if labels is None:
            labels = sorted({label for record in found for label in (record.labels or ())})
        if exclusive is None:
            exclusive = not any(record.multi_label for record in found)
    labels = tuple(labels)
    if len(labels) < (2 if exclusive else 1):
        raise DistillError(f"{input_path}: found labels {list(labels)}; a classifier needs more")
    summary = AnnotationSummary(output=Path(output_path), labels=labels, exclusive=exclusive)
    nlp = spacy.blank(lang)
    with RecordStream(input_path, labels, exclusive, on_error=on_error, limit=limit) as records:
        records.check()
        summary.errors = records.errors
        sink = SingleFileSink(output_path)
        for record in records:
            target = TeacherTarget(
                labels=labels, exclusive=exclusive, provenance=record_provenance(record)
            )
            gold = gold_cats(record, labels)
            sink.add(set_target(nlp.make_doc(record.text), target, gold), gold is not None)
    sink.complete()
    summary.n_written, summary.n_gold = sink.n_docs, sink.n_gold
    return summary
