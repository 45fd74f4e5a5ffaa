"""`semantic_filter`: the runtime that turns a student's `doc.cats` into a verdict per doc, and
escalates the doubtful ones to a teacher (the cascade).

It needs spaCy alone: no torch, no transformers. A teacher is only loaded (from its `.cfg` or
pipeline, as `spacy-distill annotate --teacher` takes it) when a doc first falls in the band, so
a pipeline whose docs never escalate never pays for it.

Sets on every doc:
* `doc._.verdict` (str): `allow`, `block`, `review` or a label's own action;
* `doc._.verdict_details` (dict): verdict, labels (the labels decided), decided_by (`student` or
  `teacher`), in_band (the student was in doubt), escalated (the teacher decided), margin, the
  student's and (if it decided) the teacher's probabilities per label, reason (why the scores
  were not used: `empty`, `invalid_scores`) and teacher_error (why the teacher did not decide).

A doc's verdict depends on its text alone, never on its batch: empty and whitespace-only texts,
and scores that are no probability distribution, get `default_action` without a look at the
scores. spaCy's textcat scores an empty doc with zeros alone but with the model's biases in a
batch; the filter sets an empty doc's `doc.cats` (for its classifier's labels) to zeros in any
batch, so that its cats do not depend on the batch either.
With `record` set, every doc the teacher decided is appended to an escalation log (see
`spacy_distill.filter.escalations`), which `spacy-distill convert --from-escalations` turns into
targets, so that the next student learns what this one doubted without a second teacher call.
A teacher that fails does not lose the batch: its doubtful docs get `review` from the student,
and a warning is logged, unless `cascade_strict` asks for the error.
"""

import logging
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import minibatch

from ..errors import DistillError, LabelMismatchError, TeacherError
from ..pipeline.textcat_lookup import find_textcat, is_exclusive
from ..probabilities import scores_to_probabilities
from .decision import REVIEW, DecisionRule
from .escalations import DEFAULT_MAX_BYTES, EscalationLog, escalation_record, mask_secrets, utc_now
from .record import (
    DETAILS_ATTR,
    EMPTY,
    INVALID_SCORES,
    RECORD_KEY,
    VERDICT_ATTR,
    register_extensions,
    store_records,
)
from .settings import stored_settings

logger = logging.getLogger(__name__)

# A teacher_error is stored on every doc it concerns and logged: one line, this long at most.
ERROR_CHARS = 200


def describe_error(err: BaseException) -> str:
    """`Type: message`, one line of at most ERROR_CHARS, with likely secrets masked."""
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0].strip()}" if lines else type(err).__name__
    text = mask_secrets(text)
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


