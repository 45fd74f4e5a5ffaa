"""The teacher cache: a text is never scored twice by the same teacher.

Content-addressed on (teacher fingerprint, text) in an SQLite file (the standard library's
`sqlite3`, in WAL mode so that several annotate processes, e.g. shards on one machine, can
share it). Every batch is committed as soon as the teacher has scored it, so a run killed at
any point loses at most the batch in flight, and the next run only scores what is missing.
A changed prompt, model or label map is a new fingerprint: new entries, not an error.

Every entry carries a checksum of its key and value: an entry altered on disk (a flipped
bit, an edited row) is not used but scored again and overwritten, with a warning naming the
cache file. Entries written before checksums existed have none and are scored again too (once;
trusting them would defeat the check). A file SQLite cannot read raises a `DistillError`
naming it. Teacher outputs can be private: the cache file (and its -wal/-shm/-journal files,
which SQLite creates with the database file's mode) is created 0600, and folders created for
it 0700; an existing file or folder keeps the mode its owner chose.
"""

import hashlib
import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy

from ..errors import DistillError, TeacherError
from ..teacher_protocol import Teacher, as_capable

logger = logging.getLogger(__name__)

DEFAULT_CACHE_ENV = "SPACY_DISTILL_CACHE"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS teacher_scores (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    n_labels INTEGER NOT NULL,
    scores BLOB NOT NULL,
    created REAL NOT NULL,
    extra TEXT,
    checksum TEXT
)
"""
# What a teacher built from a config answered (labels, fingerprint, ...), by a key of that config
# and its files (`teachers.loading.LazyTeacher`): a rerun answers them without building it.
_RECORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS teacher_records (
    key TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    created REAL NOT NULL,
    checksum TEXT NOT NULL
)
"""
_COLUMNS = "key, fingerprint, n_labels, scores, created, extra, checksum"
# Columns added after the first release: a cache written by an older version gets them on open.
_ADDED_COLUMNS = (("extra", "TEXT"), ("checksum", "TEXT"))


def default_cache_path() -> Path:
    """$SPACY_DISTILL_CACHE, else ~/.cache/spacy-distill/teacher_cache.sqlite."""
    env = os.environ.get(DEFAULT_CACHE_ENV)
    if env:
        return Path(env)
    return Path.home() / ".cache" / "spacy-distill" / "teacher_cache.sqlite"


def cache_key(fingerprint: str, text: str) -> str:
    return hashlib.sha256(f"{fingerprint}\x00{text}".encode("utf8")).hexdigest()


def entry_checksum(key: str, n_labels: int, scores: bytes, extra: Optional[str]) -> str:
    """A short digest of one entry. It guards against damage, not against an attacker (who
    could recompute it): the key is included, so a value moved to another text fails too."""
    digest = hashlib.blake2b(digest_size=8)
    parts = (
        key.encode("utf8"),
        str(n_labels).encode("ascii"),
        bytes(scores),
        (extra or "").encode("utf8"),
    )
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


