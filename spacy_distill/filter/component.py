"""`semantic_filter`: the runtime that turns a student's `doc.cats` into a verdict per doc, and
escalates the doubtful ones to a teacher (the cascade).

It needs spaCy alone: no torch, no transformers. A teacher is only loaded (from its `.cfg` or
pipeline, as `spacy-distill annotate --teacher` takes it) when a doc first falls in the band, so
a pipeline whose docs never escalate never pays for it.

Sets on every doc:
* `doc._.verdict` (str): `allow`, `block`, `review` or a label's own action;
* `doc._.verdict_details` (dict): verdict, labels (the labels decided), decided_by (`student` or
  `teacher`), in_band (the student was in doubt), escalated (the teacher was asked), margin, and
  the student's and (if asked) the teacher's probabilities per label.
"""
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import minibatch

from ..errors import DistillError, LabelMismatchError
from ..pipeline.textcat_lookup import find_textcat, is_exclusive
from ..probabilities import scores_to_probabilities
from .decision import REVIEW, DecisionRule
from .settings import META_KEY, stored_settings

VERDICT_ATTR = "verdict"
DETAILS_ATTR = "verdict_details"


# Each doc holds one record (a flat tuple, see `_process`) under this user_data key; the two
# attributes are getters over it. A dict per doc (with a nested dict of probabilities) cost as much
# as the classifier itself and fed the garbage collector; a tuple of strings and floats is cheap
# to make, not tracked by the collector, and survives `DocBin(store_user_data=True)` and copies.
RECORD_KEY = ("spacy_distill", "verdict")
_VERDICT, _LABELS, _DECIDED_BY, _IN_BAND, _ESCALATED, _MARGIN, _NAMES, _STUDENT, _TEACHER = range(9)


def _get_verdict(doc: Doc) -> Optional[str]:
    record = doc.user_data.get(RECORD_KEY)
    return None if record is None else record[_VERDICT]


def _get_verdict_details(doc: Doc) -> Optional[Dict[str, Any]]:
    record = doc.user_data.get(RECORD_KEY)
    if record is None:
        return None
    names = record[_NAMES]
    teacher = record[_TEACHER]
    return {
        "verdict": record[_VERDICT],
        "labels": list(record[_LABELS]),
        "decided_by": record[_DECIDED_BY],
        "in_band": record[_IN_BAND],
        "escalated": record[_ESCALATED],
        "margin": record[_MARGIN],
        "student": dict(zip(names, record[_STUDENT])),
        "teacher": None if teacher is None else dict(zip(names, teacher)),
    }


def register_extensions() -> None:
    """Register `doc._.verdict` and `doc._.verdict_details` (idempotent)."""
    Doc.set_extension(VERDICT_ATTR, getter=_get_verdict, force=True)
    Doc.set_extension(DETAILS_ATTR, getter=_get_verdict_details, force=True)


register_extensions()


@Language.factory(
    "semantic_filter",
    requires=["doc.cats"],
    assigns=[f"doc._.{VERDICT_ATTR}", f"doc._.{DETAILS_ATTR}"],
    default_config={
        "textcat": None,
        "actions": {},
        "default_action": "allow",
        "thresholds": None,
        "escalation_margin": None,
        "teacher": None,
        "teacher_thresholds": {},
    },
)
def make_semantic_filter(
    nlp: Language,
    name: str,
    textcat: Optional[str],
    actions: Dict[str, str],
    default_action: str,
    thresholds: Optional[Dict[str, float]],
    escalation_margin: Optional[float],
    teacher: Optional[str],
    teacher_thresholds: Dict[str, float],
) -> "SemanticFilter":
    """A verdict per doc from the text classifier's `doc.cats`, with an optional cascade.

    textcat (Optional[str]): the text classifier to read (None: the pipeline's only one).
    actions (Dict[str, str]): label -> action (`allow`, `block`, `review` or your own); labels
        left out are `allow`.
    default_action (str): the verdict when no label is decided.
    thresholds (Optional[Dict[str, float]]): label -> decision threshold; None: the thresholds
        `spacy-distill tune` stored in meta.json (none stored: argmax / 0.5).
    escalation_margin (Optional[float]): docs whose probabilities lie within this distance of a
        threshold are in doubt: escalated to the teacher, or given `review` without one. None:
        the band `spacy-distill tune --escalation-rate/--cascade-accuracy` stored, else 0 (off).
    teacher (Optional[str]): a teacher `.cfg` or spaCy pipeline for the cascade, loaded on first
        use.
    teacher_thresholds (Dict[str, float]): the teacher's own thresholds (default argmax / 0.5).
    """
    component = find_textcat(nlp, textcat)
    stored = stored_settings(nlp)
    if thresholds is None:
        thresholds = stored["thresholds"]  # type: ignore[assignment]
    if escalation_margin is None:
        escalation_margin = stored["escalation_margin"]  # type: ignore[assignment]
    return SemanticFilter(
        name,
        textcat_component=nlp.get_pipe(component),
        exclusive=is_exclusive(nlp, component),
        actions=actions,
        default_action=default_action,
        thresholds=thresholds,
        escalation_margin=escalation_margin,
        teacher=teacher,
        teacher_thresholds=teacher_thresholds,
    )


