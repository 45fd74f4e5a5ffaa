"""Turn input records into a target file: scored by a teacher (`annotate`) or gold only (`convert`)."""
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy
import spacy
from tqdm import tqdm
from wasabi import msg

from .cache import CachedScorer, TeacherCache
from .errors import DistillError, RecordError
from .hidden.storage import HiddenRequest
from .records import Record, read_records, split_errors
from .shards import select_shard
from .targets import Provenance, TargetFileWriter, TeacherTarget, set_target
from .teachers.base import Teacher

ON_ERROR_CHOICES = ("fail", "skip")
# Records are sorted by length within windows of this many batches.
LENGTH_BUCKET_BATCHES = 16


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
) -> AnnotationSummary:
    """Score the texts of a JSONL/CSV file with a teacher and write a target file.

    input_path (Union[str, Path]): JSONL or CSV records (`text`, optional `label`/`labels`, `id`).
    output_path (Union[str, Path]): the `.spacy` target file to write.
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
    RETURNS (AnnotationSummary): what was written, what was skipped, and cache hits.
    """
    labels, exclusive = tuple(teacher.labels), bool(teacher.exclusive)
    records, summary = _read_valid_records(
        input_path, output_path, labels, exclusive, on_error, limit
    )
    if eval_data:
        from .augment.leakage import check_records

        check_records(records, eval_data, str(input_path))
    if shard is not None:
        records = select_shard(records, shard)
    start = time.perf_counter()
    nlp = spacy.blank(lang)
    if hidden is not None:
        hidden.prepare(teacher, output_path)  # fails before any teacher work
        summary.hidden = hidden
    writer = TargetFileWriter(output_path)
    teacher_id = teacher.teacher_id
    # How the teacher scored (e.g. "logprobs" or "samples:k" for a server) goes in every target.
    method = getattr(teacher, "method", None)
    run_info = {"method": method} if isinstance(method, str) else {}
    batch_size = max(1, int(getattr(teacher, "batch_size", 32)))
    own_cache = isinstance(cache, (str, Path))
    scorer = CachedScorer(teacher, TeacherCache(cache) if own_cache else cache)  # type: ignore[arg-type]
    progress = tqdm(
        total=len(records),
        unit="doc",
        desc=f"annotate {Path(input_path).name}",
        disable=not show_progress,
        file=sys.stderr,
    )
    try:
        for window in _batches(records, batch_size * LENGTH_BUCKET_BATCHES):
            window_scores, window_extras = _score_window(scorer, window, labels, batch_size, progress)
            window_docs = [nlp.make_doc(record.text) for record in window]
            window_hidden = (
                hidden.fields(teacher, [record.text for record in window], window_docs)
                if hidden is not None else [None] * len(window)
            )
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
                writer.add(set_target(doc, target, gold))
                summary.n_gold += gold is not None
    except BaseException:
        # Keep what is done (the cache keeps the scores too, so a rerun recomputes nothing).
        if len(writer):
            partial = writer.path.with_name(writer.path.stem + ".partial.spacy")
            writer.path = partial
            writer.write()
            msg.warn(f"Stopped after {len(writer)} docs; they are saved in {partial}")
        raise
    finally:
        progress.close()
        if own_cache and scorer.cache is not None:
            scorer.cache.close()
    writer.write()
    summary.n_written = len(writer)
    summary.n_cache_hits = scorer.hits
    summary.n_teacher = scorer.misses
    summary.seconds = time.perf_counter() - start
    return summary


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
    writer.write()
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


def _handle(error: RecordError, on_error: str, summary: AnnotationSummary) -> None:
    if on_error == "fail":
        raise RecordError(f"{error} (use --on-error skip to report and skip bad records)")
    msg.warn(f"Skipped: {error}")
    summary.errors.append(str(error))


def _checked_scores(scorer: CachedScorer, batch: List[Record], labels: Tuple[str, ...]):
    scores, extras = scorer.score([record.text for record in batch])
    if scores.shape != (len(batch), len(labels)):
        raise DistillError(
            f"Teacher {scorer.teacher.teacher_id} returned scores of shape {scores.shape} for "
            f"{len(batch)} texts and {len(labels)} labels (records from "
            f"{batch[0].source}:{batch[0].line})"
        )
    return scores, extras


def _batches(items: List[Record], size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