class TeacherCache:
    """Teacher scores by (fingerprint, text), persisted in SQLite."""

    def __init__(self, path: Union[str, Path]):
        """
        path (Union[str, Path]): the SQLite file (created 0600, with its missing folders 0700).
        """
        self.path = Path(path)
        self._db: Optional[sqlite3.Connection] = None
        self._warned_unverified = False
        _create_private(self.path)
        with self._guard("open"):
            # A long timeout: concurrent shards wait for each other's commits instead of failing.
            self._db = sqlite3.connect(str(self.path), timeout=120)
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(_SCHEMA)
                self._db.execute(_RECORDS_SCHEMA)
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(teacher_scores)")}
                for name, kind in _ADDED_COLUMNS:
                    if name not in columns:
                        self._db.execute(f"ALTER TABLE teacher_scores ADD COLUMN {name} {kind}")
                self._db.commit()
            except sqlite3.Error:
                self._db.close()
                raise

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        # sqlite3's errors name neither the file nor a way out: every query goes through here.
        try:
            yield
        except sqlite3.Error as err:
            raise DistillError(_describe(self.path, doing, err)) from err

    def get_many(
        self, fingerprint: str, texts: Sequence[str], n_labels: int
    ) -> Dict[int, Tuple[numpy.ndarray, Optional[Dict[str, Any]]]]:
        """Cached (scores, extra) for texts, by position in `texts` (misses are left out; so
        are entries that fail their checksum, with a warning: the caller scores them again)."""
        keys = [cache_key(fingerprint, text) for text in texts]
        found: Dict[str, Tuple[numpy.ndarray, Optional[Dict[str, Any]]]] = {}
        n_damaged = n_unverified = 0
        with self._guard("read"):
            for start in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._connection.execute(
                    "SELECT key, n_labels, scores, extra, checksum FROM teacher_scores "
                    f"WHERE key IN ({marks})",
                    chunk,
                ).fetchall()
                for key, stored_n_labels, blob, extra, checksum in rows:
                    if stored_n_labels != n_labels:
                        continue
                    if checksum is None:
                        n_unverified += 1
                        continue
                    entry = _decode(key, n_labels, blob, extra, checksum)
                    if entry is None:
                        n_damaged += 1
                    else:
                        found[key] = entry
        if n_damaged:
            logger.warning(
                "%s: %d teacher cache entr%s failed %s checksum (altered or damaged on disk); "
                "they are scored again and overwritten",
                self.path,
                n_damaged,
                "y" if n_damaged == 1 else "ies",
                "its" if n_damaged == 1 else "their",
            )
        if n_unverified and not self._warned_unverified:
            self._warned_unverified = True
            logger.warning(
                "%s: teacher cache entries written by an older spacy-distill have no checksum; "
                "they are scored again (once) and stored with one",
                self.path,
            )
        return {i: found[key] for i, key in enumerate(keys) if key in found}

    def put_many(
        self,
        fingerprint: str,
        texts: Sequence[str],
        scores: numpy.ndarray,
        extras: Optional[Sequence[Optional[Dict[str, Any]]]] = None,
    ) -> None:
        """Store the scores (and per-text teacher details, JSON) of texts, and commit."""
        scores = numpy.asarray(scores, dtype="float32")
        extras = extras if extras is not None else [None] * len(texts)
        now = time.time()
        n_labels = int(scores.shape[1])
        rows = []
        for text, row, extra in zip(texts, scores, extras):
            key, blob = cache_key(fingerprint, text), row.tobytes()
            extra_json = None if extra is None else json.dumps(extra)
            checksum = entry_checksum(key, n_labels, blob, extra_json)
            rows.append((key, fingerprint, n_labels, blob, now, extra_json, checksum))
        with self._guard("write"):
            self._connection.executemany(
                f"INSERT OR REPLACE INTO teacher_scores ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._connection.commit()

    def teacher_record(self, key: str) -> Optional[Dict[str, Any]]:
        """What was recorded for a teacher under `key` (see `save_teacher_record`), or None when
        nothing was, or the entry fails its checksum (the caller then builds the teacher)."""
        with self._guard("read"):
            row = self._connection.execute(
                "SELECT record, checksum FROM teacher_records WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        record, checksum = row
        if not isinstance(record, str) or checksum != entry_checksum(key, 0, b"", record):
            logger.warning(
                "%s: the teacher record %s failed its checksum; the teacher is built again",
                self.path,
                key[:12],
            )
            return None
        try:
            found = json.loads(record)
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    def save_teacher_record(self, key: str, record: Dict[str, Any]) -> None:
        """Keep what a built teacher answered (JSON: labels, fingerprint, ...) under `key`, a
        hash of what it was built from, and commit."""
        record_json = json.dumps(record, sort_keys=True)
        checksum = entry_checksum(key, 0, b"", record_json)
        with self._guard("write"):
            self._connection.execute(
                "INSERT OR REPLACE INTO teacher_records (key, record, created, checksum) VALUES (?, ?, ?, ?)",
                (key, record_json, time.time(), checksum),
            )
            self._connection.commit()

    def count(self, fingerprint: Optional[str] = None) -> int:
        """The number of cached entries (of one teacher, if given)."""
        with self._guard("read"):
            if fingerprint is None:
                return self._connection.execute("SELECT COUNT(*) FROM teacher_scores").fetchone()[0]
            query = "SELECT COUNT(*) FROM teacher_scores WHERE fingerprint = ?"
            return self._connection.execute(query, (fingerprint,)).fetchone()[0]

    @property
    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise DistillError(f"{self.path}: the teacher cache is closed")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            with self._guard("close"):
                self._db.close()
            self._db = None

    def __enter__(self) -> "TeacherCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decode(
    key: str, n_labels: int, blob: Any, extra: Optional[str], checksum: str
) -> Optional[Tuple[numpy.ndarray, Optional[Dict[str, Any]]]]:
    # None: the entry is damaged (its checksum, length or JSON is off) and is a miss.
    if not isinstance(blob, bytes) or len(blob) != 4 * n_labels:
        return None
    if checksum != entry_checksum(key, n_labels, blob, extra):
        return None
    try:
        details = json.loads(extra) if extra else None
    except ValueError:
        return None
    return numpy.frombuffer(blob, dtype="float32").copy(), details


def _describe(path: Path, doing: str, err: sqlite3.Error) -> str:
    way_out = "use a different cache path (`cache`) or none (`cache=None`)"
    if isinstance(err, sqlite3.OperationalError):
        # Locks, permissions, a full disk: the file itself may be fine.
        hint = "another process may hold it locked, or its folder is not writable"
        return f"{path}: cannot {doing} the teacher cache ({err}); {hint}: fix that, or {way_out}"
    return (
        f"{path}: the teacher cache is damaged and cannot be read ({err}). Remove it (with its "
        f"-wal and -shm files, if any: it only saves teacher work, which the next run redoes), "
        f"or {way_out}"
    )


def _create_private(path: Path) -> None:
    # Only what is created here is made private: an existing (maybe shared) folder or file
    # keeps its mode. mkdir/open narrow the mode by the umask; chmod makes it exact.
    missing = []
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir(mode=0o700)
            except FileExistsError:  # another process made it first: its mode is not ours to set
                continue
            folder.chmod(0o700)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as err:
        raise DistillError(
            f"{path}: cannot create the teacher cache ({err}); use a different cache path (`cache`) "
            "or none (`cache=None`)"
        ) from err


class CachedScorer:
    """Scores texts through the cache: hits come from SQLite, misses from the teacher.

    Per-text teacher details travel with the scores: an ensemble's member distributions
    (`score_with_members`) are kept in the cache and in the targets.
    """

    def __init__(self, teacher: Teacher, cache: Optional[TeacherCache]):
        self.teacher = teacher
        self.cache = cache
        self.fingerprint = teacher.fingerprint
        self.n_labels = len(teacher.labels)
        self.hits = 0
        self.misses = 0

    def score(self, texts: List[str]) -> Tuple[numpy.ndarray, List[Optional[Dict[str, Any]]]]:
        """Scores (len(texts), n_labels) and per-text details (or None): cached where possible.

        A `TeacherError` from the teacher has its `index` made a position in `texts` (the
        teacher only saw the texts the cache lacked).
        """
        cached = self.cache.get_many(self.fingerprint, texts, self.n_labels) if self.cache else {}
        scores = numpy.zeros((len(texts), self.n_labels), dtype="float32")
        extras: List[Optional[Dict[str, Any]]] = [None] * len(texts)
        for i, (row, extra) in cached.items():
            scores[i], extras[i] = row, extra
        missing = [i for i in range(len(texts)) if i not in cached]
        self.hits += len(cached)
        self.misses += len(missing)
        if not missing:
            return scores, extras
        try:
            fresh, fresh_extras = self._score_with_teacher([texts[i] for i in missing])
        except TeacherError as err:
            index = err.index
            if index is not None:
                in_range = isinstance(index, (int, numpy.integer)) and 0 <= index < len(missing)
                # An index outside what the teacher was given cannot name a text.
                err.index = missing[index] if in_range else None
            raise
        if fresh.shape != (len(missing), self.n_labels):
            return fresh, extras  # the caller reports the bad shape
        scores[missing] = fresh
        for j, i in enumerate(missing):
            extras[i] = fresh_extras[j]
        if self.cache is not None:
            # Never cache a NaN: a fixed teacher must get the chance to score the text again.
            keep = [j for j in range(len(missing)) if numpy.isfinite(fresh[j]).all()]
            if keep:
                self.cache.put_many(
                    self.fingerprint,
                    [texts[missing[j]] for j in keep],
                    fresh[keep],
                    [fresh_extras[j] for j in keep],
                )
        return scores, extras

    def _score_with_teacher(self, texts: List[str]):
        return score_with_details(self.teacher, texts)


def score_with_details(
    teacher: Teacher, texts: List[str]
) -> Tuple[numpy.ndarray, List[Optional[Dict[str, Any]]]]:
    """A teacher's scores for texts (float32) and per-text details to keep (or None): an
    ensemble's member distributions. Every backend scores through this, so all keep the same."""
    fused, members = as_capable(teacher).score_with_members(texts)
    if not members:  # a single teacher: nothing but the scores to keep
        return numpy.asarray(fused, dtype="float32"), [None] * len(texts)
    extras: List[Optional[Dict[str, Any]]] = [
        {"members": {name: [float(p) for p in probs[i]] for name, probs in members.items()}}
        for i in range(len(texts))
    ]
    return numpy.asarray(fused, dtype="float32"), extras