def _has_content(doc: Doc) -> bool:
    # Most docs start with a word: one token is cheaper than doc.text, which is built anew.
    return len(doc) > 0 and (not doc[0].is_space or any(not token.is_space for token in doc))


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
        "cascade_strict": False,
        "record": None,
        "record_max_bytes": DEFAULT_MAX_BYTES,
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
    cascade_strict: bool,
    record: Optional[str],
    record_max_bytes: int,
) -> "SemanticFilter":
    """A verdict per doc from the text classifier's `doc.cats`, with an optional cascade.

    textcat (Optional[str]): the text classifier to read (None: the pipeline's only one).
    actions (Dict[str, str]): label -> action (`allow`, `block`, `review` or your own); labels
        left out are `allow`.
    default_action (str): the verdict when no label is decided, and that of empty or
        whitespace-only texts and of scores that are no probability distribution.
    thresholds (Optional[Dict[str, float]]): label -> decision threshold; None: the thresholds
        `spacy-distill tune` stored in meta.json (none stored: argmax / 0.5).
    escalation_margin (Optional[float]): docs whose probabilities lie within this distance of a
        threshold are in doubt: escalated to the teacher, or given `review` without one. None:
        the band `spacy-distill tune --escalation-rate/--cascade-accuracy` stored, else 0 (off).
    teacher (Optional[str]): a teacher `.cfg` or spaCy pipeline for the cascade, loaded on first
        use.
    teacher_thresholds (Dict[str, float]): the teacher's own thresholds (default argmax / 0.5).
    cascade_strict (bool): raise when the teacher fails; False: its doubtful docs get `review`
        from the student, the error is recorded on them and logged.
    record (Optional[str]): an escalation log (JSONL, see `spacy_distill.filter.escalations`)
        that gets each doc the teacher decided, to train the next student on; a relative path
        is read against the current directory. None: no log.
    record_max_bytes (int): rotate the log once it is larger than this.
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
        cascade_strict=cascade_strict,
        record=record,
        record_max_bytes=record_max_bytes,
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
        cascade_strict: bool = False,
        record: Optional[str] = None,
        record_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if escalation_margin < 0:
            raise DistillError(f"{name}: escalation_margin must be >= 0, got {escalation_margin}")
        if int(record_max_bytes) < 1:
            raise DistillError(f"{name}: record_max_bytes must be >= 1, got {record_max_bytes}")
        self.name = name
        self.exclusive = exclusive
        self.actions = dict(actions)
        self.default_action = default_action
        self.thresholds = dict(thresholds or {})
        self.escalation_margin = float(escalation_margin)
        self.teacher_spec = teacher
        self.teacher_thresholds = dict(teacher_thresholds or {})
        self.cascade_strict = bool(cascade_strict)
        # Resolved now: a later change of directory does not move the log.
        self.record_path = None if record is None else Path(record).expanduser().absolute()
        self.record_max_bytes = int(record_max_bytes)
        self._log: Optional[EscalationLog] = None
        self._textcat = textcat_component
        self._rule: Optional[DecisionRule] = None
        self._teacher_rule: Optional[DecisionRule] = None
        self._teacher: Any = None
        self._teacher_columns: Optional[List[int]] = None
        # Docs the teacher decided, and doubtful docs left to the student because it failed.
        self.n_escalated = 0
        self.n_teacher_errors = 0
        # Docs written to the escalation log, and those a failed write lost.
        self.n_recorded = 0
        self.n_record_errors = 0

    @property
    def labels(self) -> List[str]:
        return list(self._textcat.labels)

    @property
    def rule(self) -> DecisionRule:
        """The student's decision rule (built once the classifier has its labels)."""
        if self._rule is None:
            labels = self.labels
            if not labels:
                raise DistillError(
                    f"{self.name}: the text classifier has no labels yet; train or load it first"
                )
            try:
                self._rule = DecisionRule(
                    labels, self.exclusive, self.thresholds, self.actions, self.default_action
                )
                self._teacher_rule = DecisionRule(
                    labels,
                    self.exclusive,
                    self.teacher_thresholds,
                    self.actions,
                    self.default_action,
                )
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
        zeros = dict.fromkeys(rule.labels, 0.0)
        for doc in docs:
            if not len(doc):
                # spaCy's textcat scores an empty doc with zeros alone (or among empty docs
                # only) but with the model's biases in a mixed batch: make it zeros in any batch.
                doc.cats.update(zeros)
        probs = rule.probabilities([doc.cats for doc in docs])
        reasons: List[Optional[str]] = [None if _has_content(doc) else EMPTY for doc in docs]
        for i in numpy.flatnonzero(~rule.scored(probs)).tolist():
            reasons[i] = reasons[i] or INVALID_SCORES
        decided = numpy.asarray([reason is None for reason in reasons], dtype=bool)
        kept = rule.kept(probs) & decided[:, None]
        margins = rule.margins(probs)
        verdicts = rule.verdicts(kept, probs)
        labels = rule.kept_labels(kept)
        decided_by = ["student"] * len(docs)
        in_band_mask = (margins < self.escalation_margin) & decided
        escalated = [False] * len(docs)
        teacher_rows: List[Optional[Tuple[float, ...]]] = [None] * len(docs)
        teacher_errors: List[Optional[str]] = [None] * len(docs)
        in_band = numpy.flatnonzero(in_band_mask).tolist()
        for i in in_band:
            verdicts[i] = REVIEW
        if in_band and self.has_teacher:
            self._escalate(
                docs, in_band, verdicts, labels, decided_by, escalated, teacher_rows, teacher_errors
            )
            if self.record_path is not None:
                self._record(docs, in_band, escalated, probs, margins, teacher_rows, verdicts)
        margin_list = [m if ok else None for m, ok in zip(margins.tolist(), decided.tolist())]
        store_records(
            docs,
            rule.labels,
            (verdicts, labels, decided_by, in_band_mask.tolist(), escalated, margin_list),
            (list(map(tuple, probs.tolist())), teacher_rows, reasons, teacher_errors),
        )

    def _escalate(
        self, docs, in_band, verdicts, labels, decided_by, escalated, teacher_rows, teacher_errors
    ) -> None:
        """Let the teacher decide the doubtful docs `in_band`; those it fails on keep `review`."""
        probs, error = self._teacher_probabilities([docs[i].text for i in in_band])
        rule: DecisionRule = self._teacher_rule  # type: ignore[assignment]
        valid = rule.scored(probs)
        kept = rule.kept(probs)
        failed: List[int] = []
        for k, (i, verdict, kept_labels, row) in enumerate(
            zip(in_band, rule.verdicts(kept, probs), rule.kept_labels(kept), probs.tolist())
        ):
            if valid[k]:
                verdicts[i], labels[i], decided_by[i] = verdict, kept_labels, "teacher"
                escalated[i], teacher_rows[i] = True, tuple(row)
                continue
            # A teacher's answer that is no distribution decides nothing, as a student's.
            message = "TeacherError: the teacher's scores are no probability distribution"
            if self.cascade_strict:
                raise TeacherError(f"component '{self.name}': {message}: {row}")
            teacher_errors[i] = message
            failed.append(i)
        self.n_escalated += len(probs) - len(failed)
        if error is not None:
            description = describe_error(error)
            for i in in_band[len(probs) :]:
                teacher_errors[i] = description
                failed.append(i)
        if failed:
            description = teacher_errors[failed[-1]]
            self.n_teacher_errors += len(failed)
            logger.warning(
                "component '%s': the cascade teacher failed (%s); %d of the batch's %d doubtful doc(s) get "
                "'review' from the student (cascade_strict = true raises instead)",
                self.name,
                description,
                len(failed),
                len(in_band),
            )

    def _record(self, docs, in_band, escalated, probs, margins, teacher_rows, verdicts) -> None:
        """Append the docs the teacher decided to the escalation log, in one write. A write that
        fails loses these records, not the batch: it is logged and counted."""
        decided = [i for i in in_band if escalated[i]]
        if not decided:
            return
        time = utc_now()
        teacher_id = str(getattr(self._teacher, "teacher_id", ""))
        records = [
            escalation_record(
                text=docs[i].text,
                labels=self.rule.labels,
                teacher=teacher_rows[i],
                student=probs[i],
                margin=margins[i],
                verdict=verdicts[i],
                exclusive=self.exclusive,
                component=self.name,
                teacher_id=teacher_id,
                time=time,
            )
            for i in decided
        ]
        if self._log is None:
            self._log = EscalationLog(self.record_path, max_bytes=self.record_max_bytes)  # type: ignore[arg-type]
        try:
            self.n_recorded += self._log.write(records)
        except OSError as err:
            self.n_record_errors += len(records)
            logger.warning(
                "component '%s': %d escalation(s) not recorded in %s (%s)",
                self.name,
                len(records),
                self.record_path,
                describe_error(err),
            )

    def _teacher_probabilities(self, texts: List[str]) -> Tuple[numpy.ndarray, Optional[Exception]]:
        """The teacher's probabilities for the first texts, those it scored, and the error that
        stopped it (None: it scored them all). After a failure the rest is not sent: a server
        that is down would fail, or time out, once per call."""
        try:
            teacher = self._load_teacher()
        except Exception as err:
            # A missing file, a block that does not build, other labels: configuration, not a
            # teacher that is down (some teachers ask their server while loading).
            if isinstance(err, DistillError) and not isinstance(err, TeacherError):
                raise
            return numpy.zeros((0, len(self.labels))), self._teacher_failed(err, len(texts))
        size = max(1, int(teacher.batch_size))
        n_labels = len(teacher.labels)
        rows = [numpy.zeros((0, n_labels), dtype="float64")]
        error: Optional[Exception] = None
        for start in range(0, len(texts), size):
            chunk = texts[start : start + size]
            try:
                scores = numpy.asarray(teacher.score(chunk), dtype="float64")
                if scores.shape != (len(chunk), n_labels):
                    raise TeacherError(
                        f"scores of shape {scores.shape} for {len(chunk)} texts and {n_labels} labels"
                    )
            except Exception as err:
                error = self._teacher_failed(err, len(chunk))
                break
            rows.append(scores)
        probs = scores_to_probabilities(numpy.concatenate(rows), bool(teacher.exclusive))
        return probs[:, self._teacher_columns], error

    def _teacher_failed(self, err: Exception, n_docs: int) -> Exception:
        """The error to record; in strict mode, raise it naming this component."""
        if self.cascade_strict:
            raise TeacherError(
                f"component '{self.name}': the cascade teacher failed on {n_docs} doubtful doc(s): "
                f"{describe_error(err)}"
            ) from err
        return err

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
                    f"component '{self.name}': the teacher {self._teacher.teacher_id} has labels "
                    f"{teacher_labels} (exclusive={self._teacher.exclusive}); the student has "
                    f"{list(self.rule.labels)} (exclusive={self.exclusive}); map them with the teacher's label_map"
                )
            self._teacher_columns = [teacher_labels.index(label) for label in self.rule.labels]
        return self._teacher


__all__ = [
    "SemanticFilter",
    "make_semantic_filter",
    "register_extensions",
    "VERDICT_ATTR",
    "DETAILS_ATTR",
    "RECORD_KEY",
]
