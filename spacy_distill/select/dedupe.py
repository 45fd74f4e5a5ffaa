"""Duplicate detection over a streamed pool: the teacher never pays twice for the same message.

Every pool text is checked, in input order, against the texts indexed before it:

- exact: the same text once case and whitespace are folded (`leakage.normalize_text`);
- near: MinHash signatures over character shingles (`shingle`-grams of the normalised text; a
  shorter text is one shingle), with LSH banding to find candidates. A candidate becomes a
  duplicate only when the Jaccard similarity estimated from the two signatures reaches
  `threshold`, so a band hit that is not a near-duplicate costs one comparison, never a wrong
  answer.

The first text of a group is its representative and is indexed; a later duplicate points to it
(`Duplicate.of`) and is not indexed itself, so every member of a group is within `threshold` of
the text it inherits from (single-link chains, where A~B~C but A and C differ, never form).
Texts already labelled (`add_reference`) are indexed as representatives without being pool texts.

Memory stays constant however long the pool: the band index, the signatures and the digests of
the normalised texts live in SQLite in a temporary directory (as `data.seen.DiskSet`), whose page
cache is bounded by `cache_mib` (16 MiB by default); Python holds one batch at a time. On disk a
representative costs about 4 * num_perm + 20 * bands + 40 bytes (about 1 KB at the defaults).

Bands and rows: for a pair of Jaccard similarity s, LSH finds it as a candidate with probability
1 - (1 - s^r)^b. `lsh_bands` takes the largest r (the fewest spurious candidates) whose pair
exactly at the threshold is missed with probability <= MAX_LSH_MISS (5%); a pair 0.05 above is
missed far less often. At the defaults (128 permutations): threshold 0.7 -> 25 bands x 5 rows
(1.0% missed at 0.7), 0.8 -> 18 x 7 (1.4% at 0.8, 0.1% at 0.85), 0.9 -> 10 x 12 (3.6% at 0.9).
The Jaccard estimate itself has a standard error of sqrt(s(1-s)/num_perm) (0.035 at s=0.8,
128 permutations): a pair right at the threshold is confirmed about half the time; one 0.1
above almost always.
"""

import hashlib
import json
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy

from ..data.leakage import normalize_text
from ..errors import DistillError

DEFAULT_THRESHOLD = 0.8
DEFAULT_NUM_PERM = 128
# Character 3-grams: on SMS and tweets with 30% injected variants (benchmarks/results/select_dedupe.md)
# they found 0.70-0.75 of the variants at 0.8, against 0.44-0.47 for 5-grams, with no more
# wrong merges (3 and 0 in 18,000 texts).
DEFAULT_SHINGLE = 3
DEFAULT_SEED = 0
# Adds per SQLite transaction and per batched lookup.
DEFAULT_BATCH_SIZE = 1000
# The largest chance that LSH misses a pair whose similarity is exactly the threshold.
MAX_LSH_MISS = 0.05
# SQLite's page cache (MiB): the only part of the index held in memory.
DEFAULT_CACHE_MIB = 16
# Shingle hashes per block when hashing one text: bounds the (block x num_perm) matrix of a
# very long text to 32 MB.
SHINGLE_BLOCK = 32768
# Bound parameters per `IN (...)` query (SQLite's limit is 32766 on recent versions, 999 on old).
SQL_VARIABLES = 900
DUPLICATE_KINDS = ("exact", "near")
UINT64 = numpy.uint64


@dataclass(frozen=True)
class Duplicate:
    """A text seen before.

    of (str): the key of the representative (the first text of the group).
    kind (str): "exact" (the same normalised text) or "near" (MinHash similarity >= threshold).
    similarity (float): the estimated Jaccard similarity of the shingles (1.0 for exact).
    of_reference (bool): whether the representative was added with `add_reference`.
    """

    of: str
    kind: str
    similarity: float
    of_reference: bool = False


def lsh_miss_rate(similarity: float, bands: int, rows: int) -> float:
    """The chance that LSH does not offer a pair of this Jaccard similarity as a candidate."""
    return (1.0 - similarity**rows) ** bands


