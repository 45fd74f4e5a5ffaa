"""Turn input records into a target file: scored by a teacher (`annotate`) or gold only (`convert`)."""
import sys
import tempfile
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
import spacy
from tqdm import tqdm
from wasabi import msg

from spacy.tokens import Doc

from .arguments import check_int_argument
from .cache import CachedScorer, TeacherCache
from .chunked import ChunkedTargetWriter, file_sha256, is_chunked_output, write_atomically
from .errors import DistillError, RecordError, TeacherError
from .hidden.storage import HiddenRequest
from .msgpack_codecs import cached_msgpack_codecs
from .records import Record, read_records, split_errors
from .shards import check_shard
from .targets import Provenance, TargetFileWriter, TeacherTarget, set_target
from .teachers.base import Teacher

if TYPE_CHECKING:
    from .backends.base import ScoringBackend

ON_ERROR_CHOICES = ("fail", "skip")
# Records are sorted by length within windows of this many batches.
LENGTH_BUCKET_BATCHES = 16
# Docs per chunk file of a directory OUTPUT: a few MB each for short texts.
DEFAULT_CHUNK_SIZE = 10_000
# Past this many docs, a single-file OUTPUT gets a warning (its DocBin is held in memory).
SINGLE_FILE_WARN_DOCS = 200_000


