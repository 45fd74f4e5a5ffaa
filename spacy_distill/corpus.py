"""A corpus reader for teacher-target files, for `[corpora]` in a training config."""
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from spacy.language import Language
from spacy.training import Example

from .registry import registry
from .targets import USER_DATA_KEY, read_targets


class TargetCorpus:
    """Yields training examples from a target file or a directory of them.

    Every doc is validated as it is read, so a bad file fails with its path, doc index and
    field before training uses it. The reference doc keeps the teacher's target in its user
    data and the gold labels in `doc.cats`.
    """

    def __init__(
        self, path: Union[str, Path], *, limit: int = 0, require_gold: bool = False
    ) -> None:
        """
        path (Union[str, Path]): a `.spacy` target file or a directory of them.
        limit (int): stop after this many examples (0: no limit).
        require_gold (bool): skip docs without gold cats (for gold-only baselines).
        """
        if path is None:
            raise ValueError("TargetCorpus: no path given; set [paths] train/dev in the config")
        self.path = Path(path)
        self.limit = limit
        self.require_gold = require_gold

    def __call__(self, nlp: Language) -> Iterator[Example]:
        count = 0
        for doc in read_targets(self.path, nlp.vocab, require_target=False):
            if self.require_gold and not doc.cats:
                continue
            if USER_DATA_KEY not in doc.user_data and not doc.cats:
                continue  # a doc that carries neither a teacher nor gold teaches nothing
            yield Example(nlp.make_doc(doc.text), doc)
            count += 1
            if self.limit and count >= self.limit:
                break


@registry.readers("spacy-distill.TargetCorpus.v1")
def create_target_corpus_reader(
    path: Optional[Path], limit: int = 0, require_gold: bool = False
) -> Callable[[Language], Iterator[Example]]:
    """Read teacher-target files as a training or evaluation corpus.

    path (Optional[Path]): a `.spacy` target file or a directory of them.
    limit (int): stop after this many examples (0: no limit).
    require_gold (bool): keep only docs with gold cats.
    RETURNS (Callable[[Language], Iterator[Example]]): the corpus.
    """
    return TargetCorpus(path, limit=limit, require_gold=require_gold)
