"""A teacher that is any spaCy pipeline with a text classifier (e.g. a spacy-transformers one)."""
import hashlib
from typing import Dict, Optional, Sequence, Tuple

import numpy
import spacy
from spacy.language import Language

from ..errors import DistillError, UnsupportedModelError
from ..ml.logits import forward_logits, has_readable_logits
from ..pipeline.textcat_lookup import find_textcat, is_exclusive
from ..registry import registry
from .base import LabelMapping, log_softmax



class SpacyTeacher:
    """Scores texts with a spaCy pipeline's `textcat` / `textcat_multilabel` component.

    Scores are the component's logits (read before its final softmax or sigmoid), so no
    information is lost to clipped probabilities; models whose output layer hides them fall
    back to the logs of `doc.cats`.
    """

    def __init__(
        self,
        nlp: Language,
        *,
        component: Optional[str] = None,
        label_map: Optional[Dict[str, Optional[str]]] = None,
        batch_size: int = 64,
        teacher_id: Optional[str] = None,
    ) -> None:
        """
        nlp (Language): the teacher pipeline.
        component (Optional[str]): the text classifier's name; None picks the only one.
        label_map (Optional[Dict[str, Optional[str]]]): teacher label -> student label (None drops).
        batch_size (int): texts per `nlp.pipe` batch.
        teacher_id (Optional[str]): a readable id; defaults to the pipeline's name and version.
        """
        self.nlp = nlp
        self.component = find_textcat(nlp, component)
        self.pipe = nlp.get_pipe(self.component)
        self.teacher_exclusive = is_exclusive(nlp, self.component)
        if len(self.pipe.labels) < 1:
            raise DistillError(f"Teacher component '{self.component}' has no labels; is it trained?")
        self.mapping = LabelMapping(self.pipe.labels, label_map, self.teacher_exclusive)
        self.labels: Tuple[str, ...] = self.mapping.labels
        self.exclusive = self.teacher_exclusive
        self.batch_size = batch_size
        self.label_map = dict(label_map or {})
        meta = nlp.meta
        self.teacher_id = teacher_id or (
            f"spacy:{meta.get('lang', nlp.lang)}_{meta.get('name', 'pipeline')}-"
            f"{meta.get('version', '0.0.0')}/{self.component}"
        )
        self._fingerprint: Optional[str] = None
        self._reads_logits = has_readable_logits(self.pipe.model)

    @property
    def fingerprint(self) -> str:
        """sha256 of the pipeline's weights and config, the component and the label map."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(self.nlp.config.to_str().encode("utf8"))
            for name, proc in self.nlp.pipeline:
                if hasattr(proc, "to_bytes"):
                    digest.update(name.encode("utf8"))
                    digest.update(proc.to_bytes(exclude=["vocab"]))
            digest.update(repr((self.component, sorted(self.label_map.items(), key=str))).encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        """Teacher scores for texts: log-probabilities (exclusive) or logits (multi-label).

        texts (Sequence[str]): the texts.
        RETURNS (numpy.ndarray): shape (len(texts), len(self.labels)), float32.
        """
        if not texts:
            return numpy.zeros((0, len(self.labels)), dtype="float32")
        if self._reads_logits:
            docs = list(
                self.nlp.pipe(texts, batch_size=self.batch_size, disable=[self.component])
            )
            try:
                logits, _ = forward_logits(self.pipe.model, docs, is_train=False)
                scores = self.pipe.model.ops.to_numpy(logits).astype("float64")
            except UnsupportedModelError:
                self._reads_logits = False
                return self.score(texts)
        else:
            docs = list(self.nlp.pipe(texts, batch_size=self.batch_size))
            probs = numpy.asarray(
                [[doc.cats[label] for label in self.pipe.labels] for doc in docs], dtype="float64"
            )
            probs = numpy.clip(probs, 1e-7, 1 - 1e-7)
            if self.teacher_exclusive:
                scores = numpy.log(probs)
            else:
                scores = numpy.log(probs) - numpy.log1p(-probs)
        if self.teacher_exclusive:
            scores = log_softmax(scores)
        return self.mapping.apply(scores).astype("float32")


@registry.teachers("spacy-distill.SpacyTeacher.v1")
def configure_spacy_teacher(
    model: str,
    component: Optional[str] = None,
    label_map: Optional[Dict[str, Optional[str]]] = None,
    batch_size: int = 64,
) -> SpacyTeacher:
    """A spaCy pipeline with a text classifier, as a teacher.

    model (str): a pipeline package name or a path to a pipeline directory.
    component (Optional[str]): the text classifier to read; None picks the only one.
    label_map (Optional[Dict[str, Optional[str]]]): teacher label -> student label (None drops).
    batch_size (int): texts per batch.
    RETURNS (SpacyTeacher): the teacher.
    """
    return SpacyTeacher(
        spacy.load(model), component=component, label_map=label_map, batch_size=batch_size
    )