@dataclass
class AnnotationSummary:
    """What a run did: counts, the problems it reported, and where it wrote."""

    output: Path
    labels: Tuple[str, ...]
    exclusive: bool
    n_written: int = 0
    n_gold: int = 0
    errors: List[str] = field(default_factory=list)
    seconds: float = 0.0
    n_cache_hits: int = 0
    n_teacher: int = 0
    n_resumed: int = 0
    hidden: Optional[HiddenRequest] = None

    @property
    def n_skipped(self) -> int:
        return len(self.errors)


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

    The input is read as a stream (twice: once to check every record before any teacher work,
    once to annotate), so memory does not grow with the corpus when OUTPUT is a directory.

    input_path (Union[str, Path]): JSONL or CSV records (`text`, optional `label`/`labels`, `id`).
    output_path (Union[str, Path]): a `.spacy` target file (one DocBin, held in memory until
        written), or a directory to write `.spacy` chunks of `chunk_size` docs into (constant
        memory; a rerun resumes after the last complete chunk). See `spacy_distill.chunked`.
    teacher (Teacher): the teacher.
    lang (str): the language whose tokenizer makes the docs.
    on_error (str): "fail" stops at the first bad record, before the teacher runs; "skip"
        reports each bad record (file and line) and leaves it out.
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
    RETURNS (AnnotationSummary): what was written, what was skipped, and cache hits.
    """
    check_int_argument("limit", limit, 0)
    check_int_argument("chunk_size", chunk_size, 1)
    check_shard(shard)
    check_output_path(output_path)
    labels, exclusive = tuple(teacher.labels), bool(teacher.exclusive)
    batch_size = getattr(teacher, "batch_size", 32)
    check_int_argument("teacher.batch_size", batch_size, 1)
    summary, n_valid = _check_records(
        input_path, output_path, labels, exclusive, on_error, limit, eval_data
    )
    n_records = _shard_size(n_valid, shard)
    start = time.perf_counter()
    nlp = spacy.blank(lang)
    if hidden is not None:
        if backend is not None:
            raise DistillError("--hidden needs the plain backend: hidden states are not sent back by other backends")
        hidden.prepare(teacher, output_path)  # fails before any teacher work
        summary.hidden = hidden
    chunked = is_chunked_output(output_path)
    if not chunked and n_records > SINGLE_FILE_WARN_DOCS:
        msg.warn(
            f"{output_path}: one .spacy file holds all {n_records} docs in memory until it is "
            "written; give a directory as OUTPUT to write chunks in constant memory"
        )
    teacher_id = teacher.teacher_id
    # How the teacher scored (e.g. "logprobs" or "samples:k" for a server) goes in every target.
    method = getattr(teacher, "method", None)
    run_info = {"method": method} if isinstance(method, str) else {}
    own_cache = isinstance(cache, (str, Path))
    cache_obj = TeacherCache(cache) if own_cache else cache
    temp_cache = None
    if backend is not None and cache_obj is None:
        # A backend hands its scores back through a cache: a private one for this run.
        temp_cache = tempfile.TemporaryDirectory(prefix="spacy-distill-cache-")
        cache_obj = TeacherCache(Path(temp_cache.name) / "run.sqlite")
    # Where the scores of a stopped run survive (a private cache goes with the run).
    kept_cache = getattr(cache_obj, "path", None) if temp_cache is None else None
    scorer = CachedScorer(teacher, cache_obj)  # type: ignore[arg-type]
    sink: Optional[ChunkedTargetWriter] = None
    writer: Optional[TargetFileWriter] = None
    n_backend = 0
    try:
        if chunked:
            # Takes the directory's lock (refusing a second run at once) and checks that the
            # chunks already there belong to this run.
            sink = ChunkedTargetWriter(output_path, {
                "input": str(input_path), "input_sha256": file_sha256(input_path),
                "n_records": n_records, "chunk_size": chunk_size, "limit": limit,
                "shard": list(shard) if shard else None, "labels": list(labels),
                "exclusive": exclusive, "fingerprint": scorer.fingerprint, "lang": lang,
                "hidden": _hidden_settings(hidden),
            })
        else:
            writer = TargetFileWriter(output_path)
        records = _valid_records(input_path, labels, exclusive, limit, shard)
        chunks = _chunks(records, chunk_size if chunked else 0)
        # The targets' user data is packed per doc by srsly: see msgpack_codecs.
        with cached_msgpack_codecs():
            if backend is not None:
                todo = (
                    record.text for index, chunk in _chunks(
                        _valid_records(input_path, labels, exclusive, limit, shard), chunk_size if chunked else 0
                    ) if sink is None or not sink.is_done(index) for record in chunk
                )
                n_backend = backend.fill_cache(teacher, todo, scorer.cache, total=n_records, show_progress=show_progress)
            progress = tqdm(
                total=n_records,
                unit="doc",
                desc=f"annotate {Path(input_path).name}" if backend is None else "write targets",
                disable=not show_progress,
                file=sys.stderr,
            )
            try:
                for index, chunk in chunks:
                    if sink is not None:
                        if sink.is_done(index):
                            summary.n_resumed += len(chunk)
                            progress.update(len(chunk))
                            continue
                        sink.start(index)
                    for window in _batches(chunk, batch_size * LENGTH_BUCKET_BATCHES):
                        # Every new token string would stay in the vocab for good (memory that
                        # grows with the corpus); the DocBin keeps its own copy of the strings.
                        with nlp.memory_zone():
                            for doc, has_gold in _annotate_window(
                                window, scorer, teacher, labels, exclusive, batch_size, nlp, hidden,
                                run_info, teacher_id, on_error, summary, progress,
                            ):
                                if sink is not None:
                                    sink.add(doc, has_gold)
                                else:
                                    writer.add(doc)  # type: ignore[union-attr]
                                    summary.n_gold += has_gold
                    if sink is not None:
                        sink.finish()
                if sink is not None:
                    sink.complete()
                else:
                    write_atomically(output_path, writer.doc_bin.to_bytes())  # type: ignore[union-attr]
            finally:
                progress.close()
    except BaseException:
        if sink is not None:
            msg.warn(
                f"Stopped; {len(sink.chunks)} complete chunk(s) are kept in {sink.directory}: "
                "rerun the same command to resume after them"
            )
        elif writer is not None and len(writer):
            _save_partial(writer, kept_cache)
        raise
    finally:
        if sink is not None:
            sink.close()
        if (own_cache or temp_cache is not None) and scorer.cache is not None:
            scorer.cache.close()
        if temp_cache is not None:
            temp_cache.cleanup()
    if sink is not None:
        summary.n_written, summary.n_gold = sink.n_docs, sink.n_gold
    else:
        # What an earlier run that stopped kept is in OUTPUT now: a directory reader must not
        # read those docs twice.
        partial_path(output_path).unlink(missing_ok=True)
        summary.n_written = len(writer)  # type: ignore[arg-type]
    # Texts the backend scored come back through the cache: count them as teacher work.
    summary.n_cache_hits = scorer.hits - n_backend
    summary.n_teacher = scorer.misses + n_backend
    summary.seconds = time.perf_counter() - start
    return summary


def check_output_path(output_path: Union[str, Path]) -> None:
    """Fail at once, before any teacher is built or run, if OUTPUT cannot be written.

    A `.spacy` OUTPUT is written into its folder (created if missing), any other path is a
    directory of chunks: the folder, or the nearest existing folder above it, must be a
    directory this process can create files in (tried, not guessed from permission bits).

    output_path (Union[str, Path]): the `.spacy` file or the chunk directory.
    """
    path = Path(output_path)
    chunked = is_chunked_output(path)
    if chunked and path.exists() and not path.is_dir():
        raise DistillError(
            f"{path}: exists and is not a directory; OUTPUT is a .spacy file or a directory of chunks"
        )
    existing = path if chunked else path.parent
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise DistillError(f"{path}: cannot be written: {existing} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise DistillError(
            f"{path}: cannot be written ({err.strerror} in {existing}); give another output path"
        ) from None


def partial_path(output_path: Union[str, Path]) -> Path:
    """Where a single-file run that stopped keeps the docs it had done: `OUTPUT.partial.spacy`."""
    path = Path(output_path)
    return path.with_name(path.stem + ".partial.spacy")


def _save_partial(writer: TargetFileWriter, kept_cache: Optional[Path]) -> None:
    # Keep what is done; a failure here must not hide the error that stopped the run.
    partial = partial_path(writer.path)
    try:
        write_atomically(partial, writer.doc_bin.to_bytes())
    except Exception as err:
        where = (
            f"the teacher cache {kept_cache} keeps their scores, so a rerun does not score them again"
            if kept_cache is not None else "no teacher cache was used, so a rerun scores them again"
        )
        msg.warn(f"Stopped after {len(writer)} docs, but they could not be saved in {partial} ({err}); {where}")
        return
    msg.warn(f"Stopped after {len(writer)} docs; they are saved in {partial}")


def _hidden_settings(hidden: Optional[HiddenRequest]) -> Optional[Dict]:
    # What decides the hidden fields a chunk holds; a resume with other settings would mix them.
    if hidden is None:
        return None
    return {
        "level": hidden.level, "dims": hidden.dims, "reduction": hidden.reduction,
        "seed": hidden.seed, "source": hidden.source,
    }


def _annotate_window(
    window, scorer, teacher, labels, exclusive, batch_size, nlp, hidden, run_info, teacher_id,
    on_error, summary, progress,
) -> Iterator[Tuple[Doc, bool]]:
    window_scores, window_extras = _score_window(scorer, window, labels, batch_size, progress)
    window_docs = [nlp.make_doc(record.text) for record in window]
    window_hidden = [None] * len(window)
    if hidden is not None:
        try:
            window_hidden = hidden.fields(teacher, [record.text for record in window], window_docs)
        except TeacherError as err:
            raise _record_teacher_error(err, window) from err
    for record, row, extra, doc, hidden_field in zip(
        window, window_scores, window_extras, window_docs, window_hidden
    ):
        if not numpy.all(numpy.isfinite(row)):
            error = RecordError(
                f"{record.source}:{record.line}: the teacher returned NaN or inf "
                f"({dict(zip(labels, row.tolist()))})"
            )
            _handle(error, on_error, summary)
            continue
        target = TeacherTarget(
            labels=labels,
            exclusive=exclusive,
            scores=row,
            teacher_id=teacher_id,
            fingerprint=scorer.fingerprint,
            teacher_info={**run_info, **(extra or {})},
            provenance=record_provenance(record),
            hidden=hidden_field,
        )
        gold = gold_cats(record, labels)
        yield set_target(doc, target, gold), gold is not None


def _score_window(
    scorer: CachedScorer, window: List[Record], labels: Tuple[str, ...], batch_size: int, progress
) -> numpy.ndarray:
    # Length-bucketed batching: texts of similar length share a batch, so padded teachers
    # waste little compute; scores go back to input order.
    order = sorted(range(len(window)), key=lambda i: len(window[i].text))
    scores = numpy.zeros((len(window), len(labels)), dtype="float32")
    extras: List[Optional[Dict]] = [None] * len(window)
    for start in range(0, len(order), batch_size):
        batch_index = order[start : start + batch_size]
        batch = [window[i] for i in batch_index]
        batch_scores, batch_extras = _checked_scores(scorer, batch, labels)
        scores[batch_index] = batch_scores
        for i, extra in zip(batch_index, batch_extras):
            extras[i] = extra
        progress.update(len(batch))
    return scores, extras


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
    records, summary = _read_valid_records(input_path, output_path, labels, exclusive, on_error, limit)
    nlp = spacy.blank(lang)
    writer = TargetFileWriter(output_path)
    for record in records:
        target = TeacherTarget(
            labels=labels,
            exclusive=exclusive,
            provenance=record_provenance(record),
        )
        gold = gold_cats(record, labels)
        writer.add(set_target(nlp.make_doc(record.text), target, gold))
        summary.n_gold += gold is not None
    write_atomically(output_path, writer.doc_bin.to_bytes())
    summary.n_written = len(writer)
    return summary


def record_provenance(record: Record) -> Provenance:
    """Where a record came from; an augmented one also names its parent and how it was made."""
    return Provenance(
        id=record.id,
        source=record.source,
        line=record.line,
        parent=record.parent,
        method=record.method,
        params=record.params,
    )


def gold_cats(record: Record, labels: Sequence[str]) -> Optional[Dict[str, float]]:
    """The record's gold labels as cats over all labels, or None when it has none."""
    if record.labels is None:
        return None
    return {label: float(label in record.labels) for label in labels}


