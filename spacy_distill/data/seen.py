"""A set of texts kept on disk: "seen before?" for millions of texts in constant memory.

`augment` drops a variant that repeats a seed or an earlier variant, and refuses seed ids that
repeat; over a large corpus those sets outgrow memory. `DiskSet` keeps a 16-byte BLAKE2b digest
of each text in an SQLite table in a temporary file (SQLite's own page cache bounds the
memory). A collision of two different texts needs about 2^64 texts, so a digest stands for its text.
"""

import hashlib
import sqlite3
import tempfile
from pathlib import Path
from typing import Iterable, Optional


class DiskSet:
    """A set of strings on disk, with `add` (True if new) and `in`."""

    def __init__(self, items: Iterable[str] = (), directory: Optional[str] = None) -> None:
        """
        items (Iterable[str]): strings to start with.
        directory (Optional[str]): where the temporary file goes (default: the system's).
        """
        self._dir = tempfile.TemporaryDirectory(prefix="spacy-distill-seen-", dir=directory)
        self._db = sqlite3.connect(str(Path(self._dir.name) / "seen.sqlite"))
        # A scratch file: durability buys nothing, and a crash just loses the temporary set.
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (digest BLOB PRIMARY KEY) WITHOUT ROWID")
        self._n = 0
        for item in items:
            self.add(item)

    @staticmethod
    def _digest(item: str) -> bytes:
        return hashlib.blake2b(item.encode("utf8"), digest_size=16).digest()

    def add(self, item: str) -> bool:
        """Add a string. RETURNS (bool): whether it was new."""
        added = (
            self._db.execute(
                "INSERT OR IGNORE INTO seen VALUES (?)", (self._digest(item),)
            ).rowcount
            == 1
        )
        self._n += added
        return added

    def __contains__(self, item: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM seen WHERE digest = ?", (self._digest(item),)
        ).fetchone()
        return row is not None

    def __len__(self) -> int:
        return self._n

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> "DiskSet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
