"""Running augmenters over seed records: seeded, deduplicated, with provenance, to JSONL.

Every output line is a new text, with no label (the teacher labels it at annotate time):

    {"id": "r3~typos.1", "text": "...", "parent": "r3", "method": "spacy-distill.KeyboardTypos.v1",
     "params": {"rate": 0.05}}

`parent` is the seed's key: its id, or "<file stem>:<line>" when it has none. With
`keep_seeds`, the seeds come first, as they were read (text, label(s), id = key). A variant is
dropped when it is empty or holds a lone surrogate, an echo of its seed (spacing aside) or a
copy of a seed or of an earlier variant. Each (seed, step) pair draws from its own random stream
(`derive_rng(seed, step, key, text)`), so the output is byte-identical for the same seed, input
and config.
The seeds are streamed from the file (read once per pass) and the dedup set lives on disk
(`spacy_distill.data.seen.DiskSet`), so memory does not grow with the number of seeds. Seed ids must
not repeat (a variant's parent names one record): `read_records` reports a repeated one, as for
annotate and convert.
"""

import json
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from tqdm import tqdm

from ..data.leakage import EvalIndex, raise_on_leaks
from ..data.records import LONE_SURROGATE, Record, read_records
from ..data.seen import DiskSet
from ..errors import DistillError, RecordError
from .base import Augmenter, derive_rng

ON_ERROR_CHOICES = ("fail", "skip")


@dataclass
class AugmentSummary:
    """What a run wrote and dropped."""

    output: Path
    n_seeds: int = 0
    n_written: int = 0
    n_variants: Dict[str, int] = field(default_factory=dict)
    n_dropped: Dict[str, int] = field(
        default_factory=lambda: {
            "empty": 0,
            "invalid": 0,
            "echo": 0,
            "duplicate": 0,
            "evaluation": 0,
        }
    )
    errors: List[str] = field(default_factory=list)
    seconds: float = 0.0


def spacing_folded(text: str) -> str:
    """Texts that differ only in spacing are one text; case counts (case noise is a variant)."""
    return " ".join(text.split())


class VariantFilter:
    """Drops empty texts, texts with a lone surrogate, echoes of the seed, anything written (or
    read as a seed) before and, given an evaluation index, texts of evaluation records: short
    seeds meet them by chance (SST-2's "it 's a bad film" with a word dropped is a dev
    sentence), and annotate would refuse the whole file for one of them."""

    def __init__(
        self, summary: AugmentSummary, seen: DiskSet, eval_index: Optional[EvalIndex] = None
    ) -> None:
        self.summary = summary
        self.seen = seen
        self.eval_index = eval_index

    def keep(self, text: str, seed_text: Optional[str]) -> bool:
        if not isinstance(text, str) or not text.strip():
            reason = "empty"
        elif LONE_SURROGATE.search(text):
            # Half a character (e.g. from a model's JSON answer): no file, tokenizer or cache
            # can take it, and annotate would refuse the record.
            reason = "invalid"
        else:
            norm = spacing_folded(text)
            if seed_text is not None and norm == spacing_folded(seed_text):
                reason = "echo"
            elif norm in self.seen:
                reason = "duplicate"
            elif self.eval_index is not None and self.eval_index.find(None, text) is not None:
                reason = "evaluation"
            else:
                self.seen.add(norm)
                return True
        self.summary.n_dropped[reason] += 1
        return False


def variant_row(
    vid: str, text: str, parent: Optional[str], augmenter: Augmenter, extra=None
) -> Dict[str, Any]:
    params = dict(augmenter.params)
    if extra:
        params.update(extra)
    return {"id": vid, "text": text, "parent": parent, "method": augmenter.method, "params": params}


def seed_row(record: Record) -> Dict[str, Any]:
    row: Dict[str, Any] = {"id": record.key, "text": record.text}
    if record.labels is not None:
        row["labels" if record.multi_label else "label"] = (
            list(record.labels) if record.multi_label else record.labels[0]
        )
    return row


