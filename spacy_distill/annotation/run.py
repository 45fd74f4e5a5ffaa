"""One annotation run: records in, teacher scores through the cache, target docs out.

`AnnotationRun` holds what a run needs (the teacher, the cache, the record stream, the sink)
and goes through it in steps: open the cache and the teacher, check every record (one read of
the input), open the sink, let a backend fill the cache if there is one, then write the targets
chunk by chunk. Problems that do not stop the run come back in the summary (`errors`,
`warnings`); what a stopped run kept is logged (no summary comes back from an exception).
"""

import logging
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
import spacy
from spacy.tokens import Doc
from tqdm import tqdm

from ..arguments import check_int_argument
from ..data.files import file_sha256
from ..data.msgpack_codecs import cached_msgpack_codecs
from ..data.records import Record
from ..data.shards import check_shard
from ..data.targets import TeacherTarget, set_target
from ..errors import DistillError, RecordError, TeacherError
from ..hidden.storage import HiddenRequest
from ..teacher_protocol import Teacher, as_capable
from ..teachers.loading import LazyTeacher
from .cache import CachedScorer, TeacherCache
from .inputs import (
    RecordStream,
    batches,
    check_on_error,
    chunks,
    describe_record,
    gold_cats,
    record_provenance,
)
from .sinks import TargetSink, check_output_path, open_sink

if TYPE_CHECKING:
    from ..backends.base import ScoringBackend

logger = logging.getLogger(__name__)

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
    """The bad records skipped (file, line and what is wrong)."""
    warnings: List[str] = field(default_factory=list)
    """Anything else worth telling (e.g. a single-file OUTPUT too large for memory)."""
    seconds: float = 0.0
    n_cache_hits: int = 0
    n_teacher: int = 0
    n_resumed: int = 0
    hidden: Optional[HiddenRequest] = None
    teacher_id: str = ""

    @property
    def n_skipped(self) -> int:
        return len(self.errors)


