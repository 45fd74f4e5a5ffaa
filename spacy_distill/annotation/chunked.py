"""Target output written in chunks: a directory of `.spacy` files, in constant memory, resumable.

A directory OUTPUT of `annotate` holds `part-000000.spacy`, `part-000001.spacy`, ... Chunk K
holds the targets of the input records at positions [K * chunk_size, (K + 1) * chunk_size) of
the run's record stream (valid records, after `limit` and `shard`), so its content depends on
the input and the teacher only. Each chunk is written atomically (a `.tmp` file renamed), so a
chunk file that exists is complete. A rerun after a crash keeps the complete chunks, skips
their records without touching the teacher or the cache, and redoes the rest (where the cache
serves what the killed run scored): nothing is lost and nothing written twice.

`manifest.json` says which run the chunks belong to: the input's content (a SHA-256 of its
bytes, so an edit that keeps the file's size is seen too), the teacher's fingerprint and every
setting that decides what a chunk holds. A rerun that differs in any of them is refused rather
than mixed into the same directory. A run holds an exclusive lock on `annotate.lock` in the
directory while it writes, so a second run into the same directory is refused at once instead of
deleting the first one's temporaries; the operating system drops the lock when the process ends,
however it ends (a killed run never blocks the next one).

spaCy's `spacy.Corpus.v1` and our `spacy-distill.TargetCorpus.v1` both read such a directory as
one corpus, in chunk order (both sort the file names; the zero-padded names sort as numbers).
Our readers (`targets.iter_target_files`) leave out the scratch files of runs that stopped or are
running (`OUTPUT.partial.spacy`, `*.tmp`); see `is_scratch_file`.
"""

import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

from filelock import FileLock, Timeout
from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..data.files import write_atomically
from ..data.targets import TMP_SUFFIX, TargetFileWriter, is_scratch_file
from ..errors import DistillError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "spacy-distill.chunks.v1"
CHUNK_PATTERN = "part-{:06d}.spacy"
LOCK_NAME = "annotate.lock"
# The run settings that decide which record lands in which chunk, and what it holds. `input` is
# the path as given: every doc's provenance names it.
RUN_FIELDS = (
    "input",
    "input_sha256",
    "n_records",
    "chunk_size",
    "limit",
    "shard",
    "labels",
    "exclusive",
    "fingerprint",
    "lang",
    "hidden",
)


def is_chunked_output(path: Union[str, Path]) -> bool:
    """A `.spacy` path is one target file; anything else (an existing folder included) is a
    directory of chunks."""
    path = Path(path)
    return path.is_dir() or path.suffix != ".spacy"


