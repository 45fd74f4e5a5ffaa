"""`spacy-distill word-vectors`: count the training vocabulary, encode each word with the teacher
(cached) or average its stored in-context token states, reduce, weight and save. See `encode`,
`contextual` and `reduce` for the why of each step."""

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy

from ..annotation.cache import TeacherCache
from ..arguments import check_float_argument, check_int_argument
from .contextual import average_token_states
from .encode import TeacherWordEncoder, encode_words
from .reduce import DEFAULT_SIF_COEFFICIENT, frequency_weights, pca_reduce
from .subwords import DEFAULT_MAX_N, DEFAULT_MIN_N, check_ngram_settings, fit_ngram_vectors
from .table import WordVectors
from .vocabulary import Vocabulary, count_words

DEFAULT_DIMS = 256


def build_word_vectors(
    teacher: Any,
    data: Iterable[Union[str, Path]],
    output: Optional[Union[str, Path]] = None,
    *,
    dims: int = DEFAULT_DIMS,
    attr: str = "lower",
    min_count: int = 1,
    max_words: Optional[int] = None,
    weighting: str = "sif",
    sif_coefficient: float = DEFAULT_SIF_COEFFICIENT,
    layer: Optional[int] = None,
    pooling: Optional[str] = None,
    cache: Optional[Union[str, Path]] = None,
    batch_size: int = 256,
    lang: str = "en",
    show_progress: bool = True,
    teacher_vocab: bool = False,
    subword_buckets: int = 0,
    min_n: int = DEFAULT_MIN_N,
    max_n: int = DEFAULT_MAX_N,
) -> Dict[str, Any]:
    """Teacher-derived word vectors for the words of the data files.

    teacher: a teacher with `features` or `hidden_states` (see `TeacherWordEncoder`).
    data (Iterable[Union[str, Path]]): .spacy target files whose words are embedded.
    output (Optional[Union[str, Path]]): the folder to write (None: write nothing).
    dims (int): PCA dimensions (capped at the number of words and the teacher's width).
    attr (str): how words are keyed: "lower", "norm" or "orth".
    min_count (int): drop rarer words (they share the unknown-word row).
    max_words (Optional[int]): keep the most frequent N words.
    weighting (str): "sif", "zipf" or "none" (see `reduce`).
    sif_coefficient (float): the SIF coefficient a.
    layer, pooling (Optional): teacher hidden layer and pooling (None: the teacher's own).
    cache (Optional[Union[str, Path]]): the teacher cache file (None: no cache).
    batch_size (int): words per teacher call.
    lang (str): the language of the data files.
    show_progress (bool): progress bar with rate and time left.
    teacher_vocab (bool): also embed the whole words of the teacher tokenizer's vocabulary (see
        `teacher_vocab`): words the data never showed get the teacher's vectors too.
    subword_buckets (int): fit this many hashed character n-gram vectors to the word vectors
        (see `subwords`; the fallback of `StaticEmbeddings.v2` for unseen words); 0: none.
    min_n, max_n (int): the character n-gram sizes.
    RETURNS (Dict[str, Any]): "vectors" (WordVectors), "n_words", "n_cached", "n_encoded",
        "seconds", "explained_variance", "output", "n_teacher_words" (words added from the
        teacher's vocabulary).
    """
    # Before the cache file is opened and any word is encoded.
    check_int_argument("batch_size", batch_size, 1)
    if layer is not None:
        check_int_argument("layer", layer)
    settings = _Settings.from_arguments(locals())
    paths, vocabulary = settings.vocabulary(data)
    n_teacher_words = 0
    if teacher_vocab:
        from .teacher_vocab import teacher_words

        known = set(vocabulary.words)
        extra = [w for w in teacher_words(teacher, attr) if w not in known]
        n_teacher_words = len(extra)
        # Count 0: p(word) = 0 under SIF, the weight of the rarest data words.
        vocabulary = Vocabulary(
            vocabulary.words + extra, vocabulary.counts + [0] * len(extra), vocabulary.attr
        )
    encoder = TeacherWordEncoder(teacher, layer=layer, pooling=pooling)
    store = TeacherCache(cache) if cache is not None else None
    try:
        encoded = encode_words(
            encoder,
            vocabulary.words,
            cache=store,
            batch_size=batch_size,
            show_progress=show_progress,
        )
    finally:
        if store is not None:
            store.close()
    meta = {
        "teacher": {"id": encoder.teacher_id, "fingerprint": teacher.fingerprint},
        "encoder": {
            "method": encoder.method,
            "settings": encoder.settings,
            "fingerprint": encoder.fingerprint,
            "teacher_width": int(encoded["vectors"].shape[1]),
        },
    }
    meta["vocabulary_extra"] = {
        "teacher_vocab": bool(teacher_vocab),
        "n_teacher_words": n_teacher_words,
    }
    result = settings.reduce_and_save(encoded["vectors"], vocabulary, paths, meta, output)
    result.update(
        n_cached=encoded["n_cached"],
        n_encoded=encoded["n_encoded"],
        seconds=encoded["seconds"],
        n_teacher_words=n_teacher_words,
    )
    return result


