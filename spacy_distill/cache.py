"""The teacher cache: a text is never scored twice by the same teacher.

Content-addressed on (teacher fingerprint, text) in an SQLite file (the standard library's
`sqlite3`, in WAL mode so that several annotate processes, e.g. shards on one machine, can
share it). Every batch is committed as soon as the teacher has scored it, so a run killed at
any point loses at most the batch in flight, and the next run only scores what is missing.
A changed prompt, model or label map is a new fingerprint: new entries, not an error.
"""
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy

DEFAULT_CACHE_ENV = "SPACY_DISTILL_CACHE"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS teacher_scores (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    n_labels INTEGER NOT NULL,
    scores BLOB NOT NULL,
    created REAL NOT NULL,
    extra TEXT
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
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(teacher_scores)")}
        if "extra" not in columns:  # a cache written before per-text details were kept
            self._db.execute("ALTER TABLE teacher_scores ADD COLUMN extra TEXT")
        self._db.commit()

    def get_many(
        self, fingerprint: str, texts: Sequence[str], n_labels: int
    ) -> Dict[int, Tuple[numpy.ndarray, Optional[Dict[str, Any]]]]:
        """Cached (scores, extra) for texts, by position in `texts` (misses are left out)."""
        keys = [cache_key(fingerprint, text) for text in texts]
        found: Dict[str, Tuple[numpy.ndarray, Optional[Dict[str, Any]]]] = {}
        for start in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, n_labels, scores, extra FROM teacher_scores WHERE key IN ({marks})",
                chunk,
            )
            for key, stored_n_labels, blob, extra in rows:
                if stored_n_labels == n_labels:
                    scores = numpy.frombuffer(blob, dtype="float32").copy()
                    found[key] = (scores, json.loads(extra) if extra else None)
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
        rows = [
            (
                cache_key(fingerprint, text), fingerprint, scores.shape[1], row.tobytes(), now,
                None if extra is None else json.dumps(extra),
            )
            for text, row, extra in zip(texts, scores, extras)
        ]
        self._db.executemany(
            "INSERT OR REPLACE INTO teacher_scores VALUES (?, ?, ?, ?, ?, ?)", rows
        )
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
    """Scores texts through the cache: hits come from SQLite, misses from the teacher.

    Per-text teacher details travel with the scores: an ensemble's member distributions
    (`score_with_members`) are kept in the cache and in the targets.
    """

    def __init__(self, teacher, cache: Optional[TeacherCache]):
        self.teacher = teacher
        self.cache = cache
        self.fingerprint = teacher.fingerprint
        self.n_labels = len(teacher.labels)
        self.hits = 0
        self.misses = 0

    def score(self, texts: List[str]) -> Tuple[numpy.ndarray, List[Optional[Dict[str, Any]]]]:
        """Scores (len(texts), n_labels) and per-text details (or None): cached where possible."""
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
        fresh, fresh_extras = self._score_with_teacher([texts[i] for i in missing])
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


def score_with_details(teacher, texts: List[str]) -> Tuple[numpy.ndarray, List[Optional[Dict[str, Any]]]]:
    """A teacher's scores for texts (float32) and per-text details to keep (or None): an
    ensemble's member distributions. Every backend scores through this, so all keep the same."""
    score_with_members = getattr(teacher, "score_with_members", None)
    if callable(score_with_members):
        fused, members = score_with_members(texts)
        extras = [
            {"members": {name: [float(p) for p in probs[i]] for name, probs in members.items()}}
            for i in range(len(texts))
        ]
        return numpy.asarray(fused, dtype="float32"), extras
    return numpy.asarray(teacher.score(texts), dtype="float32"), [None] * len(texts)