def check_record_labels(record: Record, labels: Sequence[str], exclusive: bool) -> Optional[RecordError]:
    """A RecordError if the record's gold labels do not fit the label set, else None."""
    if record.labels is None:
        return None
    unknown = [label for label in record.labels if label not in labels]
    if unknown:
        field_name = "labels" if record.multi_label else "label"
        return RecordError(
            f"{record.source}:{record.line}: field '{field_name}': unknown label(s) {unknown}; "
            f"the labels are {list(labels)}"
        )
    if exclusive and len(record.labels) != 1:
        return RecordError(
            f"{record.source}:{record.line}: field 'labels': {list(record.labels)} gives "
            f"{len(record.labels)} labels, but the classes are exclusive (one label per text)"
        )
    return None


def _read_valid_records(
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    labels: Tuple[str, ...],
    exclusive: bool,
    on_error: str,
    limit: int,
) -> Tuple[List[Record], AnnotationSummary]:
    # All records are checked before any teacher work, so "fail" never wastes a teacher run.
    if on_error not in ON_ERROR_CHOICES:
        raise DistillError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    summary = AnnotationSummary(output=Path(output_path), labels=labels, exclusive=exclusive)
    records: List[Record] = []
    for item in read_records(input_path):
        error = item if isinstance(item, RecordError) else check_record_labels(item, labels, exclusive)
        if error is not None:
            _handle(error, on_error, summary)
            continue
        records.append(item)  # type: ignore[arg-type]
        if limit and len(records) >= limit:
            break
    if not records:
        raise DistillError(f"{input_path}: no valid records to write")
    return records, summary


