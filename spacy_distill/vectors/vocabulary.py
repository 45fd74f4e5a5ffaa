"""The word types a static-embedding student embeds: counted in the student's training data.

Words are keyed by a lexical attribute (the lowercase form by default), the same attribute the
student's embedding layer reads from each token, so every counted word has a row and every other
token falls back to the out-of-vocabulary row.
"""

import hashlib
from collections import Counter
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import spacy
from spacy.tokens import DocBin

from ..errors import DistillError

# Our name -> spaCy's token attribute (what `doc.to_array` reads) and the Token property.
WORD_ATTRS = {"lower": ("LOWER", "lower_"), "norm": ("NORM", "norm_"), "orth": ("ORTH", "orth_")}


def check_word_attr(attr: str) -> str:
    """The attribute, if known; else a DistillError naming the choices."""
    if attr not in WORD_ATTRS:
        raise DistillError(f"word attribute must be one of {tuple(WORD_ATTRS)}, got {attr!r}")
    return attr


class Vocabulary:
    """Word types and their counts, most frequent first (ties alphabetical: deterministic)."""

    def __init__(self, words: Sequence[str], counts: Sequence[int], attr: str = "lower") -> None:
        if len(words) != len(counts):
            raise DistillError(f"{len(words)} words but {len(counts)} counts")
        self.words: List[str] = list(words)
        self.counts: List[int] = [int(c) for c in counts]
        self.attr = check_word_attr(attr)

    def __len__(self) -> int:
        return len(self.words)

    @property
    def hash(self) -> str:
        """sha256 of the attribute and the words in order: what a cache entry is keyed by."""
        digest = hashlib.sha256(self.attr.encode("utf8"))
        for word in self.words:
            digest.update(b"\x00" + word.encode("utf8"))
        return digest.hexdigest()

    @property
    def total(self) -> int:
        return sum(self.counts)


def count_words(
    paths: Iterable[Union[str, Path]],
    *,
    attr: str = "lower",
    min_count: int = 1,
    max_words: Optional[int] = None,
    lang: str = "en",
) -> Vocabulary:
    """Count the word types of DocBin files (target files are DocBins).

    paths (Iterable[Union[str, Path]]): .spacy files, e.g. the train and dev target files.
    attr (str): "lower", "norm" or "orth": how tokens are keyed.
    min_count (int): drop words seen fewer times.
    max_words (Optional[int]): keep the most frequent N (None: all).
    lang (str): the language whose vocab decodes the files.
    RETURNS (Vocabulary): the word types, most frequent first.
    """
    check_word_attr(attr)
    if min_count < 1:
        raise DistillError(f"min_count must be >= 1, got {min_count}")
    if max_words is not None and max_words < 1:
        raise DistillError(f"max_words must be >= 1 or None, got {max_words}")
    prop = WORD_ATTRS[attr][1]
    vocab = spacy.blank(lang).vocab
    counts: Counter = Counter()
    paths = [Path(p) for p in paths]
    if not paths:
        raise DistillError("no data files to count words in")
    for path in paths:
        if not path.is_file():
            raise DistillError(f"{path}: data file not found")
        try:
            docs = DocBin().from_disk(path).get_docs(vocab)
        except (ValueError, KeyError) as err:
            raise DistillError(f"{path}: not a DocBin (.spacy) file ({err})") from err
        for doc in docs:
            # Whitespace tokens carry no meaning of their own: they share the unknown-word row.
            counts.update(getattr(t, prop) for t in doc if not t.is_space)
    ranked = sorted(
        (item for item in counts.items() if item[1] >= min_count), key=lambda wc: (-wc[1], wc[0])
    )
    if max_words is not None:
        ranked = ranked[:max_words]
    if not ranked:
        raise DistillError(
            f"{', '.join(map(str, paths))}: no word occurs at least {min_count} time(s)"
        )
    return Vocabulary([w for w, _ in ranked], [c for _, c in ranked], attr)
