"""Each word type encoded by the teacher on its own: the raw material of teacher-derived vectors.

As in model2vec, a word's vector is what the teacher makes of the word alone. Teachers that
compute features for a probe (`HFProbeTeacher`, `HiddenStateExtractor`) give exactly the features
their head reads (same layer, same pooling), so the vectors live where the teacher's decision is
linear. Other teachers with hidden states (HF classifiers, prompted LLMs, spaCy pipelines with a
spacy-transformers `transformer`) give their pooled doc-level hidden state of the word.

Encodings are cached per word in the teacher cache (SQLite), under a fingerprint made of the
teacher's fingerprint and the encoding settings: a rerun, or a larger vocabulary, only encodes
the words not seen before.
"""

import hashlib
import json
import sys
import time
from typing import Any, Dict, List, Optional, Protocol, Sequence, runtime_checkable

import numpy
from tqdm import tqdm

from ..annotation.cache import TeacherCache
from ..errors import DistillError
from ..hidden.extract import gives_hidden_states

ENCODER_VERSION = 1


@runtime_checkable
class FeatureSource(Protocol):
    """A teacher whose head reads pooled features it can give (HFProbeTeacher, or the probe's
    HiddenStateExtractor on its own): a word's vector is the feature of the word alone."""

    teacher_id: str
    """A readable name (a teacher's `teacher_id`, the extractor's model)."""
    width: int
    """The number of features."""

    def features(self, texts: Sequence[str]) -> numpy.ndarray:
        """(len(texts), width) features."""
        ...


@runtime_checkable
class DescribedFeatures(FeatureSource, Protocol):
    """A `FeatureSource` that says what decides its features (kept with the vectors)."""

    settings: Dict[str, Any]


class TeacherWordEncoder:
    """Vectors of single words from a teacher (see the module docstring)."""

    def __init__(
        self,
        teacher: Any,
        *,
        layer: Optional[int] = None,
        pooling: Optional[str] = None,
    ) -> None:
        """
        teacher: a `FeatureSource`, or a teacher with hidden states (`supports_hidden`).
        layer (Optional[int]): a hidden layer other than the teacher's own (hidden-state teachers;
            None: the layer the teacher's features or hidden states use).
        pooling (Optional[str]): "mean", "cls" or "last" (None: the teacher's own).
        """
        self.teacher = teacher
        self.teacher_id = teacher.teacher_id
        if isinstance(teacher, FeatureSource) and layer is None and pooling is None:
            self.method = "features"
            described = isinstance(teacher, DescribedFeatures)
            self.settings: Dict[str, Any] = dict(teacher.settings or {}) if described else {}
            self.width: Optional[int] = teacher.width
        elif gives_hidden_states(teacher):
            self.method = "hidden_states"
            try:
                self.settings = dict(teacher.hidden_settings(layer=layer, pooling=pooling))
            except DistillError as err:
                raise DistillError(
                    f"teacher {self.teacher_id} cannot encode words: {err}. Teacher-derived word vectors "
                    "need a teacher with a representation of its own; use `arch='bow'` or `arch='cnn'` for this one"
                ) from err
            self.width = self.settings.get("width")
            self._layer, self._pooling = layer, pooling
        else:
            raise DistillError(
                f"teacher {self.teacher_id} ({type(teacher).__name__}) cannot encode words: it has "
                "neither `features` (HFProbeTeacher) nor `hidden_states` (HFClassifierTeacher, "
                "HFPromptTeacher, HFProbeTeacher, SpacyTeacher on a spacy-transformers pipeline). "
                "Teacher-derived word vectors need a teacher with a representation of its own; use "
                "`arch='bow'` or `arch='cnn'` for this one"
            )
        self.fingerprint = hashlib.sha256(
            json.dumps(
                [
                    "spacy-distill.word-vectors",
                    ENCODER_VERSION,
                    teacher.fingerprint,
                    self.method,
                    self.settings,
                ],
                sort_keys=True,
                default=str,
            ).encode("utf8")
        ).hexdigest()

    def encode(self, words: Sequence[str]) -> numpy.ndarray:
        """The teacher's vectors of `words`, each on its own: (len(words), width) float32."""
        words = list(words)
        if self.method == "features":
            vectors = self.teacher.features(words)
        else:
            states = self.teacher.hidden_states(
                words, None, level="doc", layer=self._layer, pooling=self._pooling
            )
            vectors = numpy.stack([s.doc for s in states]) if states else numpy.zeros((0, 0))
        vectors = numpy.asarray(vectors, dtype="float32")
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise DistillError(
                f"teacher {self.teacher_id}: {self.method} returned shape {vectors.shape} for "
                f"{len(words)} words; expected one row per word"
            )
        return vectors


def encode_words(
    encoder: TeacherWordEncoder,
    words: Sequence[str],
    *,
    cache: Optional[TeacherCache] = None,
    batch_size: int = 256,
    show_progress: bool = True,
) -> Dict[str, Any]:
    """Encode words through the cache; the teacher sees only the words not cached yet.

    encoder (TeacherWordEncoder): the teacher's word encoder.
    words (Sequence[str]): the word types.
    cache (Optional[TeacherCache]): the cache (None: encode everything, store nothing).
    batch_size (int): words per teacher call (and per cache commit).
    show_progress (bool): a progress bar with rate and time left on stderr.
    RETURNS (Dict[str, Any]): "vectors" (len(words), width) float32, "n_cached", "n_encoded",
        "seconds".
    """
    if batch_size < 1:
        raise DistillError(f"batch_size must be >= 1, got {batch_size}")
    words = list(words)
    start = time.perf_counter()
    rows: List[Optional[numpy.ndarray]] = [None] * len(words)
    if cache is not None and encoder.width:
        for i, (vector, _) in cache.get_many(
            encoder.fingerprint, words, int(encoder.width)
        ).items():
            rows[i] = vector
    missing = [i for i, row in enumerate(rows) if row is None]
    n_cached = len(words) - len(missing)
    with tqdm(
        total=len(missing),
        desc=f"encoding words ({n_cached} cached)",
        unit="word",
        disable=not show_progress or not missing,
        file=sys.stderr,
    ) as bar:
        for offset in range(0, len(missing), batch_size):
            index = missing[offset : offset + batch_size]
            batch = [words[i] for i in index]
            vectors = encoder.encode(batch)
            if not numpy.isfinite(vectors).all():
                bad = batch[int(numpy.flatnonzero(~numpy.isfinite(vectors).all(axis=1))[0])]
                raise DistillError(
                    f"teacher {encoder.teacher_id} gave a non-finite vector for the word {bad!r}"
                )
            for i, vector in zip(index, vectors):
                rows[i] = vector
            if cache is not None:
                cache.put_many(encoder.fingerprint, batch, vectors)
            bar.update(len(index))
    widths = {len(row) for row in rows}  # type: ignore[arg-type]
    if len(widths) > 1:
        raise DistillError(
            f"teacher {encoder.teacher_id}: word vectors of different widths {sorted(widths)}"
        )
    matrix = numpy.stack(rows).astype("float32") if rows else numpy.zeros((0, 0), "float32")  # type: ignore[arg-type]
    return {
        "vectors": matrix,
        "n_cached": n_cached,
        "n_encoded": len(missing),
        "seconds": time.perf_counter() - start,
    }
