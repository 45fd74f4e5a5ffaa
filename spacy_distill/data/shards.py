"""Sharded annotation: N machines each annotate an interleaved share; `merge` joins them."""

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

from ..arguments import check_int_argument
from ..errors import DistillError, TargetFormatError
from .files import write_atomically
from .msgpack_codecs import cached_msgpack_codecs
from .targets import TargetFileWriter, get_target, read_targets


def parse_shard(spec: str) -> Tuple[int, int]:
    """'K/N' -> (K, N), 1-based."""
    try:
        k, n = (int(part) for part in spec.split("/"))
    except ValueError:
        raise DistillError(f"`shard` must look like K/N (e.g. 2/8), got {spec!r}") from None
    if not (n >= 1 and 1 <= k <= n):
        raise DistillError(f"`shard` must be K/N with 1 <= K <= N, got {spec!r}")
    return k, n


def check_shard(shard: Optional[Tuple[int, int]]) -> None:
    """A DistillError unless `shard` is None or (K, N) with 1 <= K <= N."""
    if shard is None:
        return
    try:
        k, n = shard
    except (TypeError, ValueError):
        raise DistillError(f"shard must be a pair (K, N), got {shard!r}") from None
    check_int_argument("shard count N", n, 1)
    check_int_argument("shard index K", k, 1)
    if k > n:
        raise DistillError(f"shard must be K/N with 1 <= K <= N, got {k}/{n}")


def merge_target_files(inputs: Sequence[Union[str, Path]], output: Union[str, Path]) -> int:
    """Join target files (e.g. shard outputs) into one, in input-record order.

    Docs are ordered by their provenance (source file, line), so shards of one input merge to
    exactly what one run would have written. A record found twice is an error.

    inputs (Sequence[Union[str, Path]]): target files or directories (a directory's scratch
        files, e.g. a stopped run's `OUTPUT.partial.spacy`, are left out).
    output (Union[str, Path]): the merged target file.
    RETURNS (int): the number of docs written.
    """
    with cached_msgpack_codecs():  # see msgpack_codecs: the docs' user data is (un)packed per doc
        return _merge(inputs, output)


def _merge(inputs: Sequence[Union[str, Path]], output: Union[str, Path]) -> int:
    # Every doc is held in memory to be sorted; for millions of docs, point the reader at the
    # directory of shard outputs instead (it reads them all, in file order), with no merge.
    keyed = []
    seen = {}
    for path in inputs:
        for index, doc in enumerate(read_targets(path)):
            target = get_target(doc)
            assert target is not None
            provenance = target.provenance
            if provenance.source is None or provenance.line is None:
                raise TargetFormatError(
                    f"{path}: doc {index}: field 'provenance': no source and line, so its place "
                    "in the merged file is unknown"
                )
            # Augmented texts share their parent's line; their id keeps them apart.
            key = (provenance.source, provenance.line, provenance.id or "", provenance.method or "")
            if key in seen:
                raise TargetFormatError(
                    f"{path}: doc {index}: record {provenance.source}:{provenance.line} is also in "
                    f"{seen[key]}; were shards overlapping or a file given twice?"
                )
            seen[key] = f"{path}: doc {index}"
            keyed.append((key, doc))
    if not keyed:
        raise DistillError("merge: the inputs hold no docs")
    keyed.sort(key=lambda item: item[0])
    writer = TargetFileWriter(output)
    for _, doc in keyed:
        writer.add(doc)
    write_atomically(output, writer.doc_bin.to_bytes())
    return len(writer)
