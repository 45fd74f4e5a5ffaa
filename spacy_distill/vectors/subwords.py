"""Hashed character n-grams: the fallback that gives every word a vector, seen or not.

As in fastText (Bojanowski et al. 2017), a word is also the bag of its character n-grams
("<go", "goo", "ood", "od>", ... for "good", with < and > marking its edges), each hashed into
one of a fixed number of buckets. A word that the vocabulary lacks (a misspelling, an
elongation, a hashtag, a new name) still shares most of its n-grams with words it has.

At `word-vectors` time the bucket vectors are fitted to the teacher's word vectors (least
squares: the mean of a word's bucket vectors should be its vector), so an unseen word starts
where the teacher's nearby spellings lie. The student (`spacy-distill.StaticEmbeddings.v2`)
adds the mean of a token's bucket vectors to its word row and keeps learning both: the n-gram
vectors learn from every training token, and an unseen word is scored through them. Hashing
uses murmurhash (a spaCy dependency) on the word's keyed form, so the exported student computes
the same buckets with nothing but spaCy installed.
"""

from typing import Dict, Iterable, List, Sequence, Tuple

import numpy
from murmurhash import hash_unicode
from thinc.api import NumpyOps

from ..errors import DistillError

DEFAULT_BUCKETS = 2**15
DEFAULT_MIN_N = 3
DEFAULT_MAX_N = 5
# A token longer than this (a URL, a run of emoji) contributes the n-grams of its first
# MAX_CHARS characters: enough to place it, and its cost stays bounded.
MAX_CHARS = 40
_OPS = NumpyOps()


def check_ngram_settings(buckets: int, min_n: int, max_n: int) -> None:
    if not isinstance(buckets, int) or buckets < 1:
        raise DistillError(f"subword buckets must be a positive integer, got {buckets!r}")
    if not (isinstance(min_n, int) and isinstance(max_n, int) and 1 <= min_n <= max_n):
        raise DistillError(
            f"character n-gram sizes must satisfy 1 <= min_n <= max_n, got {min_n}, {max_n}"
        )


def word_buckets(
    word: str, buckets: int, min_n: int = DEFAULT_MIN_N, max_n: int = DEFAULT_MAX_N
) -> numpy.ndarray:
    """The sorted, distinct buckets of a word's character n-grams (empty for whitespace).

    word (str): the word, in the form the vectors are keyed by (e.g. lowercase).
    buckets (int): the number of buckets.
    min_n, max_n (int): n-gram sizes, edges "<" and ">" included.
    RETURNS (numpy.ndarray): int64 bucket ids.
    """
    if not word.strip():
        return numpy.zeros((0,), dtype="int64")
    marked = f"<{word[:MAX_CHARS]}>"
    grams = {marked[i : i + n] for n in range(min_n, max_n + 1) for i in range(len(marked) - n + 1)}
    if not grams:  # shorter than min_n with its edges: the whole marked word
        grams = {marked}
    return numpy.unique(numpy.asarray([hash_unicode(g) % buckets for g in grams], dtype="int64"))


