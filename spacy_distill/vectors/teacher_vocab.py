"""The teacher's own word list: the whole-word entries of its tokenizer's vocabulary.

A student whose vocabulary is only the training data's words meets many words at test time that
it never saw (on 9,213 tweets about a third of the test word types). The teacher's tokenizer
knows tens of thousands of common words (BERT's WordPiece vocabulary holds about 22,000 whole
words): encoded by the teacher, each starts with the teacher's idea of it, at the cost of one
teacher call per 256 words at `word-vectors` time and nothing at run time.
"""

from typing import Any, List, Optional, Protocol, runtime_checkable

from ..errors import DistillError
from ..hf.features import HFHiddenStates
from ..teacher_protocol import TeacherBase

# Markers of a piece that starts a word: byte-level BPE (GPT-2, Llama 3, SmolLM) and
# SentencePiece. WordPiece marks the opposite: continuation pieces start with "##".
_WORD_START = ("Ġ", "▁")


@runtime_checkable
class _TokenizerOwner(Protocol):
    """A teacher written without `TeacherBase` that holds its Hugging Face tokenizer."""

    tokenizer: Any


def find_tokenizer(teacher: Any) -> Optional[Any]:
    """The Hugging Face tokenizer behind a teacher, if it has one: its `hf_tokenizer` (HF
    teachers, probes and their extractor, spaCy pipelines with a spacy-transformers
    `transformer`), or the `tokenizer` of a teacher written without `TeacherBase`."""
    if isinstance(teacher, (TeacherBase, HFHiddenStates)):
        tokenizer = teacher.hf_tokenizer
    elif isinstance(teacher, _TokenizerOwner):
        tokenizer = teacher.tokenizer
    else:
        return None
    return tokenizer if callable(getattr(tokenizer, "get_vocab", None)) else None


def teacher_words(teacher: Any, attr: str = "lower") -> List[str]:
    """The whole words of the teacher tokenizer's vocabulary, keyed as `attr` keys words.

    teacher: a teacher with a Hugging Face tokenizer (see `find_tokenizer`).
    attr (str): "lower" lowercases; "norm" and "orth" keep the pieces as they are.
    RETURNS (List[str]): distinct words with at least one letter or digit, in the tokenizer's id order.
    """
    tokenizer = find_tokenizer(teacher)
    if tokenizer is None:
        raise DistillError(
            f"teacher {teacher.teacher_id} has no Hugging Face tokenizer "
            "whose vocabulary could add words; leave out `teacher_vocab`"
        )
    vocab = tokenizer.get_vocab()
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    pieces = sorted(vocab.items(), key=lambda item: item[1])
    marked = sum(piece.startswith(_WORD_START) for piece, _ in pieces) > len(pieces) // 10
    words, seen = [], set()
    for piece, _ in pieces:
        if (
            piece in special
            or piece.startswith("##")
            or (piece.startswith("[") and piece.endswith("]"))
        ):
            continue
        if marked:
            if not piece.startswith(_WORD_START):
                continue
            piece = piece[1:]
        if attr == "lower":
            piece = piece.lower()
        if (
            not piece
            or piece in seen
            or not any(c.isalnum() for c in piece)
            or any(c.isspace() for c in piece)
        ):
            continue
        seen.add(piece)
        words.append(piece)
    return words
