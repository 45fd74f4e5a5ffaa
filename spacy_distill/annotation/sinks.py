"""Where a run's target docs go: one `.spacy` file, or a directory of chunks (`chunked`).

Both are a `TargetSink`: the run hands docs over chunk by chunk and never asks which one it
writes to. A `.spacy` OUTPUT is one chunk of every record, written when the run completes (its
DocBin is held in memory until then); any other path is a directory of chunks written as they
fill, in constant memory (see `spacy_distill.annotation.chunked`).
"""

import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Protocol, Union

from spacy.tokens import Doc

from ..data.files import write_atomically
from ..data.targets import TargetFileWriter
from ..errors import DistillError
from .chunked import ChunkedTargetWriter, is_chunked_output


class TargetSink(Protocol):
    """Takes a run's docs chunk by chunk; `chunked.ChunkedTargetWriter` and `SingleFileSink`."""

    @property
    def chunk_size(self) -> int:
        """Records per chunk; 0: one chunk of all records."""
        ...

    @property
    def n_docs(self) -> int:
        """Docs written, by this run and the earlier runs it resumes."""
        ...

    @property
    def n_gold(self) -> int:
        """How many of them have gold labels."""
        ...

    def is_done(self, index: int) -> bool:
        """Whether chunk `index` is complete already (an earlier run wrote it)."""
        ...

    def start(self, index: int) -> None:
        """Begin chunk `index`."""
        ...

    def add(self, doc: Doc, has_gold: bool = False) -> None:
        """Add a target doc to the current chunk."""
        ...

    def finish(self) -> None:
        """End the current chunk."""
        ...

    def complete(self) -> None:
        """End the run: everything is written."""
        ...

    def abort(self) -> Optional[str]:
        """The run stopped: keep what was done. RETURNS (Optional[str]): what the user should
        know (where the work is kept), or None."""
        ...

    def close(self) -> None:
        """Release what the sink holds (the chunk directory's lock)."""
        ...


class SingleFileSink:
    """All docs in one `.spacy` file, written atomically when the run completes; a run that
    stops keeps what it did in `partial_path(path)`."""

    chunk_size = 0

    def __init__(self, path: Union[str, Path], scores_kept_in: Optional[Path] = None) -> None:
        """
        path (Union[str, Path]): the `.spacy` file.
        scores_kept_in (Optional[Path]): the teacher cache that keeps the run's scores, if any
            (named when the partial file cannot be saved).
        """
        self.writer = TargetFileWriter(path)
        self.scores_kept_in = scores_kept_in
        self.n_gold = 0

    @property
    def n_docs(self) -> int:
        return len(self.writer)

    def is_done(self, index: int) -> bool:
        return False

    def start(self, index: int) -> None:
        pass

    def add(self, doc: Doc, has_gold: bool = False) -> None:
        self.writer.add(doc)
        self.n_gold += has_gold

    def finish(self) -> None:
        pass

    def complete(self) -> None:
        write_atomically(self.writer.path, self.writer.doc_bin.to_bytes())
        # What an earlier run that stopped kept is in the output now: a directory reader must
        # not read those docs twice.
        partial_path(self.writer.path).unlink(missing_ok=True)

    def abort(self) -> Optional[str]:
        if not len(self.writer):
            return None
        # Keep what is done; a failure here must not hide the error that stopped the run.
        partial = partial_path(self.writer.path)
        try:
            write_atomically(partial, self.writer.doc_bin.to_bytes())
        except Exception as err:
            where = (
                f"the teacher cache {self.scores_kept_in} keeps their scores, so a rerun does not score them again"
                if self.scores_kept_in is not None
                else "no teacher cache was used, so a rerun scores them again"
            )
            return f"Stopped after {len(self.writer)} docs, but they could not be saved in {partial} ({err}); {where}"
        return f"Stopped after {len(self.writer)} docs; they are saved in {partial}"

    def close(self) -> None:
        pass


def open_sink(
    output_path: Union[str, Path],
    run: Callable[[], Dict[str, Any]],
    scores_kept_in: Optional[Path] = None,
) -> TargetSink:
    """The sink for OUTPUT: a `SingleFileSink` for a `.spacy` path, else a chunk directory.

    output_path (Union[str, Path]): the `.spacy` file or the chunk directory.
    run (Callable[[], Dict[str, Any]]): gives the run settings a chunk directory's manifest
        keeps (`chunked.RUN_FIELDS`; called for a directory only: it hashes the input).
        Opening the directory takes its lock (refusing a second run at once) and checks that
        the chunks already there belong to this run.
    scores_kept_in (Optional[Path]): see `SingleFileSink`.
    """
    if is_chunked_output(output_path):
        return ChunkedTargetWriter(output_path, run())
    return SingleFileSink(output_path, scores_kept_in)


def partial_path(output_path: Union[str, Path]) -> Path:
    """Where a single-file run that stopped keeps the docs it had done: `OUTPUT.partial.spacy`."""
    path = Path(output_path)
    return path.with_name(path.stem + ".partial.spacy")


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
            f"{path}: exists and is not a directory; `output_path` is a .spacy file or a directory of chunks"
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