def ragged_buckets(
    words: Iterable[str], buckets: int, min_n: int, max_n: int
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Bucket ids of many words, flat, and each word's count."""
    parts = [word_buckets(w, buckets, min_n, max_n) for w in words]
    lengths = numpy.asarray([len(p) for p in parts], dtype="int64")
    flat = numpy.concatenate(parts) if parts else numpy.zeros((0,), dtype="int64")
    return flat, lengths


def segment_mean(
    table: numpy.ndarray, flat: numpy.ndarray, lengths: numpy.ndarray, chunk: int = 4096
) -> numpy.ndarray:
    """Row i: the mean of table[flat[segment i]] (zero for an empty segment); float32.

    thinc's reduce_mean (compiled) on chunks of segments: numpy's reduceat along rows is an
    order of magnitude slower, and gathering every row at once would hold n_flat x width floats.
    """
    # Rows are gathered, then made float32: a half-precision table is never copied whole.
    table = numpy.asarray(table)
    lengths = numpy.asarray(lengths, dtype="int64")
    out = numpy.zeros((len(lengths), table.shape[1]), dtype="float32")
    ends = numpy.cumsum(lengths)
    for first in range(0, len(lengths), chunk):
        part = lengths[first : first + chunk]
        keep = numpy.flatnonzero(part)
        if not len(keep):
            continue
        start = int(ends[first] - lengths[first])
        rows = numpy.ascontiguousarray(
            table[flat[start : start + int(part.sum())]], dtype="float32"
        )
        out[first + keep] = _OPS.reduce_mean(rows, part[keep].astype("int32"))
    return out


def segment_scatter(
    grad: numpy.ndarray, flat: numpy.ndarray, lengths: numpy.ndarray, n_rows: int
) -> numpy.ndarray:
    """The transpose of `segment_mean`: spread each segment's gradient over its rows."""
    out = numpy.zeros((n_rows, grad.shape[1]), dtype="float32")
    lengths = numpy.asarray(lengths, dtype="int64")
    keep = numpy.flatnonzero(lengths)
    if not len(keep):
        return out
    spread = _OPS.backprop_reduce_mean(
        numpy.ascontiguousarray(grad[keep], dtype="float32"), lengths[keep].astype("int32")
    )
    _OPS.scatter_add(out, numpy.asarray(flat, dtype="int32"), spread)
    return out


def fit_ngram_vectors(
    words: Sequence[str],
    vectors: numpy.ndarray,
    *,
    buckets: int = DEFAULT_BUCKETS,
    min_n: int = DEFAULT_MIN_N,
    max_n: int = DEFAULT_MAX_N,
    l2: float = 1e-2,
    iterations: int = 25,
) -> Tuple[numpy.ndarray, Dict[str, float]]:
    """Bucket vectors N whose means over each word's n-grams reconstruct the word vectors.

    Solves min ||A N - V||^2 + l2 ||N||^2 (A: each word's row averages its buckets) by conjugate
    gradients on the normal equations, all columns at once; numpy only, a few seconds for tens
    of thousands of words. Buckets no word hashes into stay zero.

    words (Sequence[str]): the vocabulary (keyed forms).
    vectors (numpy.ndarray): (n_words, dims) their vectors.
    buckets, min_n, max_n: the hashing settings.
    l2 (float): ridge penalty (keeps rare buckets small).
    iterations (int): conjugate-gradient steps.
    RETURNS (Tuple[numpy.ndarray, Dict[str, float]]): (buckets, dims) float32, and "r2": the
        share of the vectors' variance the n-grams alone reconstruct, "buckets_used".
    """
    check_ngram_settings(buckets, min_n, max_n)
    from scipy import (
        sparse,
    )  # word-vectors time only (the teacher's environment), never at run time

    # float32 throughout: half the memory traffic, and 25 CG steps do not need more precision.
    V = numpy.asarray(vectors, dtype="float32")
    flat, lengths = ragged_buckets(words, buckets, min_n, max_n)
    weights = numpy.repeat(1.0 / numpy.maximum(lengths, 1), lengths).astype("float32")
    indptr = numpy.concatenate([[0], numpy.cumsum(lengths)])
    matrix = sparse.csr_matrix((weights, flat, indptr), shape=(len(lengths), buckets))
    transposed = matrix.T.tocsr()

    def normal(N):
        # A^T (A N), never A^T A: the Gram matrix of n-grams is far denser than A.
        return transposed @ (matrix @ N) + l2 * N

    N = numpy.zeros((buckets, V.shape[1]), dtype="float32")
    r = transposed @ V
    p = r.copy()
    rs = (r * r).sum(axis=0)
    for _ in range(iterations):
        Ap = normal(p)
        alpha = rs / numpy.maximum((p * Ap).sum(axis=0), 1e-30)
        N += p * alpha
        r -= Ap * alpha
        rs_new = (r * r).sum(axis=0)
        if float(rs_new.sum()) < 1e-12:
            break
        p = r + p * (rs_new / numpy.maximum(rs, 1e-30))
        rs = rs_new

    def A(N):
        return matrix @ N

    residual = V - A(N)
    total = float(((V - V.mean(axis=0)) ** 2).sum()) or 1.0
    stats = {
        "r2": 1.0 - float((residual**2).sum()) / total,
        "buckets_used": int(len(numpy.unique(flat))),
    }
    return N.astype("float32"), stats


class BucketCache:
    """Bucket ids per word key, shared by every model with the same settings: a token's buckets
    depend on its string only, so each word is hashed once per process."""

    MAX_ENTRIES = 500_000
    _caches: Dict[Tuple[int, int, int], Dict[int, numpy.ndarray]] = {}

    @classmethod
    def lookup(
        cls, keys: Sequence[int], strings, buckets: int, min_n: int, max_n: int
    ) -> List[numpy.ndarray]:
        """keys (Sequence[int]): string ids; strings (StringStore): resolves them."""
        cache = cls._caches.setdefault((buckets, min_n, max_n), {})
        if len(cache) > cls.MAX_ENTRIES:
            cache.clear()
        out = []
        for key in keys:
            found = cache.get(key)
            if found is None:
                found = cache[key] = word_buckets(strings[key], buckets, min_n, max_n)
            out.append(found)
        return out
