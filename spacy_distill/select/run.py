"""`select_pool`: one selection, from an unlabelled pool to the texts the teacher labels next.

1. The pool is read once, as a stream: a malformed record stops the run with its file and line
   (or is reported and left out, on_error "skip"); a text already labelled or held out for
   evaluation (`exclude`: by id, by its normalised text, or as a near-duplicate of one) is left
   out; so is an exact or near-duplicate of an earlier pool text (`dedupe`). What is left goes to
   a spool on disk: memory does not grow with the pool.
2. The strategy picks exactly min(budget, candidates) texts from the spool.
3. The picks are written in priority order, each with `select` = {rank, strategy, score, reason},
   and the duplicates beside them (`duplicates_path`: each with the text it repeats, so that
   `select.inherit.inherit_targets` can give it that text's targets without a teacher call).
   Both files are written whole or not at all, and the same inputs and seed give the same bytes:
   a run that was killed is simply run again.
"""

import json
import logging
import os
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Sequence, Union

from spacy.language import Language

from ..annotation.inputs import check_on_error
from ..arguments import check_int_argument
from ..data.files import write_atomically
from ..data.leakage import normalize_text
from ..data.records import Record
from ..data.seen import DiskSet
from ..data.targets import TMP_SUFFIX
from ..errors import DistillError
from .dedupe import NearDuplicateIndex, write_duplicate_line
from .pool import CandidateSpool, pool_files, read_excluded, read_pool
from .scoring import StudentScorer, batched, load_scorer
from .strategies import MAX_REFERENCES, Pick, SelectionContext, get_selector

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
DEFAULT_THRESHOLD = 0.8
PROGRESS_EVERY = 100_000
READ_BATCH = 1024


@dataclass
class SelectionSummary:
    """What a selection read, left out and picked.

    n_read (int): valid pool records read.
    n_excluded (int): left out as already labelled or evaluation texts (or near-duplicates of one).
    n_duplicates (int): exact or near-duplicates of an earlier pool text, left out.
    n_candidates (int): what the strategy chose from.
    n_selected (int): picks written (the budget, unless the candidates were fewer).
    """

    output: Path
    duplicates: Path
    strategy: str
    budget: int
    seed: int
    n_read: int = 0
    n_excluded: int = 0
    n_duplicates: int = 0
    n_exact_duplicates: int = 0
    n_candidates: int = 0
    n_selected: int = 0
    seconds: float = 0.0
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


def duplicates_path(output: PathLike) -> Path:
    """Where the duplicates of a selection written to `output` go: `<stem>.duplicates.jsonl`."""
    output = Path(output)
    return output.with_name(f"{output.stem}.duplicates.jsonl")


def select_pool(
    pool: Union[PathLike, Sequence[PathLike]],
    output: PathLike,
    budget: int,
    *,
    strategy="random",
    student: Union[None, PathLike, Language, StudentScorer] = None,
    exclude: Sequence[PathLike] = (),
    seed: int = 0,
    dedupe: bool = True,
    near_duplicates: bool = True,
    threshold: float = DEFAULT_THRESHOLD,
    on_error: str = "fail",
    show_progress: bool = False,
) -> SelectionSummary:
    """Pick the `budget` pool texts the teacher should label next (see the module docstring).

    pool (Union[PathLike, Sequence[PathLike]]): JSONL/CSV files, or folders of them (chunks).
    output (PathLike): the JSONL to write the picks to, in priority order.
    budget (int): how many texts to pick (>= 1).
    strategy: "random", "uncertainty", "diversity", "hybrid", a registered selector name
        ("spacy-distill.Uncertainty.v1") or a selector object (see `strategies`).
    student: the current student (a pipeline path or object), for the strategies that need one.
    exclude (Sequence[PathLike]): texts never to pick: already labelled (JSONL/CSV records, e.g.
        earlier selections, or `.spacy` target files) and the evaluation sets.
    seed (int): the seed of every random choice.
    dedupe (bool): leave out exact duplicates of earlier pool texts.
    near_duplicates (bool): with dedupe, also near-duplicates (MinHash over character
        shingles, estimated Jaccard similarity >= threshold).
    threshold (float): the near-duplicate similarity threshold, in (0, 1].
    on_error (str): "fail" stops at the first bad record; "skip" reports it in `errors`.
    show_progress (bool): log lines with the rate (and, once the candidates are counted, the
        ETA) as the pool is read and scored.
    RETURNS (SelectionSummary): counts, where the files went, warnings.
    """
    check_int_argument("budget", budget, 1)
    check_on_error(on_error)
    selector = get_selector(strategy)
    files = pool_files(pool)
    for path in map(Path, exclude):
        if not path.exists():
            raise DistillError(f"{path}: `exclude` file not found")
    scorer = load_scorer(student)
    if selector.needs_student and scorer is None:
        raise DistillError(
            f"strategy '{selector.name}' needs `student` (the current student pipeline); the "
            "first round, before any student exists, uses 'random'"
        )
    output = Path(output)
    summary = SelectionSummary(
        output=output,
        duplicates=duplicates_path(output),
        strategy=selector.name,
        budget=budget,
        seed=seed,
    )
    start = time.perf_counter()
    options = (dedupe, near_duplicates, threshold, on_error, show_progress)
    # The duplicates stream to a temporary file beside their destination (memory stays flat),
    # renamed into place just before the picks are written: a killed run leaves no half file.
    duplicates_tmp = summary.duplicates.with_name(summary.duplicates.name + TMP_SUFFIX)
    duplicates_tmp.parent.mkdir(parents=True, exist_ok=True)
    with (
        CandidateSpool() as spool,
        _removed_on_error(duplicates_tmp),
        duplicates_tmp.open("w", encoding="utf8") as duplicates_file,
    ):
        references = _read_candidates(files, exclude, spool, summary, options, duplicates_file)
        summary.n_candidates = len(spool)
        if not summary.n_read:
            raise DistillError(f"pool: no valid records in {', '.join(map(str, files))}")
        context = SelectionContext(
            spool, budget, seed, scorer, references, show_progress=show_progress
        )
        picks = selector.select(context)
        _check_picks(picks, context, selector.name)
        summary.warnings.extend(context.notes)
        duplicates_file.flush()
        os.fsync(duplicates_file.fileno())
    if len(picks) < budget:
        summary.warnings.append(
            f"budget {budget} not met: the pool holds {summary.n_candidates} text(s) that are "
            "neither labelled, evaluation texts nor duplicates, and all were picked"
        )
    summary.n_selected = len(picks)
    os.replace(duplicates_tmp, summary.duplicates)
    write_atomically(output, b"".join(_pick_line(rank, pick) for rank, pick in enumerate(picks, 1)))
    summary.seconds = time.perf_counter() - start
    return summary


