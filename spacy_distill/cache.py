"""The teacher cache: a text is never scored twice by the same teacher.

Content-addressed on (teacher fingerprint, text) in an SQLite file (the standard library's
`sqlite3`, in WAL mode so that several annotate processes, e.g. shards on one machine, can
share it). Every batch is committed as soon as the teacher has scored it, so a run killed at
any point loses at most the batch in flight, and the next run only scores what is missing.
A changed prompt, model or label map is a new fingerprint: new entries, not an error.
"""
import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy

DEFAULT_CACHE_ENV = "SPACY_DISTILL_CACHE"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS teacher_scores (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    n_labels INTEGER NOT NULL,
    scores BLOB NOT NULL,
    created REAL NOT NULL
)
"""


def default_cache_path() -> Path:
    """$SPACY_DISTILL_CACHE, else ~/.cache/spacy-distill/teacher_cache.sqlite."""
    env = os.environ.get(DEFAULT_CACHE_ENV)
    if env:
        return Path(env)
    return Path.home() / ".cache" / "spacy-distill" / "teacher_cache.sqlite"


def cache_key(fingerprint: str, text: str) -> str:
    return hashlib.sha256(f"{fingerprint}\x00{text}".encode("utf8")).hexdigest()


class TeacherCache:
    """Teacher scores by (fingerprint, text), persisted in SQLite."""

    def __init__(self, path: Union[str, Path]):
        """
        path (Union[str, Path]): the SQLite file (created with its folder if missing).
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A long timeout: concurrent shards wait for each other's commits instead of failing.
        self._db = sqlite3.connect(str(self.path), timeout=120)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def get_many(self, fingerprint: str, texts: Sequence[str], n_labels: int) -> Dict[int, numpy.ndarray]:
        """Cached scores for texts, by position in `texts` (missing texts are left out)."""
        keys = [cache_key(fingerprint, text) for text in texts]
        found: Dict[str, numpy.ndarray] = {}
        for start in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, n_labels, scores FROM teacher_scores WHERE key IN ({marks})", chunk
            )
            for key, stored_n_labels, blob in rows:
                if stored_n_labels == n_labels:
                    found[key] = numpy.frombuffer(blob, dtype="float32").copy()
        return {i: found[key] for i, key in enumerate(keys) if key in found}

    def put_many(self, fingerprint: str, texts: Sequence[str], scores: numpy.ndarray) -> None:
        """Store the scores of texts and commit."""
        scores = numpy.asarray(scores, dtype="float32")
        now = time.time()
        rows = [
            (cache_key(fingerprint, text), fingerprint, scores.shape[1], row.tobytes(), now)
            for text, row in zip(texts, scores)
        ]
        self._db.executemany("INSERT OR REPLACE INTO teacher_scores VALUES (?, ?, ?, ?, ?)", rows)
        self._db.commit()

    def count(self, fingerprint: Optional[str] = None) -> int:
        """The number of cached entries (of one teacher, if given)."""
        if fingerprint is None:
            return self._db.execute("SELECT COUNT(*) FROM teacher_scores").fetchone()[0]
        query = "SELECT COUNT(*) FROM teacher_scores WHERE fingerprint = ?"
        return self._db.execute(query, (fingerprint,)).fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "TeacherCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CachedScorer:
    """Scores texts through the cache: hits come from SQLite, misses from the teacher."""

    def __init__(self, teacher, cache: Optional[TeacherCache]):
        self.teacher = teacher
        self.cache = cache
        self.fingerprint = teacher.fingerprint
        self.n_labels = len(teacher.labels)
        self.hits = 0
        self.misses = 0

    def score(self, texts: List[str]) -> numpy.ndarray:
        """Scores (len(texts), n_labels): cached where possible, the rest from the teacher."""
        if self.cache is None:
            self.misses += len(texts)
            return numpy.asarray(self.teacher.score(texts), dtype="float32")
        cached = self.cache.get_many(self.fingerprint, texts, self.n_labels)
        scores = numpy.zeros((len(texts), self.n_labels), dtype="float32")
        for i, row in cached.items():
            scores[i] = row
        missing = [i for i in range(len(texts)) if i not in cached]
        self.hits += len(cached)
        self.misses += len(missing)
        if missing:
            fresh = numpy.asarray(self.teacher.score([texts[i] for i in missing]), dtype="float32")
            if fresh.shape != (len(missing), self.n_labels):
                return fresh  # the caller reports the bad shape
            finite = numpy.isfinite(fresh).all(axis=1)
            # Never cache a NaN: a fixed teacher must get the chance to score the text again.
            keep = [j for j in range(len(missing)) if finite[j]]
            if keep:
                self.cache.put_many(self.fingerprint, [texts[missing[j]] for j in keep], fresh[keep])
            scores[missing] = fresh
        return scores