def _check_records(
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    labels: Tuple[str, ...],
    exclusive: bool,
    on_error: str,
    limit: int,
    eval_data: Sequence[Union[str, Path]],
) -> Tuple[AnnotationSummary, int]:
    # The first pass: every record is checked (and bad ones reported) before any teacher
    # work, so "fail" never wastes a teacher run; only counts are kept, not the records.
    if on_error not in ON_ERROR_CHOICES:
        raise DistillError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    summary = AnnotationSummary(output=Path(output_path), labels=labels, exclusive=exclusive)
    n_valid = 0

    def checked() -> Iterator[Record]:
        nonlocal n_valid
        for item in read_records(input_path):
            error = item if isinstance(item, RecordError) else check_record_labels(item, labels, exclusive)
            if error is not None:
                _handle(error, on_error, summary)
                continue
            n_valid += 1
            yield item  # type: ignore[misc]
            if limit and n_valid >= limit:
                break

    if eval_data:
        from .augment.leakage import check_records

        check_records(checked(), eval_data, str(input_path))
    else:
        for _ in checked():
            pass
    if not n_valid:
        raise DistillError(f"{input_path}: no valid records to write")
    return summary, n_valid


def _valid_records(
    input_path: Union[str, Path],
    labels: Tuple[str, ...],
    exclusive: bool,
    limit: int,
    shard: Optional[Tuple[int, int]],
) -> Iterator[Record]:
    # The second pass: the same records as the first one kept (errors were reported there).
    n_valid = 0
    for item in read_records(input_path):
        if isinstance(item, RecordError) or check_record_labels(item, labels, exclusive) is not None:
            continue
        n_valid += 1
        if shard is None or (n_valid - 1) % shard[1] == shard[0] - 1:
            yield item
        if limit and n_valid >= limit:
            break