class AnnotationRun:
    """One run of `spacy_distill.annotation.annotate.annotate` (see there for the arguments)."""

    def __init__(
        self,
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
    ) -> None:
        check_int_argument("limit", limit, 0)
        check_int_argument("chunk_size", chunk_size, 1)
        check_shard(shard)
        check_on_error(on_error)
        check_output_path(output_path)
        if hidden is not None and backend is not None:
            raise DistillError(
                "`hidden` needs the plain backend (`backend=None`): other backends do not send hidden states back"
            )
        self.input_path, self.output_path = Path(input_path), Path(output_path)
        self.teacher, self.cache_arg = teacher, cache
        self.lang, self.on_error, self.limit, self.shard = lang, on_error, limit, shard
        self.show_progress, self.eval_data = show_progress, eval_data
        self.hidden, self.chunk_size, self.backend = hidden, chunk_size, backend
        self.model: Any = teacher  # what gives hidden states: the teacher itself, built

    def run(self) -> AnnotationSummary:
        """Annotate; RETURNS (AnnotationSummary): what was written, skipped, and cached."""
        with ExitStack() as stack:
            cache = self._open_cache(stack)
            self._open_teacher(cache)
            summary = AnnotationSummary(
                output=self.output_path, labels=self.labels, exclusive=self.exclusive
            )
            records = stack.enter_context(
                RecordStream(
                    self.input_path,
                    self.labels,
                    self.exclusive,
                    on_error=self.on_error,
                    limit=self.limit,
                    shard=self.shard,
                )
            )
            try:
                records.check(self.eval_data)  # before any teacher work
            finally:
                summary.errors = records.errors
            start = time.perf_counter()
            if self.hidden is not None:
                # Hidden states come from the model itself: build it, and fail before any work.
                self.model = (
                    self.teacher.build() if isinstance(self.teacher, LazyTeacher) else self.teacher
                )
                self.hidden.prepare(self.model, self.output_path)
                summary.hidden = self.hidden
            scorer = CachedScorer(self.teacher, cache)
            # Where the scores of a stopped run survive (a private cache goes with the run).
            kept = cache.path if cache is not None and self.cache_arg is not None else None
            sink = open_sink(self.output_path, lambda: self._manifest(records, scorer), kept)
            stack.callback(sink.close)
            if not sink.chunk_size and records.n_records > SINGLE_FILE_WARN_DOCS:
                summary.warnings.append(
                    f"{self.output_path}: one .spacy file holds all {records.n_records} docs in memory "
                    "until it is written; give a directory as `output_path` to write chunks in constant memory"
                )
            n_backend = self._fill_and_write(records, sink, scorer, summary)
        summary.n_written, summary.n_gold = sink.n_docs, sink.n_gold
        # Texts the backend scored come back through the cache: count them as teacher work.
        summary.n_cache_hits = scorer.hits - n_backend
        summary.n_teacher = scorer.misses + n_backend
        summary.teacher_id = self.capable.teacher_id
        summary.seconds = time.perf_counter() - start
        return summary

    def _open_teacher(self, cache: Optional[TeacherCache]) -> None:
        if isinstance(self.teacher, LazyTeacher):
            # Labels and fingerprint from the cache's record when it has one: a rerun whose
            # texts are all cached never loads the model.
            self.teacher.use_records(cache)
        self.capable = as_capable(self.teacher)
        self.labels, self.exclusive = tuple(self.capable.labels), bool(self.capable.exclusive)
        check_int_argument("teacher.batch_size", self.capable.batch_size, 1)

    def _fill_and_write(
        self,
        records: RecordStream,
        sink: TargetSink,
        scorer: CachedScorer,
        summary: AnnotationSummary,
    ) -> int:
        # RETURNS the number of texts a backend scored.
        try:
            # The targets' user data is packed per doc by srsly: see msgpack_codecs.
            with cached_msgpack_codecs():
                n_backend = self._fill_cache(records, sink, scorer)
                self._write(records, sink, scorer, summary)
            sink.complete()
        except BaseException:
            # No summary comes back from here: what was kept is logged.
            kept_note = sink.abort()
            if kept_note is not None:
                logger.warning(kept_note)
            raise
        return n_backend

    def _open_cache(self, stack: ExitStack) -> Optional[TeacherCache]:
        if isinstance(self.cache_arg, TeacherCache):
            return self.cache_arg  # the caller's: the caller closes it
        if self.cache_arg is not None:
            return stack.enter_context(TeacherCache(self.cache_arg))
        if self.backend is None:
            return None
        # A backend hands its scores back through a cache: a private one for this run.
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="spacy-distill-cache-"))
        return stack.enter_context(TeacherCache(Path(folder) / "run.sqlite"))

    def _manifest(self, records: RecordStream, scorer: CachedScorer) -> Dict[str, Any]:
        # What decides what a chunk holds (`chunked.RUN_FIELDS`).
        hidden = self.hidden
        return {
            "input": str(self.input_path),
            "input_sha256": file_sha256(self.input_path),
            "n_records": records.n_records,
            "chunk_size": self.chunk_size,
            "limit": self.limit,
            "shard": list(self.shard) if self.shard else None,
            "labels": list(self.labels),
            "exclusive": self.exclusive,
            "fingerprint": scorer.fingerprint,
            "lang": self.lang,
            "hidden": None
            if hidden is None
            else {
                "level": hidden.level,
                "dims": hidden.dims,
                "reduction": hidden.reduction,
                "seed": hidden.seed,
                "source": hidden.source,
            },
        }

    def _fill_cache(self, records: RecordStream, sink: TargetSink, scorer: CachedScorer) -> int:
        # The backend scores what the cache lacks; the targets are then written from the cache.
        if self.backend is None:
            return 0
        assert scorer.cache is not None
        todo = (
            record.text
            for index, chunk in chunks(records, sink.chunk_size)
            if not sink.is_done(index)
            for record in chunk
        )
        return self.backend.fill_cache(
            self.teacher,
            todo,
            scorer.cache,
            total=records.n_records,
            show_progress=self.show_progress,
        )

    def _write(
        self,
        records: RecordStream,
        sink: TargetSink,
        scorer: CachedScorer,
        summary: AnnotationSummary,
    ) -> None:
        nlp = spacy.blank(self.lang)
        window_size = self.capable.batch_size * LENGTH_BUCKET_BATCHES
        progress = tqdm(
            total=records.n_records,
            unit="doc",
            disable=not self.show_progress,
            file=sys.stderr,
            desc=f"annotate {self.input_path.name}" if self.backend is None else "write targets",
        )
        with progress:
            for index, chunk in chunks(records, sink.chunk_size):
                if sink.is_done(index):
                    n_kept = len(chunk)  # type: ignore[arg-type]
                    summary.n_resumed += n_kept
                    progress.update(n_kept)
                    continue
                sink.start(index)
                for window in batches(chunk, window_size):
                    # Every new token string would stay in the vocab for good (memory that
                    # grows with the corpus); the DocBin keeps its own copy of the strings.
                    with nlp.memory_zone():
                        for doc, has_gold in self._annotate_window(
                            window, nlp, scorer, records, progress
                        ):
                            sink.add(doc, has_gold)
                sink.finish()

    def _annotate_window(
        self, window: List[Record], nlp, scorer: CachedScorer, records: RecordStream, progress: tqdm
    ) -> Iterator[Tuple[Doc, bool]]:
        labels = self.labels
        scores, extras = self._score_window(window, scorer, progress)
        docs = [nlp.make_doc(record.text) for record in window]
        hidden_fields: List[Optional[Dict[str, Any]]] = [None] * len(window)
        if self.hidden is not None:
            try:
                hidden_fields = self.hidden.fields(
                    self.model, [record.text for record in window], docs
                )
            except TeacherError as err:
                raise record_teacher_error(err, window) from err
        # How the teacher scored (e.g. "logprobs" or "samples:k" for a server) goes in every target.
        method = self.capable.method
        run_info = {"method": method} if isinstance(method, str) else {}
        for record, row, extra, doc, hidden_field in zip(
            window, scores, extras, docs, hidden_fields
        ):
            if not numpy.all(numpy.isfinite(row)):
                records.reject(
                    RecordError(
                        f"{record.source}:{record.line}: the teacher returned NaN or inf "
                        f"({dict(zip(labels, row.tolist()))})"
                    )
                )
                continue
            target = TeacherTarget(
                labels=labels,
                exclusive=self.exclusive,
                scores=row,
                teacher_id=self.capable.teacher_id,
                fingerprint=scorer.fingerprint,
                teacher_info={**run_info, **(extra or {})},
                provenance=record_provenance(record),
                hidden=hidden_field,
            )
            gold = gold_cats(record, labels)
            yield set_target(doc, target, gold), gold is not None

    def _score_window(
        self, window: List[Record], scorer: CachedScorer, progress: tqdm
    ) -> Tuple[numpy.ndarray, List[Optional[Dict[str, Any]]]]:
        # Length-bucketed batching: texts of similar length share a batch, so padded teachers
        # waste little compute; scores go back to input order.
        batch_size = self.capable.batch_size
        order = sorted(range(len(window)), key=lambda i: len(window[i].text))
        scores = numpy.zeros((len(window), scorer.n_labels), dtype="float32")
        extras: List[Optional[Dict[str, Any]]] = [None] * len(window)
        for start in range(0, len(order), batch_size):
            batch_index = order[start : start + batch_size]
            batch = [window[i] for i in batch_index]
            try:
                # The scorer makes a TeacherError's index a position in the texts it was given.
                batch_scores, batch_extras = scorer.score([record.text for record in batch])
            except TeacherError as err:
                raise record_teacher_error(err, batch) from err
            if batch_scores.shape != (len(batch), scorer.n_labels):
                raise DistillError(
                    f"Teacher {self.capable.teacher_id} returned scores of shape "
                    f"{batch_scores.shape} for {len(batch)} texts and {scorer.n_labels} labels "
                    f"(records from {batch[0].source}:{batch[0].line})"
                )
            scores[batch_index] = batch_scores
            for i, extra in zip(batch_index, batch_extras):
                extras[i] = extra
            progress.update(len(batch))
        return scores, extras


def record_teacher_error(err: TeacherError, records: List[Record]) -> TeacherError:
    """The teacher names a position in a length-sorted batch; the user needs the input record."""
    index = err.index
    if (
        isinstance(index, (int, numpy.integer))
        and not isinstance(index, bool)
        and 0 <= index < len(records)
    ):
        where = describe_record(records[index])
    elif len(records) == 1:
        where = describe_record(records[0])
    else:
        lines = sorted((record.source, record.line) for record in records)
        (first_source, first_line), (last_source, last_line) = lines[0], lines[-1]
        where = f"one of {len(records)} records from {first_source}:{first_line} to {last_source}:{last_line}"
    return TeacherError(f"{where}: {err}")