class SemanticFilter:
    """Verdicts from `doc.cats`; doubtful docs escalate to a teacher loaded on first use."""

    def __init__(
        self,
        name: str,
        *,
        textcat_component: Any,
        exclusive: bool,
        actions: Dict[str, str],
        default_action: str = "allow",
        thresholds: Optional[Dict[str, float]] = None,
        escalation_margin: float = 0.0,
        teacher: Optional[str] = None,
        teacher_thresholds: Optional[Dict[str, float]] = None,
    ) -> None:
        if escalation_margin < 0:
            raise DistillError(f"{name}: escalation_margin must be >= 0, got {escalation_margin}")
        self.name = name
        self.exclusive = exclusive
        self.actions = dict(actions)
        self.default_action = default_action
        self.thresholds = dict(thresholds or {})
        self.escalation_margin = float(escalation_margin)
        self.teacher_spec = teacher
        self.teacher_thresholds = dict(teacher_thresholds or {})
        self._textcat = textcat_component
        self._rule: Optional[DecisionRule] = None
        self._teacher_rule: Optional[DecisionRule] = None
        self._teacher: Any = None
        self._teacher_columns: Optional[List[int]] = None
        self.n_escalated = 0

    @property
    def labels(self) -> List[str]:
        return list(self._textcat.labels)

    @property
    def rule(self) -> DecisionRule:
        """The student's decision rule (built once the classifier has its labels)."""
        if self._rule is None:
            labels = self.labels
            if not labels:
                raise DistillError(f"{self.name}: the text classifier has no labels yet; train or load it first")
            try:
                self._rule = DecisionRule(labels, self.exclusive, self.thresholds, self.actions, self.default_action)
                self._teacher_rule = DecisionRule(labels, self.exclusive, self.teacher_thresholds, self.actions, self.default_action)
            except DistillError as err:
                raise DistillError(f"component '{self.name}': {err}") from None
        return self._rule

    @property
    def has_teacher(self) -> bool:
        return self._teacher is not None or self.teacher_spec is not None

    @property
    def teacher_loaded(self) -> bool:
        return self._teacher is not None

    def set_teacher(self, teacher: Any) -> None:
        """Use this teacher object (anything with the `Teacher` members) for the cascade."""
        self._teacher = teacher
        self._teacher_columns = None

    def __call__(self, doc: Doc) -> Doc:
        self._process([doc])
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        # Batches let the teacher score the escalated docs of a batch together.
        for docs in minibatch(stream, size=batch_size):
            self._process(docs)
            yield from docs

    def _process(self, docs: List[Doc]) -> None:
        # Vectorised over the batch; per doc only one tuple is made and stored.
        rule = self.rule
        probs = rule.probabilities([doc.cats for doc in docs])
        kept = rule.kept(probs)
        margins = rule.margins(probs)
        verdicts = rule.verdicts(kept, probs)
        labels = rule.kept_labels(kept)
        decided_by = ["student"] * len(docs)
        in_band_mask = margins < self.escalation_margin
        escalated = [False] * len(docs)
        teacher_rows: List[Optional[Tuple[float, ...]]] = [None] * len(docs)
        in_band = numpy.flatnonzero(in_band_mask).tolist()
        if in_band and self.has_teacher:
            scored = self._teacher_probabilities([docs[i].text for i in in_band])
            teacher_kept = self._teacher_rule.kept(scored)  # type: ignore[union-attr]
            teacher_verdicts = self._teacher_rule.verdicts(teacher_kept, scored)  # type: ignore[union-attr]
            teacher_labels = self._teacher_rule.kept_labels(teacher_kept)  # type: ignore[union-attr]
            for k, (i, row) in enumerate(zip(in_band, scored.tolist())):
                verdicts[i], labels[i], decided_by[i] = teacher_verdicts[k], teacher_labels[k], "teacher"
                escalated[i], teacher_rows[i] = True, tuple(row)
            self.n_escalated += len(in_band)
        else:
            for i in in_band:
                verdicts[i] = REVIEW
        names = rule.labels
        for doc, verdict, kept_labels, by, band, esc, margin, student, teacher in zip(
            docs, verdicts, labels, decided_by, in_band_mask.tolist(), escalated, margins.tolist(), map(tuple, probs.tolist()), teacher_rows
        ):
            doc.user_data[RECORD_KEY] = (verdict, kept_labels, by, band, esc, margin, names, student, teacher)

    def _teacher_probabilities(self, texts: List[str]) -> numpy.ndarray:
        teacher = self._load_teacher()
        size = max(1, int(getattr(teacher, "batch_size", 32) or 32))
        rows = []
        for start in range(0, len(texts), size):
            scores = numpy.asarray(teacher.score(texts[start : start + size]), dtype="float64")
            rows.append(scores)
        scores = numpy.concatenate(rows)
        probs = scores_to_probabilities(scores, bool(teacher.exclusive))
        return probs[:, self._teacher_columns]

    def _load_teacher(self) -> Any:
        if self._teacher is None:
            try:
                # absolute: a packaged student's copy of this module has no teachers beside it
                from spacy_distill.teachers.loading import load_teacher
            except ImportError as err:
                raise DistillError(
                    f"component '{self.name}': the cascade teacher {self.teacher_spec!r} needs the "
                    f"spacy-distill plugin ({err}); install it or set teacher = null"
                ) from err
            self._teacher = load_teacher(self.teacher_spec)  # type: ignore[arg-type]
        if self._teacher_columns is None:
            teacher_labels = list(self._teacher.labels)
            missing = [label for label in self.rule.labels if label not in teacher_labels]
            if missing or bool(self._teacher.exclusive) != self.exclusive:
                raise LabelMismatchError(
                    f"component '{self.name}': the teacher {getattr(self._teacher, 'teacher_id', '?')} has labels "
                    f"{teacher_labels} (exclusive={self._teacher.exclusive}); the student has "
                    f"{list(self.rule.labels)} (exclusive={self.exclusive}); map them with the teacher's label_map"
                )
            self._teacher_columns = [teacher_labels.index(label) for label in self.rule.labels]
        return self._teacher


__all__ = ["SemanticFilter", "make_semantic_filter", "register_extensions", "VERDICT_ATTR", "DETAILS_ATTR", "RECORD_KEY"]