def build_word_vectors_from_token_states(
    data: Iterable[Union[str, Path]],
    output: Optional[Union[str, Path]] = None,
    *,
    dims: int = DEFAULT_DIMS,
    attr: str = "lower",
    min_count: int = 1,
    max_words: Optional[int] = None,
    weighting: str = "sif",
    sif_coefficient: float = DEFAULT_SIF_COEFFICIENT,
    lang: str = "en",
    show_progress: bool = True,
    subword_buckets: int = 0,
    min_n: int = DEFAULT_MIN_N,
    max_n: int = DEFAULT_MAX_N,
) -> Dict[str, Any]:
    """Word vectors from the teacher's in-context token states stored in the data files
    (`annotate --hidden token|both`): each word type's mean state, reduced and weighted as
    `build_word_vectors` does. No teacher call. See `contextual`.

    data (Iterable[Union[str, Path]]): .spacy target files with token-level hidden states.
    Other arguments: as `build_word_vectors`.
    RETURNS (Dict[str, Any]): as `build_word_vectors` ("n_encoded" 0), plus "n_missing" (word
        types with no state) and "n_docs".
    """
    settings = _Settings.from_arguments(locals())
    paths, vocabulary = settings.vocabulary(data)
    start = time.time()
    averaged = average_token_states(paths, vocabulary, lang=lang, show_progress=show_progress)
    counts = averaged["n_states"]
    meta = {
        "teacher": averaged["teacher"],
        "encoder": {
            "method": "token-states",
            "settings": averaged["source"],
            "teacher_width": int(averaged["vectors"].shape[1]),
            "n_docs": averaged["n_docs"],
            "n_missing": averaged["n_missing"],
            "median_states_per_word": float(numpy.median(counts)),
        },
    }
    result = settings.reduce_and_save(averaged["vectors"], vocabulary, paths, meta, output)
    result.update(
        n_cached=0,
        n_encoded=0,
        seconds=time.time() - start,
        n_missing=averaged["n_missing"],
        n_docs=averaged["n_docs"],
    )
    return result


@dataclass(frozen=True)
class _Settings:
    """The settings both sources of vectors take: where they start (the counted vocabulary)
    and how they end (reduced, weighted and saved)."""

    dims: int
    attr: str
    min_count: int
    max_words: Optional[int]
    weighting: str
    sif_coefficient: float
    lang: str
    subword_buckets: int
    min_n: int
    max_n: int

    @classmethod
    def from_arguments(cls, arguments: Dict[str, Any]) -> "_Settings":
        """The settings among a builder's arguments (its `locals()`), checked before any file is
        read: a bad number would otherwise fail after the (slow) encoding or averaging."""
        settings = cls(**{field.name: arguments[field.name] for field in fields(cls)})
        check_int_argument("dims", settings.dims, 1)
        check_int_argument("min_count", settings.min_count, 1)
        if settings.max_words is not None:
            check_int_argument("max_words", settings.max_words, 1)
        check_float_argument("sif_coefficient", settings.sif_coefficient, 0.0, above_minimum=True)
        check_int_argument("subword_buckets", settings.subword_buckets, 0)
        if settings.subword_buckets:
            check_int_argument("min_n", settings.min_n, 1)
            check_int_argument("max_n", settings.max_n, settings.min_n)
        return settings

    def vocabulary(self, data: Iterable[Union[str, Path]]) -> Tuple[List[Path], Vocabulary]:
        """The data paths and their counted words."""
        paths = [Path(p) for p in data]
        vocabulary = count_words(
            paths,
            attr=self.attr,
            min_count=self.min_count,
            max_words=self.max_words,
            lang=self.lang,
        )
        return paths, vocabulary

    def reduce_and_save(
        self,
        raw: numpy.ndarray,
        vocabulary: Vocabulary,
        paths: List[Path],
        meta: Dict[str, Any],
        output: Optional[Union[str, Path]],
    ) -> Dict[str, Any]:
        """PCA, frequency weights, subword vectors, the meta and the folder."""
        dims, weighting, sif_coefficient = self.dims, self.weighting, self.sif_coefficient
        subword_buckets, min_n, max_n = self.subword_buckets, self.min_n, self.max_n
        if subword_buckets:
            check_ngram_settings(subword_buckets, min_n, max_n)
        dims_used = min(int(dims), len(vocabulary), raw.shape[1])
        reduced, reduction = pca_reduce(raw, dims_used)
        weights = frequency_weights(vocabulary.counts, weighting, sif_coefficient)
        if weights is not None:
            reduced = reduced * weights[:, None]
        meta = {
            **meta,
            "vocabulary": {
                "hash": vocabulary.hash,
                "data": [str(p) for p in paths],
                "min_count": self.min_count,
                "max_words": self.max_words,
                "n_tokens": vocabulary.total,
            },
            "reduction": {
                "method": "pca",
                "standardized": True,
                "dims_requested": int(dims),
                **reduction,
            },
            "weighting": {
                "method": weighting,
                "coefficient": sif_coefficient if weighting != "none" else None,
            },
        }
        subwords = None
        if subword_buckets:
            # Fitted to the final (reduced, weighted) vectors: what the student's table starts from.
            subwords, fit = fit_ngram_vectors(
                vocabulary.words, reduced, buckets=subword_buckets, min_n=min_n, max_n=max_n
            )
            meta["subwords"] = {
                "method": "hashed-char-ngrams",
                "hash": "murmurhash.hash_unicode",
                "buckets": int(subword_buckets),
                "min_n": int(min_n),
                "max_n": int(max_n),
                **fit,
            }
        vectors = WordVectors(
            vocabulary.words, reduced, attr=vocabulary.attr, meta=meta, subwords=subwords
        )
        if output is not None:
            vectors.to_disk(output)
        return {
            "vectors": vectors,
            "subwords": meta.get("subwords"),
            "n_words": len(vocabulary),
            "explained_variance": reduction["explained_variance"],
            "output": None if output is None else str(output),
        }