class ChunkedTargetWriter:
    """Writes target docs to numbered `.spacy` chunk files, one DocBin in memory at a time.

    Holds the directory's lock from creation until `close()` (or the end of a `with` block).
    One of annotate's target sinks (`annotation.sinks.TargetSink`).
    """

    def __init__(self, directory: Union[str, Path], run: Dict[str, Any]) -> None:
        """
        directory (Union[str, Path]): the output directory (created if missing).
        run (Dict[str, Any]): the run settings (RUN_FIELDS); a directory written by a run with
            other settings is refused.
        """
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise DistillError(f"{self.directory}: exists and is not a directory of chunks")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.directory / LOCK_NAME))
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise DistillError(
                f"{self.directory}: another annotate run is writing into this directory (it "
                f"holds {LOCK_NAME}); wait for it to end, or give another output directory"
            ) from None
        try:
            # As it reads back from the manifest (tuples become lists), so that the two compare.
            self.run = json.loads(
                json.dumps({name: run.get(name) for name in RUN_FIELDS}, default=str)
            )
            self.chunks: Dict[str, Dict[str, int]] = {}
            self._open_manifest()
            # A chunk in flight when a run was killed (no other run can be writing: we hold the lock).
            for stale in self.directory.glob("*" + TMP_SUFFIX):
                stale.unlink()
        except BaseException:
            self.close()
            raise
        self._writer: Optional[TargetFileWriter] = None
        self._index: Optional[int] = None
        self._n_gold = 0

    def close(self) -> None:
        """Release the directory's lock (the files written stay)."""
        self._lock.release()

    def __enter__(self) -> "ChunkedTargetWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST_NAME

    def chunk_path(self, index: int) -> Path:
        return self.directory / CHUNK_PATTERN.format(index)

    def is_done(self, index: int) -> bool:
        """Whether chunk `index` was written completely (by this run or an earlier one)."""
        if not self.chunk_path(index).exists():
            return False
        if str(index) not in self.chunks:  # killed between the chunk and the manifest update
            self._count(index)
        return True

    def start(self, index: int) -> None:
        """Begin chunk `index`: the docs added next go into it."""
        self._writer = TargetFileWriter(self.chunk_path(index))
        self._index = index
        self._n_gold = 0

    def add(self, doc: Doc, has_gold: bool = False) -> None:
        assert self._writer is not None, "start() a chunk first"
        self._writer.add(doc)
        self._n_gold += has_gold

    def finish(self) -> None:
        """Write the current chunk (atomically) and note it in the manifest."""
        assert self._writer is not None and self._index is not None
        # An empty chunk (every record skipped) is written too: its file marks it as done.
        write_atomically(self.chunk_path(self._index), self._writer.doc_bin.to_bytes())
        self.chunks[str(self._index)] = {"n_docs": len(self._writer), "n_gold": self._n_gold}
        self._writer, self._index = None, None
        self._save_manifest(complete=False)

    def complete(self) -> None:
        """Mark the run as finished."""
        self._save_manifest(complete=True)

    def abort(self) -> str:
        """The run stopped: the complete chunks stay. RETURNS (str): what the user should know."""
        return (
            f"Stopped; {len(self.chunks)} complete chunk(s) are kept in {self.directory}: "
            "rerun the same command to resume after them"
        )

    @property
    def chunk_size(self) -> int:
        """Records per chunk (the last one may hold fewer)."""
        return int(self.run["chunk_size"])

    @property
    def n_docs(self) -> int:
        return sum(chunk["n_docs"] for chunk in self.chunks.values())

    @property
    def n_gold(self) -> int:
        return sum(chunk["n_gold"] for chunk in self.chunks.values())

    def _open_manifest(self) -> None:
        if not self.manifest_path.exists():
            leftovers = sorted(
                p.name for p in self.directory.glob("*.spacy") if not is_scratch_file(p)
            )
            if leftovers:
                raise DistillError(
                    f"{self.directory}: holds .spacy files ({', '.join(leftovers[:3])}) but no "
                    f"{MANIFEST_NAME}, so they are not chunks of this run; choose an empty directory"
                )
            self._save_manifest(complete=False)
            return
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf8"))
        except json.JSONDecodeError as err:
            raise DistillError(
                f"{self.manifest_path}: not valid JSON ({err.msg}); remove the directory to start over"
            ) from None
        if manifest.get("format") != MANIFEST_FORMAT:
            raise DistillError(
                f"{self.manifest_path}: field 'format': expected {MANIFEST_FORMAT!r}, got {manifest.get('format')!r}"
            )
        before_run = manifest.get("run", {})
        if "input_sha256" not in before_run:
            raise DistillError(
                f"{self.manifest_path}: written by an older spacy-distill that did not record the "
                "input's content, so a resume cannot tell whether the input changed; remove this "
                "directory to start over, or give another output directory"
            )
        for name in RUN_FIELDS:
            before, now = before_run.get(name), self.run[name]
            if before == now:
                continue
            if name == "input_sha256":
                raise DistillError(
                    f"{self.manifest_path}: the chunks here were written from other content of "
                    f"{before_run.get('input')} (sha256 {str(before)[:12]}..., now {now[:12]}...): "
                    "the input changed since, so resuming would mix old and new texts; remove this "
                    "directory to start over, or give another output directory"
                )
            raise DistillError(
                f"{self.manifest_path}: field 'run.{name}': the chunks here were written with "
                f"{before!r}, this run has {now!r}; use another output directory (or remove "
                "this one) rather than mixing two runs"
            )
        self.chunks = dict(manifest.get("chunks", {}))

    def _count(self, index: int) -> None:
        from spacy.tokens import DocBin

        docs = list(
            DocBin(store_user_data=True).from_disk(self.chunk_path(index)).get_docs(Vocab())
        )
        self.chunks[str(index)] = {
            "n_docs": len(docs),
            "n_gold": sum(bool(doc.cats) for doc in docs),
        }

    def _save_manifest(self, complete: bool) -> None:
        manifest = {
            "format": MANIFEST_FORMAT,
            "run": self.run,
            "complete": complete,
            "n_docs": self.n_docs,
            "chunks": self.chunks,
        }
        write_atomically(self.manifest_path, (json.dumps(manifest, indent=1) + "\n").encode("utf8"))
