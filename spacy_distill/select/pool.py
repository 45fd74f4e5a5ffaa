"""The candidates of a selection: the pool's records that survive exclusion and dedupe, kept in
a spool on disk so that a strategy can read them as often as it needs in constant memory.

The pool is one or more JSONL/CSV files or folders of them (chunks, read in name order).
Records are read with `data.records.read_records`, so a malformed line is reported with its file
and line; `on_error="skip"` collects those reports instead of stopping.
"""

import pickle
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator, List, Optional, Sequence, Union

from ..data.records import Record, read_records
from ..errors import DistillError, RecordError

POOL_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")
# Records pickled together in the spool: few enough to stay small in memory.
SPOOL_BATCH = 1024

PathLike = Union[str, Path]


def pool_files(paths: Union[PathLike, Sequence[PathLike]], what: str = "pool") -> List[Path]:
    """The record files of `paths`: files as given, folders expanded to their JSONL/CSV files
    (sorted by name, so that chunks keep their order)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: List[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in POOL_SUFFIXES)
            if not found:
                raise DistillError(f"{path}: the {what} folder holds no JSONL or CSV files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DistillError(f"{path}: {what} file not found")
    if not files:
        raise DistillError(f"{what}: no files given")
    return files


def read_pool(files: Iterable[Path], on_error: str, errors: List[str]) -> Iterator[Record]:
    """The valid records of the files in order; a bad one raises (on_error "fail") or is
    described in `errors` ("skip")."""
    for path in files:
        for item in read_records(path):
            if isinstance(item, RecordError):
                if on_error == "fail":
                    raise item
                errors.append(str(item))
                continue
            yield item


def read_excluded(paths: Sequence[PathLike]) -> Iterator[Record]:
    """The records of the texts never to pick: JSONL/CSV records (a bad line stops the run with
    its file and line) or `.spacy` target files and folders of them (their docs' texts, with the
    id and line their provenance names)."""
    from spacy.vocab import Vocab

    from ..data.targets import USER_DATA_KEY, iter_target_files, read_targets

    for path in map(Path, paths):
        if path.suffix == ".spacy" or (path.is_dir() and any(path.glob("*.spacy"))):
            for target_file in iter_target_files(path):
                docs = read_targets(target_file, Vocab(), require_target=False)
                for i, doc in enumerate(docs, 1):
                    provenance = (doc.user_data.get(USER_DATA_KEY) or {}).get("provenance") or {}
                    doc_id = provenance.get("id")
                    yield Record(
                        text=doc.text,
                        labels=None,
                        multi_label=False,
                        id=None if doc_id is None else str(doc_id),
                        source=provenance.get("source") or str(target_file),
                        line=provenance.get("line") or i,
                    )
        else:
            yield from read_pool(pool_files(path, "exclude"), "fail", [])


class CandidateSpool:
    """Records written once and read back in the same order, any number of times."""

    def __init__(self) -> None:
        self._file: Optional[IO[bytes]] = tempfile.TemporaryFile(prefix="spacy-distill-pool-")
        self._batch: List[Record] = []
        self.n = 0
        self._sealed = False

    def add(self, record: Record) -> None:
        self._batch.append(record)
        self.n += 1
        if len(self._batch) >= SPOOL_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            pickle.dump(self._batch, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._batch = []

    def seal(self) -> None:
        """No more records: what follows reads them."""
        self._flush()
        self._file.flush()
        self._sealed = True

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Record]:
        if not self._sealed:
            raise RuntimeError("CandidateSpool: seal() before reading")
        self._file.seek(0)
        while True:
            try:
                batch = pickle.load(self._file)
            except EOFError:
                return
            yield from batch

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "CandidateSpool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["POOL_SUFFIXES", "CandidateSpool", "pool_files", "read_pool"]