def _read_candidates(files, exclude, spool, summary, options, duplicates_file) -> List[str]:
    """Stream the pool into the spool and its duplicates into `duplicates_file`.
    RETURNS (List[str]): reference texts (labelled ones, at most MAX_REFERENCES) for diversity."""
    dedupe, near_duplicates, threshold, on_error, show_progress = options
    references: List[str] = []
    with (
        DiskSet() as excluded_ids,
        DiskSet() as excluded_texts,
        NearDuplicateIndex(threshold=threshold, near=dedupe and near_duplicates) as index,
    ):
        for batch in batched(read_excluded(exclude), READ_BATCH):
            for record in batch:
                if record.id is not None:
                    excluded_ids.add(record.id)
                excluded_texts.add(normalize_text(record.text))
            if dedupe:
                index.add_references((record.key, record.text) for record in batch)
            references.extend(r.text for r in batch[: MAX_REFERENCES - len(references)])
        started = time.perf_counter()
        for batch in batched(read_pool(files, on_error, summary.errors), READ_BATCH):
            if (
                show_progress
                and (summary.n_read + len(batch)) // PROGRESS_EVERY
                > summary.n_read // PROGRESS_EVERY
            ):
                rate = summary.n_read / max(time.perf_counter() - started, 1e-9)
                logger.info("select: %d pool records read (%.0f/s)", summary.n_read, rate)
            summary.n_read += len(batch)
            kept = []
            for record in batch:
                if (record.id is not None and record.id in excluded_ids) or normalize_text(
                    record.text
                ) in excluded_texts:
                    summary.n_excluded += 1
                else:
                    kept.append(record)
            found = index.add_many((r.key, r.text) for r in kept) if dedupe else [None] * len(kept)
            for record, duplicate in zip(kept, found):
                if duplicate is None:
                    spool.add(record)
                    continue
                if duplicate.of_reference:
                    summary.n_excluded += 1
                else:
                    summary.n_duplicates += 1
                    summary.n_exact_duplicates += duplicate.kind == "exact"
                write_duplicate_line(duplicates_file, record.key, record.text, duplicate)
        spool.seal()
    return references


@contextmanager
def _removed_on_error(path: Path):
    try:
        yield
    except BaseException:
        with suppress(OSError):
            path.unlink()
        raise


def _check_picks(picks: List[Pick], context: SelectionContext, name: str) -> None:
    """A user's selector must keep the contract: exactly n picks, each a distinct candidate."""
    if len(picks) != context.n_picks:
        raise DistillError(
            f"selector '{name}' returned {len(picks)} picks for a budget of {context.budget} and "
            f"{len(context.candidates)} candidates; it must return {context.n_picks}"
        )
    keys = {pick.record.key for pick in picks}
    if len(keys) != len(picks):
        raise DistillError(f"selector '{name}' picked a record more than once")


def _pick_line(rank: int, pick: Pick) -> bytes:
    return _json_line(
        {
            **record_fields(pick.record),
            "select": {
                "rank": rank,
                "strategy": pick.strategy,
                "score": round(float(pick.score), 6),
                "reason": pick.reason,
            },
        }
    )


def record_fields(record: Record) -> dict:
    """A pool record as a JSONL object `annotate` reads: its id (or key), text, gold labels and
    augmentation fields, as given."""
    fields = {"id": record.key, "text": record.text}
    if record.labels is not None:
        if record.multi_label:
            fields["labels"] = list(record.labels)
        else:
            fields["label"] = record.labels[0]
    for name in ("parent", "method", "params"):
        value = getattr(record, name)
        if value is not None:
            fields[name] = value
    return fields


def _json_line(data: dict) -> bytes:
    return (json.dumps(data, ensure_ascii=False) + "\n").encode("utf8")


def iter_selection(path: PathLike) -> Iterator[dict]:
    """The lines of a selection file, for reports."""
    with Path(path).open(encoding="utf8") as file_:
        for line in file_:
            if line.strip():
                yield json.loads(line)


__all__ = [
    "DEFAULT_THRESHOLD",
    "SelectionSummary",
    "duplicates_path",
    "iter_selection",
    "record_fields",
    "select_pool",
]
