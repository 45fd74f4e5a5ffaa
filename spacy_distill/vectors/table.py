"""Teacher-derived word vectors on disk: what a static-embedding student is initialised from.

A folder with `words.json` (the word types, keyed as `meta.json`'s "attr" says), `vectors.npy`
((n_words, dims) float32, PCA-ordered columns) and `meta.json` (format, version, the teacher's id
and fingerprint, the vocabulary hash and the settings that made them). Version 2 folders may also
hold `subwords.npy`: (buckets, dims) vectors of hashed character n-grams fitted to the word
vectors (`subwords`; their hashing settings under meta's "subwords"), the fallback for words
the vocabulary lacks. Version 1 folders are read as before. The student copies the
vectors into its own weights at initialisation, so a trained student needs neither this folder
nor the teacher.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy
import srsly

from ..errors import DistillError
from .vocabulary import check_word_attr

FORMAT = "spacy-distill.word-vectors"
VERSION = 2
READABLE_VERSIONS = (1, 2)
WORDS_FILE = "words.json"
VECTORS_FILE = "vectors.npy"
SUBWORDS_FILE = "subwords.npy"
META_FILE = "meta.json"


class WordVectors:
    """Word types and their vectors, plus where they came from."""

    def __init__(
        self,
        words: Sequence[str],
        vectors: numpy.ndarray,
        *,
        attr: str = "lower",
        meta: Dict[str, Any] = None,
        subwords: Optional[numpy.ndarray] = None,
    ):
        """
        words (Sequence[str]): the word types.
        vectors (numpy.ndarray): (n_words, dims) their vectors.
        attr (str): how words are keyed.
        meta (Dict[str, Any]): provenance; with `subwords`, meta["subwords"] holds their
            "buckets", "min_n" and "max_n".
        subwords (Optional[numpy.ndarray]): (buckets, dims) character n-gram vectors, or None.
        """
        vectors = numpy.asarray(vectors, dtype="float32")
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise DistillError(f"{len(words)} words but vectors of shape {vectors.shape}")
        if len(set(words)) != len(words):
            raise DistillError("word vectors hold a word twice")
        self.words: List[str] = list(words)
        self.vectors = vectors
        self.attr = check_word_attr(attr)
        self.meta: Dict[str, Any] = dict(meta or {})
        self.subwords: Optional[numpy.ndarray] = None
        if subwords is not None:
            subwords = numpy.asarray(subwords, dtype="float32")
            settings = self.meta.get("subwords") or {}
            if subwords.ndim != 2 or subwords.shape != (settings.get("buckets"), self.dims):
                raise DistillError(
                    f"subword vectors of shape {subwords.shape} disagree with {settings.get('buckets')} buckets "
                    f"of {self.dims} dims (meta 'subwords')"
                )
            self.subwords = subwords

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    def to_disk(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / WORDS_FILE, self.words)
        numpy.save(path / VECTORS_FILE, self.vectors)
        if self.subwords is not None:
            numpy.save(path / SUBWORDS_FILE, self.subwords)
        elif (path / SUBWORDS_FILE).exists():
            (path / SUBWORDS_FILE).unlink()
        meta = {
            **self.meta,
            "format": FORMAT,
            "version": VERSION,
            "attr": self.attr,
            "n_words": len(self.words),
            "dims": self.dims,
        }
        srsly.write_json(path / META_FILE, meta)
        return path

    @classmethod
    def from_disk(cls, path: Union[str, Path]) -> "WordVectors":
        path = Path(path)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise DistillError(
                f"{path}: no word vectors there (no {META_FILE}); make them with "
                "`spacy-distill word-vectors OUTPUT --teacher TEACHER --data TRAIN.spacy`"
            )
        meta = srsly.read_json(meta_path)
        if meta.get("format") != FORMAT:
            raise DistillError(
                f"{meta_path}: field 'format' is {meta.get('format')!r}, expected {FORMAT!r}"
            )
        if meta.get("version") not in READABLE_VERSIONS:
            raise DistillError(
                f"{meta_path}: field 'version' is {meta.get('version')!r}; this spacy-distill reads {READABLE_VERSIONS}"
            )
        try:
            words = srsly.read_json(path / WORDS_FILE)
            vectors = numpy.load(path / VECTORS_FILE, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DistillError(
                f"{path}: cannot read {WORDS_FILE} / {VECTORS_FILE} ({err})"
            ) from err
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise DistillError(f"{path / WORDS_FILE}: expected a JSON list of strings")
        if vectors.shape != (meta.get("n_words"), meta.get("dims")):
            raise DistillError(
                f"{path / VECTORS_FILE}: shape {vectors.shape} disagrees with {META_FILE} "
                f"(n_words={meta.get('n_words')}, dims={meta.get('dims')})"
            )
        if not numpy.isfinite(vectors).all():
            raise DistillError(f"{path / VECTORS_FILE}: holds non-finite values")
        subwords = None
        if meta.get("subwords"):
            try:
                subwords = numpy.load(path / SUBWORDS_FILE, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise DistillError(
                    f"{path}: meta.json names subword vectors but {SUBWORDS_FILE} cannot be read ({err})"
                ) from err
            if not numpy.isfinite(subwords).all():
                raise DistillError(f"{path / SUBWORDS_FILE}: holds non-finite values")
        keep = {
            k: v
            for k, v in meta.items()
            if k not in ("format", "version", "attr", "n_words", "dims")
        }
        return cls(words, vectors, attr=meta.get("attr", "lower"), meta=keep, subwords=subwords)
