"""`distill_textcat` and `distill_textcat_multilabel`: spaCy's text classifiers that learn from
a teacher's soft labels.

They subclass spaCy's `TextCategorizer` and `MultiLabel_TextCategorizer` and change only
training: the loss reads the teacher's scores stored on `Example.reference` by a target file
(see `spacy_distill.data.targets`), and works on the student's logits so that temperature acts on
them. Prediction, `doc.cats`, serialization and every textcat architecture are spaCy's own.
"""

from itertools import islice
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline.textcat import TextCategorizer
from spacy.pipeline.textcat_multilabel import MultiLabel_TextCategorizer
from spacy.tokens import Doc
from spacy.training import Example, validate_get_examples
from thinc.api import Config, Model, Optimizer
from thinc.types import Floats2d

from ..data.targets import TeacherTarget, get_target
from ..errors import LabelMismatchError, UnsupportedModelError
from ..ml.empty_docs import guard_empty_docs
from ..ml.logits import forward_logits, has_readable_logits
from ..training.losses import SoftTargetLoss, SoftTargets, make_soft_targets
from .training_step import describe_example, update_step

DEFAULT_DISTILL_TEXTCAT_MODEL_STR = """
[model]
@architectures = "spacy.TextCatBOW.v3"
exclusive_classes = true
length = 262144
ngram_size = 1
no_output_layer = false
"""

DEFAULT_DISTILL_TEXTCAT_MULTILABEL_MODEL_STR = """
[model]
@architectures = "spacy.TextCatBOW.v3"
exclusive_classes = false
length = 262144
ngram_size = 1
no_output_layer = false
"""

DEFAULT_SOFT_TARGET_LOSS_STR = """
[loss]
@losses = "spacy-distill.SoftTargetLoss.v1"
temperature = 2.0
alpha = 0.5
normalize = true
"""

DEFAULT_DISTILL_TEXTCAT_MODEL = Config().from_str(DEFAULT_DISTILL_TEXTCAT_MODEL_STR)["model"]
DEFAULT_DISTILL_TEXTCAT_MULTILABEL_MODEL = Config().from_str(
    DEFAULT_DISTILL_TEXTCAT_MULTILABEL_MODEL_STR
)["model"]
DEFAULT_SOFT_TARGET_LOSS = Config().from_str(DEFAULT_SOFT_TARGET_LOSS_STR)["loss"]
DEFAULT_SCORER = {"@scorers": "spacy-distill.distill_textcat_scorer.v1"}

_SCORE_WEIGHTS = {
    "cats_score": 1.0,
    "cats_score_desc": None,
    "cats_micro_p": None,
    "cats_micro_r": None,
    "cats_micro_f": None,
    "cats_macro_p": None,
    "cats_macro_r": None,
    "cats_macro_f": None,
    "cats_macro_auc": None,
    "cats_f_per_type": None,
    # Shown during `spacy train` next to the gold metrics; weight it to select on it.
    "cats_teacher_agreement": 0.0,
    "cats_teacher_kl": None,
}


