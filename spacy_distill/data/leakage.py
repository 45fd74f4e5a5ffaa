"""The leakage guard: variants of evaluation records must never reach training data.

Part of the data layer: annotation, the target corpus and augmentation all check against it.

An augmented text names its parent (`parent`: the seed's id, or "<file stem>:<line>" when the
seed had none; see `records.record_key`). A train set leaks when one of its augmented texts has
a parent that is an evaluation record, or has the same text (case and spacing aside) as one.
Original texts are not checked: duplicates that a dataset's own splits share are its own
business, not the augmenter's. Augmenting with `eval_data` also refuses seeds whose text is an
evaluation text, the one place where a parent's text is at hand.
"""

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import DistillError, RecordError
from .records import Record, read_records, record_key

# Overlaps listed in full in the error; the rest are counted.
MAX_LISTED = 10


class LeakageError(DistillError):
    """A train set holds variants of (or copies of) evaluation records."""


def normalize_text(text: str) -> str:
    """Case and whitespace folded, so that "Free  cash" and "free cash" count as one text."""
    return " ".join(text.casefold().split())


class EvalIndex:
    """The keys and texts of the evaluation records, each with where it was found."""

    def __init__(self) -> None:
        self.keys: Dict[str, str] = {}
        self.texts: Dict[str, str] = {}

    @classmethod
    def from_paths(cls, paths: Iterable[Union[str, Path]]) -> "EvalIndex":
        """Read evaluation sets: JSONL/CSV records or `.spacy` target files (or folders of them).

        paths (Iterable[Union[str, Path]]): the evaluation files.
        RETURNS (EvalIndex): their keys and texts.
        """
        index = cls()
        for path in paths:
            path = Path(path)
            if path.is_dir() or path.suffix == ".spacy":
                index._add_target_file(path)
            else:
                # Every evaluation text is protected, also one whose id an earlier record has.
                for item in read_records(path, unique_ids=False):
                    if isinstance(item, RecordError):
                        continue  # a malformed eval line holds no text to protect
                    index.add(item.key, item.text, f"{item.source}:{item.line}")
        return index

    def _add_target_file(self, path: Path) -> None:
        from spacy.vocab import Vocab

        from .targets import USER_DATA_KEY, iter_target_files, read_targets

        for file_path in iter_target_files(path):
            for i, doc in enumerate(read_targets(file_path, Vocab(), require_target=False)):
                provenance = (doc.user_data.get(USER_DATA_KEY) or {}).get("provenance") or {}
                source, line, doc_id = (
                    provenance.get("source"),
                    provenance.get("line"),
                    provenance.get("id"),
                )
                where = f"{file_path}: doc {i}" + (f" ({source}:{line})" if source else "")
                key = record_key(doc_id, source, line) if (doc_id is not None or source) else None
                self.add(key, doc.text, where)

    def add(self, key: Optional[str], text: str, where: str) -> None:
        if key is not None:
            self.keys.setdefault(key, where)
        self.texts.setdefault(normalize_text(text), where)

    def __len__(self) -> int:
        return len(self.texts)

    def find(self, parent: Optional[str], text: str) -> Optional[str]:
        """Why an augmented text leaks (its parent or its text is an eval record), or None."""
        if parent is not None and parent in self.keys:
            return f"its parent {parent!r} is the evaluation record {self.keys[parent]}"
        hit = self.texts.get(normalize_text(text))
        if hit is not None:
            return f"its text is that of the evaluation record {hit}"
        return None


def find_leaks(items: Iterable[Tuple[str, Optional[str], str]], index: EvalIndex) -> List[str]:
    """The augmented texts that leak.

    items (Iterable[Tuple[str, Optional[str], str]]): (where, parent, text) per train text;
        texts whose parent is None (originals) are skipped.
    index (EvalIndex): the evaluation records.
    RETURNS (List[str]): one line per leaking text.
    """
    leaks = []
    for where, parent, text in items:
        if parent is None:
            continue
        reason = index.find(parent, text)
        if reason is not None:
            leaks.append(f"{where}: {reason}")
    return leaks


def raise_on_leaks(
    leaks: Sequence[str],
    train_name: str,
    eval_paths: Sequence[Union[str, Path]],
    what: str = "augmented text(s)",
) -> None:
    """Raise a LeakageError that names the leaking texts and what they overlap."""
    if not leaks:
        return
    listed = "\n  ".join(leaks[:MAX_LISTED])
    more = f"\n  ... and {len(leaks) - MAX_LISTED} more" if len(leaks) > MAX_LISTED else ""
    raise LeakageError(
        f"{train_name}: {len(leaks)} {what} overlap the evaluation set "
        f"({', '.join(str(p) for p in eval_paths)}):\n  {listed}{more}\n"
        "Variants of evaluation records would inflate every score: augment the training split "
        "only (augmenting with `eval_data` catches this early) and drop these texts."
    )


def check_records(
    records: Iterable[Record], eval_paths: Sequence[Union[str, Path]], train_name: str
) -> None:
    """Refuse input records whose augmented texts overlap the evaluation sets.

    records (Iterable[Record]): the train records.
    eval_paths (Sequence[Union[str, Path]]): the evaluation sets (JSONL/CSV or `.spacy`).
    train_name (str): the train set, for the error.
    """
    if not eval_paths:
        return
    index = EvalIndex.from_paths(eval_paths)
    items = (
        (f"{r.source}:{r.line}" + (f" (id {r.id!r})" if r.id is not None else ""), r.parent, r.text)
        for r in records
    )
    raise_on_leaks(find_leaks(items, index), train_name, eval_paths)


__all__ = [
    "MAX_LISTED",
    "EvalIndex",
    "LeakageError",
    "check_records",
    "find_leaks",
    "normalize_text",
    "raise_on_leaks",
]
