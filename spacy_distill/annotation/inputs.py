"""The input of a run: the valid records of a JSONL/CSV file, read and checked once.

`RecordStream.check` reads the file a single time, before any teacher work: every record is
checked against the label set (so that on_error "fail" never wastes a teacher run), counted
(the chunk manifest and the progress bar need the total), checked against the evaluation sets,
and the run's share of the valid records kept in a spool: an unnamed temporary file of pickled
records, so that memory does not grow with the corpus and the file vanishes with the process,
however it ends. Iterating the stream reads the spool, as many times as the run needs.
"""

import pickle
import tempfile
from itertools import islice
from pathlib import Path
from typing import IO, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from ..data.records import Record, read_records
from ..data.targets import Provenance
from ..errors import DistillError, RecordError

ON_ERROR_CHOICES = ("fail", "skip")
# Records pickled together in the spool: few enough to stay small in memory.
SPOOL_BATCH = 1024


class RecordStream:
    """The valid records of one input file (after `limit` and `shard`), for one run."""

    def __init__(
        self,
        path: Union[str, Path],
        labels: Sequence[str],
        exclusive: bool,
        *,
        on_error: str = "fail",
        limit: int = 0,
        shard: Optional[Tuple[int, int]] = None,
    ) -> None:
        """
        path (Union[str, Path]): JSONL or CSV records.
        labels (Sequence[str]): the label set gold labels must belong to.
        exclusive (bool): whether a record must have exactly one gold label.
        on_error (str): "fail" raises at the first bad record; "skip" collects it in `errors`.
        limit (int): keep only the first N valid records (0: all).
        shard (Optional[Tuple[int, int]]): (K, N): keep the K-th of N interleaved shares of the
            valid records (1-based).
        """
        check_on_error(on_error)
        self.path = Path(path)
        self.labels, self.exclusive = tuple(labels), exclusive
        self.on_error, self.limit, self.shard = on_error, limit, shard
        self.errors: List[str] = []
        self.n_valid = 0  # valid records read (all shares)
        self.n_records = 0  # this run's share of them
        self._spool: Optional[IO[bytes]] = None

    def check(self, eval_data: Sequence[Union[str, Path]] = ()) -> None:
        """Read and check the whole input, keeping this run's records (see the module docstring).

        eval_data (Sequence[Union[str, Path]]): evaluation sets; an augmented record whose parent
            or text is one of theirs raises a DistillError.
        """
        self.close()
        self.errors, self.n_valid, self.n_records = [], 0, 0
        self._spool = tempfile.TemporaryFile(prefix="spacy-distill-records-")
        batch: List[Record] = []
        valid = self._valid()
        if eval_data:
            from ..data.leakage import check_records

            check_records(self._kept(valid, batch), eval_data, str(self.path))
        for _ in self._kept(valid, batch):  # what the leakage check left unread, if anything
            pass
        self._write(batch)
        if not self.n_valid:
            raise DistillError(f"{self.path}: no valid records to write")

    def __iter__(self) -> Iterator[Record]:
        """The run's records, in input order (from the spool: `check` first)."""
        if self._spool is None:
            raise DistillError(f"{self.path}: the records were not checked yet (call `check`)")
        spool, offset = self._spool, 0
        while True:
            # Each iteration keeps its own offset: two may be open at once.
            spool.seek(offset)
            try:
                batch = pickle.load(spool)
            except EOFError:
                return
            offset = spool.tell()
            yield from batch

    def close(self) -> None:
        """Drop the spool."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def __enter__(self) -> "RecordStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def reject(self, error: RecordError) -> None:
        """A bad record: raise (on_error "fail") or keep its error (on_error "skip")."""
        if self.on_error == "fail":
            raise RecordError(f'{error} (use `on_error="skip"` to report and skip bad records)')
        self.errors.append(str(error))

    def _valid(self) -> Iterator[Record]:
        for item in read_records(self.path):
            error = (
                item
                if isinstance(item, RecordError)
                else check_record_labels(item, self.labels, self.exclusive)
            )
            if error is not None:
                self.reject(error)
                continue
            self.n_valid += 1
            yield item  # type: ignore[misc]
            if self.limit and self.n_valid >= self.limit:
                return

    def _kept(self, valid: Iterator[Record], batch: List[Record]) -> Iterator[Record]:
        # Every valid record passes through (the leakage check sees them all); the run's share
        # goes to the spool.
        for record in valid:
            if self.shard is None or (self.n_valid - 1) % self.shard[1] == self.shard[0] - 1:
                batch.append(record)
                self.n_records += 1
                if len(batch) >= SPOOL_BATCH:
                    self._write(batch)
            yield record

    def _write(self, batch: List[Record]) -> None:
        if batch:
            assert self._spool is not None
            self._spool.seek(0, 2)
            pickle.dump(batch, self._spool, protocol=pickle.HIGHEST_PROTOCOL)
            batch.clear()


def check_on_error(on_error: str) -> None:
    """Raise a DistillError unless `on_error` is one of ON_ERROR_CHOICES."""
    if on_error not in ON_ERROR_CHOICES:
        raise DistillError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")


def chunks(records: Iterable[Record], size: int) -> Iterator[Tuple[int, Iterable[Record]]]:
    """(index, records) per chunk of `size` records; size 0: one chunk of all records, never
    held in memory as a whole."""
    if not size:
        yield 0, records
        return
    yield from enumerate(batches(records, size))


def batches(items: Iterable[Record], size: int) -> Iterator[List[Record]]:
    """Lists of `size` items (the last may be shorter)."""
    iterator = iter(items)
    while True:
        batch = list(islice(iterator, size))
        if not batch:
            return
        yield batch


def check_record_labels(
    record: Record, labels: Sequence[str], exclusive: bool
) -> Optional[RecordError]:
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


def describe_record(record: Record) -> str:
    """The record's file and line, and its id if it has one."""
    where = f"{record.source}:{record.line}"
    return f"{where} (id {record.id!r})" if record.id is not None else where
