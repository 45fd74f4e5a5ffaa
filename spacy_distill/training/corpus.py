"""A corpus reader for teacher-target files, for `[corpora]` in a training config."""

from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Union

from spacy.language import Language
from spacy.training import Example

from ..data.msgpack_codecs import cached_msgpack_codecs
from ..data.targets import USER_DATA_KEY, read_targets
from ..registry import registry


class TargetCorpus:
    """Yields training examples from a target file or a directory of them (without the scratch
    files of annotate runs that stopped: see `spacy_distill.data.targets.is_scratch_file`).

    Every doc is validated as it is read, so a bad file fails with its path, doc index and
    field before training uses it. The reference doc keeps the teacher's target in its user
    data and the gold labels in `doc.cats`.
    """

    def __init__(
        self,
        path: Union[str, Path],
        *,
        limit: int = 0,
        require_gold: bool = False,
        eval_paths: Sequence[Union[str, Path]] = (),
    ) -> None:
        """
        path (Union[str, Path]): a `.spacy` target file or a directory of them.
        limit (int): stop after this many examples (0: no limit).
        require_gold (bool): skip docs without gold cats (for gold-only baselines).
        eval_paths (Sequence[Union[str, Path]]): evaluation sets (`.spacy` or JSONL/CSV); the
            first read fails if an augmented doc's parent or text is one of theirs.
        """
        if path is None:
            raise ValueError("TargetCorpus: no path given; set [paths] train/dev in the config")
        self.path = Path(path)
        self.limit = limit
        self.require_gold = require_gold
        self.eval_paths = _eval_path_list(eval_paths)
        self._checked = False

    def check_leakage(self) -> None:
        """Refuse augmented docs whose parent or text is in the evaluation sets (once)."""
        if self._checked or not self.eval_paths:
            return
        from ..data.leakage import EvalIndex, find_leaks, raise_on_leaks
        from ..data.targets import get_target

        index = EvalIndex.from_paths(self.eval_paths)
        items = []
        with cached_msgpack_codecs():
            for i, doc in enumerate(read_targets(self.path, require_target=False)):
                target = get_target(doc)
                if target is not None and target.provenance.parent is not None:
                    where = f"{self.path}: doc {i} ({target.provenance.describe()})"
                    items.append((where, target.provenance.parent, doc.text))
        raise_on_leaks(find_leaks(items, index), str(self.path), self.eval_paths)
        self._checked = True

    def __call__(self, nlp: Language) -> Iterator[Example]:
        self.check_leakage()
        count = 0
        # Each doc's user data is unpacked by srsly; see msgpack_codecs for why this matters.
        with cached_msgpack_codecs():
            for doc in read_targets(self.path, nlp.vocab, require_target=False):
                if self.require_gold and not doc.cats:
                    continue
                if USER_DATA_KEY not in doc.user_data and not doc.cats:
                    continue  # a doc that carries neither a teacher nor gold teaches nothing
                yield Example(nlp.make_doc(doc.text), doc)
                count += 1
                if self.limit and count >= self.limit:
                    break


def _eval_path_list(values: Sequence[Union[str, Path, None]]) -> List[Path]:
    # confection interpolates ["${paths.dev}", "${paths.test}"] into ONE string,
    # "corpus/dev.spacy, corpus/test.spacy" (and an unset path into "null"): split it back.
    paths: List[Path] = []
    for value in values:
        if value is None:
            continue
        parts = [str(value)] if Path(str(value)).exists() else str(value).split(", ")
        paths.extend(Path(part) for part in parts if part.strip() not in ("", "null", "None"))
    return paths


@registry.readers("spacy-distill.TargetCorpus.v1")
def create_target_corpus_reader(
    path: Optional[Path],
    limit: int = 0,
    require_gold: bool = False,
    eval_paths: Optional[List[Optional[Path]]] = None,
) -> Callable[[Language], Iterator[Example]]:
    """Read teacher-target files as a training or evaluation corpus.

    path (Optional[Path]): a `.spacy` target file or a directory of them.
    limit (int): stop after this many examples (0: no limit).
    require_gold (bool): keep only docs with gold cats.
    eval_paths (Optional[List[Optional[Path]]]): for the train corpus: the evaluation sets,
        e.g. `["${paths.dev}"]`; training stops if an augmented doc's parent or text is in them
        (None entries, as an unset `${paths.test}`, are ignored).
    RETURNS (Callable[[Language], Iterator[Example]]): the corpus.
    """
    return TargetCorpus(path, limit=limit, require_gold=require_gold, eval_paths=eval_paths or ())