class SoftTargetTraining:
    """Training by soft targets, shared by both distilling text classifiers.

    Mixed into spaCy's textcat classes ahead of them, it replaces `initialize` (labels may
    come from teacher targets alone), `update` and `get_loss` (on logits, with the
    distillation loss) and `score`; everything else is spaCy's.
    """

    exclusive: bool
    factory_name: str
    default_threshold: float
    loss: SoftTargetLoss

    def __init__(
        self,
        vocab,
        model: Model,
        name: Optional[str] = None,
        *,
        loss: SoftTargetLoss,
        threshold: Optional[float] = None,
        scorer: Optional[Callable] = None,
    ) -> None:
        """
        vocab (Vocab): the shared vocabulary.
        model (Model): the textcat model (exclusive classes or not, as the class).
        name (Optional[str]): the component name (None: the factory's).
        loss (SoftTargetLoss): the distillation loss.
        threshold (Optional[float]): the decision threshold used in scoring (unused for
            exclusive classes, as in spaCy's textcat; None: the factory's default).
        scorer (Optional[Callable]): the scoring function.
        """
        super().__init__(  # type: ignore[call-arg]
            vocab,
            model,
            self.factory_name if name is None else name,
            threshold=self.default_threshold if threshold is None else threshold,
            scorer=scorer,
        )
        self.loss = loss
        # spaCy's n-gram features crash on empty docs in mixed batches (see ml/empty_docs).
        guard_empty_docs(model)

    @property
    def is_distillable(self) -> bool:
        return True

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Iterable[str]] = None,
        positive_label: Optional[str] = None,
    ) -> None:
        """Initialize for training; without `labels`, the labels come from the teacher
        targets of the examples (and any gold cats), in the targets' order.

        get_examples (Callable[[], Iterable[Example]]): returns the training examples.
        nlp (Optional[Language]): the pipeline the component belongs to.
        labels (Optional[Iterable[str]]): the labels, e.g. from `[initialize.components]`.
        positive_label (Optional[str]): the positive label of a binary exclusive task.
        """
        validate_get_examples(get_examples, f"{type(self).__name__}.initialize")
        if not has_readable_logits(self.model):
            # Fail before training starts rather than at the first update.
            raise UnsupportedModelError(
                f"Component '{self.name}': its model '{self.model.name}' has no output layer "
                "that spacy-distill can read logits from; use a spaCy textcat architecture "
                "with its output layer (for spacy.TextCatBOW set no_output_layer = false)."
            )
        if labels is None:
            found: List[str] = []
            for eg in islice(get_examples(), 1000):
                target = get_target(eg.reference)
                for label in (target.labels if target is not None else ()) + tuple(
                    eg.reference.cats
                ):
                    if label not in found:
                        found.append(label)
            labels = found
        if self.exclusive:
            super().initialize(  # type: ignore[misc]
                get_examples, nlp=nlp, labels=labels, positive_label=positive_label
            )
        else:
            if positive_label is not None:
                raise ValueError(
                    f"Component '{self.name}': positive_label is for exclusive binary classes only"
                )
            super().initialize(get_examples, nlp=nlp, labels=labels)  # type: ignore[misc]

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples carrying teacher targets and/or gold cats (read from
        `eg.reference`). Arguments and result: see `training_step.update_step`."""
        return update_step(
            self,
            examples,
            lambda docs: forward_logits(self.model, docs, True),
            drop=drop,
            sgd=sgd,
            losses=losses,
            check=self._validate_categories,  # type: ignore[attr-defined]
            skip_empty_batches=True,  # as spaCy's textcat
        )

    def get_loss(self, examples: Iterable[Example], scores: Floats2d) -> Tuple[float, Floats2d]:
        """The distillation loss of a batch.

        examples (Iterable[Example]): the batch.
        scores (Floats2d): the student's logits (not probabilities), one row per example.
        RETURNS (Tuple[float, Floats2d]): the loss and its gradient w.r.t. the logits.
        """
        truths = self._examples_to_soft_targets(list(examples))
        d_scores, loss = self.loss(scores, truths)
        return loss, d_scores

    def get_teacher_student_loss(
        self, teacher_scores: Floats2d, student_scores: Floats2d
    ) -> Tuple[float, Floats2d]:
        """The teacher term alone, with spaCy v4's distillation signature.

        teacher_scores (Floats2d): teacher log-probabilities (exclusive) or logits.
        student_scores (Floats2d): student logits.
        RETURNS (Tuple[float, Floats2d]): the loss and its gradient w.r.t. student_scores.
        """
        n_docs, n_labels = student_scores.shape
        truths = make_soft_targets(n_docs, n_labels, self.exclusive, tuple(self.labels))  # type: ignore[attr-defined]
        truths.teacher[:] = self.model.ops.to_numpy(teacher_scores)
        truths.teacher_mask[:] = 1.0
        d_scores, loss = self.loss(student_scores, truths)
        return loss, d_scores

    def _examples_to_soft_targets(self, examples: List[Example]) -> SoftTargets:
        labels: Tuple[str, ...] = tuple(self.labels)  # type: ignore[attr-defined]
        truths = make_soft_targets(len(examples), len(labels), self.exclusive, labels)
        for i, eg in enumerate(examples):
            where = describe_example(eg, i)
            target = get_target(eg.reference, where)
            if target is not None and target.has_teacher:
                truths.teacher[i] = self._teacher_row(target, labels, where)
                truths.teacher_mask[i] = 1.0
            cats = eg.reference.cats
            for j, label in enumerate(labels):
                if label in cats:
                    truths.gold[i, j] = cats[label]
                    truths.gold_mask[i, j] = 1.0
            unknown = [label for label in cats if label not in labels]
            if unknown:
                raise LabelMismatchError(
                    f"{where}: gold label(s) {unknown} are not labels of component "
                    f"'{self.name}' ({list(labels)})"  # type: ignore[attr-defined]
                )
        return truths

    def _teacher_row(
        self, target: TeacherTarget, labels: Tuple[str, ...], where: str
    ) -> numpy.ndarray:
        if target.exclusive != self.exclusive:
            kind = "exclusive" if target.exclusive else "multi-label"
            raise LabelMismatchError(
                f"{where}: the teacher target is {kind}, but component "
                f"'{self.name}' is {type(self).__name__}; use "  # type: ignore[attr-defined]
                f"'{'distill_textcat' if target.exclusive else 'distill_textcat_multilabel'}'"
            )
        if target.labels == labels:
            return target.scores  # type: ignore[return-value]
        if set(target.labels) != set(labels):
            missing = sorted(set(labels) - set(target.labels))
            extra = sorted(set(target.labels) - set(labels))
            raise LabelMismatchError(
                f"{where}: the teacher's labels {list(target.labels)} do not match the labels of "
                f"component '{self.name}' {list(labels)} (missing: {missing}, extra: {extra}); "  # type: ignore[attr-defined]
                "map them with the teacher's label_map when annotating"
            )
        order = [target.labels.index(label) for label in labels]
        return target.scores[order]  # type: ignore[index]

    def set_annotations(self, docs: Iterable[Doc], scores: Floats2d) -> None:
        """Write `doc.cats` for a batch: the same values as spaCy's, from one `tolist()` rather
        than a label lookup and a float conversion per cell."""
        labels = self.labels  # type: ignore[attr-defined]
        for doc, row in zip(docs, self.model.ops.to_numpy(scores).tolist()):  # type: ignore[attr-defined]
            doc.cats.update(zip(labels, row))

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
        kwargs.setdefault("multi_label", not self.exclusive)
        return super().score(examples, **kwargs)  # type: ignore[misc]


class DistillTextCategorizer(SoftTargetTraining, TextCategorizer):
    """spaCy's single-label `TextCategorizer`, trained on a teacher's soft labels."""

    exclusive = True
    factory_name = "distill_textcat"
    default_threshold = 0.0


class DistillMultiLabelTextCategorizer(SoftTargetTraining, MultiLabel_TextCategorizer):
    """spaCy's `MultiLabel_TextCategorizer`, trained on a teacher's soft labels."""

    exclusive = False
    factory_name = "distill_textcat_multilabel"
    default_threshold = 0.5


def _register_factory(component_class: type, default_model: Config) -> Callable:
    """Register the spaCy factory of a distilling text classifier; return its function."""
    exclusive = component_class.exclusive  # type: ignore[attr-defined]

    def make(
        nlp: Language,
        name: str,
        model: Model[List[Doc], Floats2d],
        loss: SoftTargetLoss,
        threshold: float,
        scorer: Optional[Callable],
    ) -> SoftTargetTraining:
        return component_class(
            nlp.vocab, model, name, loss=loss, threshold=threshold, scorer=scorer
        )

    factory_name = component_class.factory_name  # type: ignore[attr-defined]
    make.__name__ = make.__qualname__ = f"make_{factory_name}"
    kind, classes, threshold = (
        ("single", "exclusive", "unused for exclusive classes, as in spaCy's textcat")
        if exclusive
        else ("multi", "non-exclusive", "the decision threshold used in scoring")
    )
    make.__doc__ = f"""A {kind}-label text classifier trained on a teacher's soft labels.

    model (Model[List[Doc], Floats2d]): any spaCy textcat architecture, {classes} classes.
    loss (SoftTargetLoss): the distillation loss (temperature, alpha).
    threshold (float): {threshold}.
    scorer (Optional[Callable]): gold `cats` scores plus teacher agreement.
    """
    return Language.factory(
        factory_name,
        assigns=["doc.cats"],
        default_config={
            "threshold": component_class.default_threshold,  # type: ignore[attr-defined]
            "model": default_model,
            "loss": DEFAULT_SOFT_TARGET_LOSS,
            "scorer": DEFAULT_SCORER,
        },
        default_score_weights=_SCORE_WEIGHTS,
        func=make,
    )


make_distill_textcat = _register_factory(DistillTextCategorizer, DEFAULT_DISTILL_TEXTCAT_MODEL)
make_distill_textcat_multilabel = _register_factory(
    DistillMultiLabelTextCategorizer, DEFAULT_DISTILL_TEXTCAT_MULTILABEL_MODEL
)


__all__ = [
    "DistillTextCategorizer",
    "DistillMultiLabelTextCategorizer",
    "make_distill_textcat",
    "make_distill_textcat_multilabel",
]