def lsh_bands(threshold: float, num_perm: int, max_miss: float = MAX_LSH_MISS) -> Tuple[int, int]:
    """Bands and rows for a threshold: the most rows per band (fewest spurious candidates) that
    still find a pair at the threshold with probability >= 1 - max_miss.

    threshold (float): the Jaccard similarity that makes a near-duplicate.
    num_perm (int): the signature length.
    max_miss (float): the largest acceptable miss rate at the threshold.
    RETURNS (Tuple[int, int]): (bands, rows), bands * rows <= num_perm.
    """
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if lsh_miss_rate(threshold, bands, rows) <= max_miss:
            return bands, rows
    return num_perm, 1


class MinHasher:
    """MinHash signatures of character shingles, with fixed seeds (the same text gives the same
    signature in every process).

    Hashing is hand-written numpy rather than `datasketch.MinHash`: measured on 5,000 tweets
    (128 permutations, one core), shingling with zlib.crc32 plus a per-text numpy min came to
    ~27,000 texts/s, datasketch's `MinHash.bulk` to ~6,500/s with its SHA-1 and ~14,000/s
    with crc32 (its `(a*h + b) % p` over 64-bit ints is slower than the multiply-shift below),
    and datasketch's index keeps everything in memory, so its hashing alone would not pay for
    the dependency. The permutations are multiply-add-shift hashes of the 32-bit shingle hashes,
    h(x) = ((a*x + b) mod 2^64) >> 32 with random 64-bit a (odd) and b: a strongly universal
    family (Dietzfelbinger 1996), computed with numpy's wrapping uint64 arithmetic.
    """

    def __init__(
        self, num_perm: int = DEFAULT_NUM_PERM, shingle: int = DEFAULT_SHINGLE, seed: int = 0
    ) -> None:
        """
        num_perm (int): the signature length.
        shingle (int): characters per shingle.
        seed (int): fixes the permutations.
        """
        self.num_perm = num_perm
        self.shingle = shingle
        rng = numpy.random.default_rng(seed)
        self._a = rng.integers(0, 2**64, size=num_perm, dtype=UINT64, endpoint=False) | UINT64(1)
        self._b = rng.integers(0, 2**64, size=num_perm, dtype=UINT64, endpoint=False)
        self._shingle_mult = rng.integers(0, 2**64, size=shingle, dtype=UINT64) | UINT64(1)

    def shingle_hashes(self, normalized: Sequence[str]) -> List[numpy.ndarray]:
        """The 32-bit hashes (as uint64, ready to multiply) of each normalised text's shingles.

        All texts are hashed at once: their code points in one array, each window of `shingle`
        code points a polynomial with random odd 64-bit multipliers, mixed by splitmix64's
        finaliser, its high 32 bits kept. (A Python loop over the shingles with zlib.crc32 cost
        about five times as much and dominated the index's time.)
        """
        k = self.shingle
        padded = [t if len(t) >= k else t + "\0" * (k - len(t)) for t in normalized]
        lengths = numpy.fromiter((len(t) for t in padded), dtype=numpy.int64, count=len(padded))
        codes = numpy.frombuffer("".join(padded).encode("utf-32-le"), dtype="<u4").astype(UINT64)
        n_windows = len(codes) - k + 1
        hashes = codes[:n_windows] * self._shingle_mult[0]
        for j in range(1, k):
            hashes += codes[j : j + n_windows] * self._shingle_mult[j]
        hashes = _mix64(hashes) >> UINT64(32)
        # Keep the windows that start in a text and end in the same text.
        starts = numpy.concatenate(([0], numpy.cumsum(lengths)[:-1]))
        counts = lengths - k + 1
        text_of = numpy.repeat(numpy.arange(len(padded)), lengths)[:n_windows]
        valid = (numpy.arange(n_windows) - starts[text_of]) < counts[text_of]
        return numpy.split(hashes[valid], numpy.cumsum(counts)[:-1])

    def signature(self, hashes: numpy.ndarray) -> numpy.ndarray:
        """The MinHash signature (uint32, num_perm values) of a text's shingle hashes."""
        signature = None
        for start in range(0, len(hashes), SHINGLE_BLOCK):
            block = hashes[start : start + SHINGLE_BLOCK, None] * self._a
            block += self._b
            block >>= UINT64(32)
            low = block.min(axis=0)
            signature = low if signature is None else numpy.minimum(signature, low)
        return signature.astype(numpy.uint32)

    def signatures(self, normalized: Sequence[str]) -> numpy.ndarray:
        """Signatures of normalised texts. RETURNS (numpy.ndarray): (n, num_perm) uint32."""
        out = numpy.empty((len(normalized), self.num_perm), dtype=numpy.uint32)
        for i, hashes in enumerate(self.shingle_hashes(normalized)):
            out[i] = self.signature(hashes)
        return out