def _shard_size(n_valid: int, shard: Optional[Tuple[int, int]]) -> int:
    if shard is None:
        return n_valid
    k, n = shard
    return len(range(k - 1, n_valid, n))


def _chunks(records: Iterator[Record], size: int) -> Iterator[Tuple[int, List[Record]]]:
    # size 0: one chunk that is never materialised as a whole (see _batches).
    if not size:
        yield 0, records  # type: ignore[misc]
        return
    for index, chunk in enumerate(_batches(records, size)):
        yield index, chunk


def _handle(error: RecordError, on_error: str, summary: AnnotationSummary) -> None:
    if on_error == "fail":
        raise RecordError(f"{error} (use --on-error skip to report and skip bad records)")
    msg.warn(f"Skipped: {error}")
    summary.errors.append(str(error))


def _checked_scores(scorer: CachedScorer, batch: List[Record], labels: Tuple[str, ...]):
    try:
        # The scorer makes a TeacherError's index a position in the texts it was given.
        scores, extras = scorer.score([record.text for record in batch])
    except TeacherError as err:
        raise _record_teacher_error(err, batch) from err
    if scores.shape != (len(batch), len(labels)):
        raise DistillError(
            f"Teacher {scorer.teacher.teacher_id} returned scores of shape {scores.shape} for "
            f"{len(batch)} texts and {len(labels)} labels (records from "
            f"{batch[0].source}:{batch[0].line})"
        )
    return scores, extras


def _record_teacher_error(err: TeacherError, records: List[Record]) -> TeacherError:
    # The teacher names a position in a length-sorted batch; the user needs the input record.
    index = err.index
    if isinstance(index, (int, numpy.integer)) and not isinstance(index, bool) and 0 <= index < len(records):
        where = _describe_record(records[index])
    elif len(records) == 1:
        where = _describe_record(records[0])
    else:
        lines = sorted((record.source, record.line) for record in records)
        (first_source, first_line), (last_source, last_line) = lines[0], lines[-1]
        where = f"one of {len(records)} records from {first_source}:{first_line} to {last_source}:{last_line}"
    return TeacherError(f"{where}: {err}")


def _describe_record(record: Record) -> str:
    where = f"{record.source}:{record.line}"
    return f"{where} (id {record.id!r})" if record.id is not None else where


def _batches(items: Iterable[Record], size: int) -> Iterator[List[Record]]:
    iterator = iter(items)
    while True:
        batch = list(islice(iterator, size))
        if not batch:
            return
        yield batch
