"""What strategies know about a text: the current student's probabilities, how unsure it is
(`uncertainty`), and a feature vector for diversity (hashed character n-grams, or the student's
own doc vectors).

The student runs with its `semantic_filter` disabled: selection scores texts, it must never
escalate them to a cascade teacher (that would be a teacher call outside the budget).
"""

from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
import spacy
from spacy.language import Language

from ..data.records import Record
from ..errors import DistillError
from ..pipeline.textcat_lookup import find_textcat, is_exclusive

UNCERTAINTY_MEASURES = ("margin", "entropy")
FEATURE_KINDS = ("hashed", "student")
SCORE_BATCH = 256
# Hashed character n-grams, projected to this many dimensions (cosine geometry is kept closely
# enough for k-center and k-means, at 512 bytes per text).
HASHED_DIMENSIONS = 128
_HASHED_BUCKETS = 2**18


class StudentScorer:
    """A student pipeline's probabilities per text, in the order of its labels."""

    def __init__(self, student: Union[str, Path, Language], textcat: Optional[str] = None) -> None:
        """
        student (Union[str, Path, Language]): a pipeline path (or package name) or a loaded one.
        textcat (Optional[str]): its text classifier (None: the only one).
        """
        if isinstance(student, Language):
            self.nlp = student
        else:
            try:
                self.nlp = spacy.load(student)
            except OSError as err:
                raise DistillError(
                    f"student: cannot load the pipeline {student!r} ({err})"
                ) from err
        self.textcat = find_textcat(self.nlp, textcat)
        self.labels: Tuple[str, ...] = tuple(self.nlp.get_pipe(self.textcat).labels)
        self.exclusive = is_exclusive(self.nlp, self.textcat)
        # Everything after the classifier (a semantic_filter and its cascade) stays off.
        index = self.nlp.pipe_names.index(self.textcat)
        self._disabled = self.nlp.pipe_names[index + 1 :]

    def probabilities(self, texts: Sequence[str]) -> numpy.ndarray:
        """(n, labels) the student's probabilities."""
        docs = self.nlp.pipe(texts, batch_size=SCORE_BATCH, disable=self._disabled)
        rows = [[doc.cats.get(label, 0.0) for label in self.labels] for doc in docs]
        return numpy.asarray(rows, dtype="float64").reshape(len(texts), len(self.labels))

    def doc_vectors(self, texts: Sequence[str]) -> numpy.ndarray:
        """(n, width) the pipeline's doc vectors (its static vectors' mean)."""
        if not len(self.nlp.vocab.vectors):
            raise DistillError(
                "features 'student': the student has no word vectors; use features 'hashed'"
            )
        docs = self.nlp.pipe(texts, batch_size=SCORE_BATCH, disable=self.nlp.pipe_names)
        return numpy.asarray([doc.vector for doc in docs], dtype="float32")


def load_scorer(
    student: Union[None, str, Path, Language, StudentScorer],
) -> Optional[StudentScorer]:
    if student is None or isinstance(student, StudentScorer):
        return student
    return StudentScorer(student)


def uncertainty(probs: numpy.ndarray, exclusive: bool, measure: str = "margin") -> numpy.ndarray:
    """(n,) how unsure each row is, in [0, 1] (1: a coin toss).

    margin: exclusive, 1 - (top - second probability); multi-label, 1 - the smallest distance
    of a label's probability from 0.5, doubled (the label closest to its threshold decides).
    entropy: exclusive, Shannon entropy / log(labels); multi-label, the mean binary entropy.
    """
    if measure not in UNCERTAINTY_MEASURES:
        raise DistillError(
            f"measure: expected one of {list(UNCERTAINTY_MEASURES)}, got {measure!r}"
        )
    probs = numpy.clip(numpy.asarray(probs, dtype="float64"), 0.0, 1.0)
    n, k = probs.shape
    if not n:
        return numpy.zeros(0)
    if measure == "margin":
        if exclusive and k >= 2:
            top = -numpy.sort(-probs, axis=1)
            return 1.0 - (top[:, 0] - top[:, 1])
        return 1.0 - numpy.abs(2.0 * probs - 1.0).min(axis=1)
    with numpy.errstate(divide="ignore", invalid="ignore"):
        if exclusive and k >= 2:
            p = probs / numpy.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
            return -numpy.nansum(p * numpy.log(numpy.where(p > 0, p, 1.0)), axis=1) / numpy.log(k)
        q = 1.0 - probs
        h = -(probs * numpy.log2(numpy.where(probs > 0, probs, 1.0)))
        h -= q * numpy.log2(numpy.where(q > 0, q, 1.0))
        return h.mean(axis=1)


def describe_uncertainty(probs: numpy.ndarray, labels: Sequence[str], exclusive: bool) -> str:
    """The two labels the student hesitates between (exclusive) or the label closest to its
    threshold (multi-label), with their probabilities."""
    if exclusive and len(labels) >= 2:
        first, second = numpy.argsort(-probs, kind="stable")[:2]
        return (
            f"student torn between '{labels[first]}' ({probs[first]:.2f}) and "
            f"'{labels[second]}' ({probs[second]:.2f})"
        )
    closest = int(numpy.argmin(numpy.abs(probs - 0.5)))
    return f"student unsure of '{labels[closest]}' ({probs[closest]:.2f})"


class HashedFeatures:
    """Texts as unit vectors: hashed character 2-4-gram counts (within words), projected
    to HASHED_DIMENSIONS by a seeded sparse random projection. No fitting, so any text gets the
    same vector in any run or batch."""

    def __init__(self, seed: int = 0) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer
        from sklearn.random_projection import SparseRandomProjection

        self._vectorizer = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=(2, 4),
            n_features=_HASHED_BUCKETS,
            alternate_sign=False,
            norm="l2",
            lowercase=True,
        )
        self._projection = SparseRandomProjection(
            n_components=HASHED_DIMENSIONS, random_state=seed, dense_output=True
        )
        # The projection's matrix depends only on the input width: fit on an empty row.
        self._projection.fit(self._vectorizer.transform([""]))

    def __call__(self, texts: Sequence[str]) -> numpy.ndarray:
        projected = self._projection.transform(self._vectorizer.transform(texts))
        projected = numpy.asarray(projected, dtype="float32")
        return normalize_rows(projected)


def normalize_rows(vectors: numpy.ndarray) -> numpy.ndarray:
    norms = numpy.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / numpy.maximum(norms, 1e-12)


def batched(records: Iterable[Record], size: int = SCORE_BATCH) -> Iterator[List[Record]]:
    batch: List[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


__all__ = [
    "FEATURE_KINDS",
    "HASHED_DIMENSIONS",
    "UNCERTAINTY_MEASURES",
    "HashedFeatures",
    "StudentScorer",
    "batched",
    "describe_uncertainty",
    "load_scorer",
    "normalize_rows",
    "uncertainty",
]