def _mix64(values: numpy.ndarray) -> numpy.ndarray:
    """splitmix64's finaliser, in place: spreads a linear hash's structure over all 64 bits."""
    values ^= values >> UINT64(31)
    values *= UINT64(0xBF58476D1CE4E5B9)
    values ^= values >> UINT64(27)
    values *= UINT64(0x94D049BB133111EB)
    values ^= values >> UINT64(31)
    return values


def _check_number(value, name: str, low: float, high: float, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (low < value if low_open else low <= value) and value <= high
    if not ok:
        span = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise DistillError(f"argument '{name}': expected a number in {span}, got {value!r}")


def _check_int(value, name: str, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise DistillError(f"argument '{name}': expected an integer >= {least}, got {value!r}")


class NearDuplicateIndex:
    """Exact and near-duplicate detection for a stream of texts, in constant memory.

    `add` (or `add_many`, faster) answers, for each pool text in order, whether it repeats a
    text indexed before it; a new text is indexed. Answers depend only on the input order.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        *,
        near: bool = True,
        num_perm: int = DEFAULT_NUM_PERM,
        bands: Optional[int] = None,
        shingle: int = DEFAULT_SHINGLE,
        seed: int = DEFAULT_SEED,
        batch_size: int = DEFAULT_BATCH_SIZE,
        cache_mib: int = DEFAULT_CACHE_MIB,
        directory: Optional[Union[str, Path]] = None,
    ) -> None:
        """
        threshold (float): the estimated Jaccard similarity, in (0, 1], that makes a
            near-duplicate.
        near (bool): find near-duplicates; False finds exact duplicates only (much faster).
        num_perm (int): MinHash signature length (more: a finer similarity estimate).
        bands (Optional[int]): LSH bands (rows = num_perm // bands); None picks them for the
            threshold (see `lsh_bands`).
        shingle (int): characters per shingle.
        seed (int): fixes the MinHash permutations and band hashes.
        batch_size (int): adds per SQLite transaction and per batched lookup.
        cache_mib (int): SQLite's page cache, the memory the index may use beyond one batch.
        directory (Optional[Union[str, Path]]): where the temporary index goes (default: the
            system's temporary directory).
        """
        _check_number(threshold, "threshold", 0.0, 1.0, low_open=True)
        _check_int(num_perm, "num_perm", 1)
        _check_int(shingle, "shingle", 1)
        _check_int(batch_size, "batch_size", 1)
        _check_int(cache_mib, "cache_mib", 1)
        if bands is None:
            bands, rows = lsh_bands(float(threshold), num_perm)
        else:
            _check_int(bands, "bands", 1)
            if bands > num_perm:
                raise DistillError(
                    f"argument 'num_perm': {num_perm} must be >= bands ({bands}): each band "
                    "takes at least one signature value"
                )
            rows = num_perm // bands
        self.threshold = float(threshold)
        self.near = bool(near)
        self.bands, self.rows = bands, rows
        self.batch_size = batch_size
        self.hasher = MinHasher(num_perm, shingle, seed)
        rng = numpy.random.default_rng([seed, 1])
        self._band_mult = rng.integers(0, 2**64, size=(bands, rows), dtype=UINT64) | UINT64(1)
        self._band_salt = rng.integers(0, 2**64, size=bands, dtype=UINT64)
        self._n_docs = 0
        self._uncommitted = 0
        self._dir = tempfile.TemporaryDirectory(
            prefix="spacy-distill-dedupe-", dir=None if directory is None else str(directory)
        )
        self._db = sqlite3.connect(str(Path(self._dir.name) / "dedupe.sqlite"))
        # A scratch file: durability buys nothing, and a crash just loses the temporary index.
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
        self._db.executescript(
            """
            CREATE TABLE docs (doc INTEGER PRIMARY KEY, key TEXT, reference INTEGER, sig BLOB);
            CREATE TABLE exact (digest BLOB PRIMARY KEY, doc INTEGER, kind TEXT, similarity REAL)
                WITHOUT ROWID;
            CREATE TABLE bands (key INTEGER, doc INTEGER, PRIMARY KEY (key, doc)) WITHOUT ROWID;
            """
        )

    def __len__(self) -> int:
        """The number of indexed texts (representatives and references)."""
        return self._n_docs

    def add(self, key: str, text: str) -> Optional[Duplicate]:
        """Check one pool text against the indexed texts; index it if it is new.

        key (str): the text's key (`Record.key`), what later duplicates point to.
        text (str): the text.
        RETURNS (Optional[Duplicate]): None for a new text (now indexed), else what it repeats.
        """
        return self._add_batch([(key, text)], reference=False)[0]

    def add_many(self, items: Iterable[Tuple[str, str]]) -> List[Optional[Duplicate]]:
        """`add` for many texts, in order, with batched SQLite work (several times faster).

        items (Iterable[Tuple[str, str]]): (key, text) pairs.
        RETURNS (List[Optional[Duplicate]]): one answer per item, as `add` gives.
        """
        return [dup for batch in self._batches(items) for dup in self._add_batch(batch, False)]

    def add_reference(self, key: str, text: str) -> None:
        """Index a text that is not a pool text (already labelled, or excluded): later pool texts
        that repeat it are its duplicates. An exact repeat of an indexed text is not re-indexed.

        key (str): the text's key.
        text (str): the text.
        """
        self._add_batch([(key, text)], reference=True)

    def add_references(self, items: Iterable[Tuple[str, str]]) -> None:
        """`add_reference` for many texts. items (Iterable[Tuple[str, str]]): (key, text) pairs."""
        for batch in self._batches(items):
            self._add_batch(batch, reference=True)

    def _batches(self, items: Iterable[Tuple[str, str]]) -> Iterator[List[Tuple[str, str]]]:
        batch: List[Tuple[str, str]] = []
        for item in items:
            batch.append(item)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _band_keys(self, signatures: numpy.ndarray) -> numpy.ndarray:
        """One 64-bit key per band and text: (n, bands) int64, as SQLite stores integers."""
        used = signatures[:, : self.bands * self.rows].astype(UINT64)
        keys = (used.reshape(len(signatures), self.bands, self.rows) * self._band_mult).sum(
            axis=2, dtype=UINT64
        ) + self._band_salt
        return _mix64(keys).view(numpy.int64)

    def _select_in(self, query: str, values: Sequence) -> List[tuple]:
        rows: List[tuple] = []
        for start in range(0, len(values), SQL_VARIABLES):
            chunk = values[start : start + SQL_VARIABLES]
            marks = ",".join("?" * len(chunk))
            rows.extend(self._db.execute(query.format(marks=marks), chunk))
        return rows

    def _add_batch(
        self, items: List[Tuple[str, str]], reference: bool
    ) -> List[Optional[Duplicate]]:
        normalized = [normalize_text(text) for _, text in items]
        digests = [hashlib.blake2b(t.encode("utf8"), digest_size=16).digest() for t in normalized]
        # The digest of every text seen (representatives and duplicates alike), with its answer.
        exact_hits: Dict[bytes, Tuple[int, str, float]] = {
            digest: (doc, kind, similarity)
            for digest, doc, kind, similarity in self._select_in(
                "SELECT digest, doc, kind, similarity FROM exact WHERE digest IN ({marks})",
                list(set(digests)),
            )
        }
        signatures = band_keys = None
        band_hits: Dict[int, List[int]] = {}
        if self.near:
            signatures = self.hasher.signatures(normalized)
            band_keys = self._band_keys(signatures)
            if not reference:
                for band_key, doc in self._select_in(
                    "SELECT key, doc FROM bands WHERE key IN ({marks})",
                    list(set(band_keys.ravel().tolist())),
                ):
                    band_hits.setdefault(band_key, []).append(doc)
        # The indexed texts that a batch's texts may point to: (key, reference, signature).
        known: Dict[int, Tuple[str, bool, Optional[numpy.ndarray]]] = {}
        wanted = {hit[0] for hit in exact_hits.values()}
        wanted.update(doc for docs in band_hits.values() for doc in docs)
        for doc, key, is_reference, sig in self._select_in(
            "SELECT doc, key, reference, sig FROM docs WHERE doc IN ({marks})", sorted(wanted)
        ):
            signature = None if sig is None else numpy.frombuffer(sig, dtype="<u4")
            known[doc] = (key, bool(is_reference), signature)
        answers: List[Optional[Duplicate]] = []
        new_docs: List[tuple] = []
        new_exact: List[tuple] = []
        new_rows: List[int] = []  # the batch's new texts, whose bands go into the index
        for i, (key, _) in enumerate(items):
            hit = exact_hits.get(digests[i])
            if hit is not None:
                rep_key, rep_is_reference, _ = known[hit[0]]
                dup = Duplicate(rep_key, hit[1], hit[2], rep_is_reference)
                answers.append(None if reference else dup)
                continue
            if band_keys is not None and not reference:
                found = self._best_candidate(signatures[i], band_keys[i], band_hits, known)
                if found is not None:
                    doc, similarity = found
                    # Later exact copies of this variant get the same answer without hashing.
                    exact_hits[digests[i]] = (doc, "near", similarity)
                    new_exact.append((digests[i], doc, "near", similarity))
                    answers.append(Duplicate(known[doc][0], "near", similarity, known[doc][1]))
                    continue
            doc = self._n_docs
            self._n_docs += 1
            signature = None if signatures is None else signatures[i]
            known[doc] = (key, reference, signature)
            exact_hits[digests[i]] = (doc, "exact", 1.0)
            new_exact.append((digests[i], doc, "exact", 1.0))
            new_docs.append(
                (doc, key, int(reference), None if signature is None else signature.tobytes())
            )
            if band_keys is not None:
                new_rows.append(i)
                for band_key in band_keys[i].tolist():
                    hits = band_hits.get(band_key)
                    if hits is None:
                        band_hits[band_key] = [doc]
                    else:
                        hits.append(doc)
            answers.append(None)
        self._db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", new_docs)
        self._db.executemany("INSERT OR IGNORE INTO exact VALUES (?, ?, ?, ?)", new_exact)
        if new_rows:
            docs = [row[0] for row in new_docs]
            self._db.executemany(
                "INSERT OR IGNORE INTO bands VALUES (?, ?)",
                zip(
                    band_keys[new_rows].ravel().tolist(),
                    numpy.repeat(docs, self.bands).tolist(),
                ),
            )
        self._uncommitted += len(items)
        if self._uncommitted >= self.batch_size:
            self._db.commit()
            self._uncommitted = 0
        return answers

    def _best_candidate(
        self,
        signature: numpy.ndarray,
        band_keys: numpy.ndarray,
        band_hits: Dict[int, List[int]],
        known: Dict[int, Tuple[str, bool, Optional[numpy.ndarray]]],
    ) -> Optional[Tuple[int, float]]:
        """The most similar candidate at or above the threshold (the earliest on a tie)."""
        candidates = sorted({doc for k in band_keys.tolist() for doc in band_hits.get(k, ())})
        if not candidates:
            return None
        others = numpy.stack([known[doc][2] for doc in candidates])
        similarities = (others == signature).mean(axis=1)
        best = int(numpy.argmax(similarities))  # the first maximum: the earliest doc
        if similarities[best] < self.threshold:
            return None
        return candidates[best], float(similarities[best])

    def close(self) -> None:
        """Delete the temporary index."""
        self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> "NearDuplicateIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def duplicate_record(key: str, text: str, duplicate: Duplicate) -> Dict[str, object]:
    """The duplicates-file line of a dropped pool text: the one place that defines it
    (`inherit.read_duplicate_lines` reads and checks it).

    key (str): the dropped text's key.
    text (str): its text.
    duplicate (Duplicate): what `NearDuplicateIndex.add` said about it.
    RETURNS (Dict[str, object]): {"id", "text", "duplicate_of", "kind", "similarity"}.
    """
    return {
        "id": key,
        "text": text,
        "duplicate_of": duplicate.of,
        "kind": duplicate.kind,
        "similarity": round(float(duplicate.similarity), 4),
    }


def write_duplicate_line(file: IO[str], key: str, text: str, duplicate: Duplicate) -> None:
    """Write one line of a duplicates file (JSONL) to an open text file."""
    file.write(json.dumps(duplicate_record(key, text, duplicate), ensure_ascii=False) + "\n")


__all__ = [
    "DUPLICATE_KINDS",
    "DEFAULT_NUM_PERM",
    "DEFAULT_SHINGLE",
    "DEFAULT_THRESHOLD",
    "MAX_LSH_MISS",
    "Duplicate",
    "MinHasher",
    "NearDuplicateIndex",
    "duplicate_record",
    "lsh_bands",
    "lsh_miss_rate",
    "write_duplicate_line",
]