def augment_records(
    records: Union[Sequence[Record], Callable[[], Iterable[Record]]],
    steps: Dict[str, Augmenter],
    *,
    seed: int = 0,
    keep_seeds: bool = False,
    summary: Optional[AugmentSummary] = None,
    show_progress: bool = False,
    eval_index: Optional[EvalIndex] = None,
) -> Iterator[Dict[str, Any]]:
    """Make the variants of seed records.

    The seeds are read in passes (ids and texts; the seeds themselves with `keep_seeds`; the
    variants), and what was written before is remembered on disk (`DiskSet`), so memory does
    not grow with the corpus. Only seedless augmenters (e.g. LabelExamples, which draws
    few-shot examples from all seeds) get the seed texts as a list in memory.

    records (Union[Sequence[Record], Callable[[], Iterable[Record]]]): the seeds, or a function
        that reads them anew on each call (e.g. from a file). Their keys name the variants'
        parents, so they must differ: `read_records` reports a repeated id.
    steps (Dict[str, Augmenter]): the augmenters by step name, in order.
    seed (int): the run's seed.
    keep_seeds (bool): yield the seeds first.
    summary (Optional[AugmentSummary]): counts go here.
    show_progress (bool): a progress bar with rate and ETA.
    eval_index (Optional[EvalIndex]): evaluation records; variants with their text are dropped.
    YIELDS (Dict[str, Any]): output rows.
    """
    read_seeds: Callable[[], Iterable[Record]] = records if callable(records) else (lambda: records)  # type: ignore[assignment]
    summary = summary if summary is not None else AugmentSummary(output=Path("-"))
    seen = DiskSet()
    try:
        n_seeds = 0
        for record in read_seeds():
            n_seeds += 1
            seen.add(spacing_folded(record.text))
        filter_ = VariantFilter(summary, seen, eval_index)
        summary.n_seeds = n_seeds
        if keep_seeds:
            for record in read_seeds():
                summary.n_written += 1
                yield seed_row(record)
        seedless = [(name, a) for name, a in steps.items() if a.seedless]
        seed_texts = [record.text for record in read_seeds()] if seedless else []
        for name, augmenter in seedless:
            made = augmenter.generate(seed_texts, derive_rng(seed, name, "<seedless>"))
            k = 0
            for text, extra in made:
                if filter_.keep(text, None):
                    k += 1
                    summary.n_variants[name] = summary.n_variants.get(name, 0) + 1
                    summary.n_written += 1
                    yield variant_row(f"{name}.{k}", text, None, augmenter, extra)
        del seed_texts
        per_seed = [(name, a) for name, a in steps.items() if not a.seedless and a.n > 0]
        progress = tqdm(
            total=n_seeds if per_seed else 0,
            unit="seed",
            desc="augment",
            disable=not show_progress,
            file=sys.stderr,
        )
        try:
            for record in read_seeds() if per_seed else ():
                for name, augmenter in per_seed:
                    rng = derive_rng(seed, name, record.key, record.text)
                    k = 0
                    for text in augmenter.augment(record.text, rng, augmenter.n):
                        if filter_.keep(text, record.text):
                            k += 1
                            summary.n_variants[name] = summary.n_variants.get(name, 0) + 1
                            summary.n_written += 1
                            yield variant_row(
                                f"{record.key}~{name}.{k}", text, record.key, augmenter
                            )
                progress.update(1)
                progress.set_postfix(variants=sum(summary.n_variants.values()), refresh=False)
        finally:
            progress.close()
    finally:
        seen.close()


def augment_file(
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    steps: Dict[str, Augmenter],
    *,
    seed: int = 0,
    keep_seeds: bool = False,
    on_error: str = "fail",
    limit: int = 0,
    eval_data: Sequence[Union[str, Path]] = (),
    show_progress: bool = True,
) -> AugmentSummary:
    """Read seed records, write their variants as JSONL (atomically).

    input_path (Union[str, Path]): JSONL or CSV seed records.
    output_path (Union[str, Path]): the JSONL file to write.
    steps (Dict[str, Augmenter]): the augmenters by step name, in order.
    seed (int): the run's seed; the same seed, input and config give the same bytes.
    keep_seeds (bool): write the seeds (with their labels) before the variants.
    on_error (str): "fail" stops at a malformed record; "skip" reports and skips it.
    limit (int): use the first N seeds only (0: all).
    eval_data (Sequence[Union[str, Path]]): evaluation sets: a seed whose key or text is in them
        is refused, with the list of them; a variant with the text of one is dropped (counted
        in `n_dropped["evaluation"]`).
    show_progress (bool): show a progress bar with rate and ETA.
    RETURNS (AugmentSummary): counts and skipped records.
    """
    if on_error not in ON_ERROR_CHOICES:
        raise DistillError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise DistillError(f"limit must be an integer >= 0 (0: all seeds), got {limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DistillError(f"seed must be an integer, got {seed!r}")
    start = time.perf_counter()
    summary = AugmentSummary(output=Path(output_path))

    def read_seeds(report: bool = False) -> Iterator[Record]:
        # Each pass reads the file anew (constant memory); errors are reported by the first.
        n = 0
        for item in read_records(input_path):
            if isinstance(item, RecordError):
                if report:
                    if on_error == "fail":
                        raise RecordError(
                            f'{item} (use `on_error="skip"` to report and skip bad records)'
                        )
                    summary.errors.append(str(item))
                continue
            n += 1
            yield item
            if limit and n >= limit:
                break

    index = EvalIndex.from_paths(eval_data) if eval_data else None
    leaks = []
    n_seeds = 0
    for r in read_seeds(report=True):
        n_seeds += 1
        if index is not None:
            # Seeds are matched on text (and a seed that is itself a variant, on its parent):
            # their own ids may repeat across splits by accident ("1", "2", ...).
            reason = index.find(r.parent, r.text)
            if reason is not None:
                leaks.append(f"{r.source}:{r.line} (key {r.key!r}): {reason}")
    if not n_seeds:
        raise DistillError(f"{input_path}: no valid seed records")
    if index is not None:
        raise_on_leaks(leaks, f"{input_path} (seeds)", eval_data, what="seed text(s)")
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = output_path.with_name(output_path.name + ".tmp")
    rows = augment_records(
        read_seeds,
        steps,
        seed=seed,
        keep_seeds=keep_seeds,
        summary=summary,
        show_progress=show_progress,
        eval_index=index,
    )
    # On any failure, Ctrl-C included, the temporary goes and the previous output stays as it was.
    try:
        with closing(rows), tmp_path.open("w", encoding="utf8", newline="\n") as file_:
            for row in rows:
                file_.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp_path.replace(output_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    summary.seconds = time.perf_counter() - start
    return summary
