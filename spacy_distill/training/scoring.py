"""Scores for distilling text classifiers: spaCy's gold metrics plus agreement with the teacher."""

from typing import Any, Callable, Dict, Iterable, List

import numpy
from spacy.scorer import Scorer
from spacy.training import Example

from ..data.targets import get_target
from ..evaluation.teacher_metrics import agreement, mean_kl
from ..registry import registry


def score_teacher_agreement(
    examples: Iterable[Example], *, labels: Iterable[str], multi_label: bool, threshold: float = 0.5
) -> Dict[str, Any]:
    """Agreement of the predicted cats with the teacher stored on the reference docs.

    The numbers are those of `spacy-distill evaluate` (`evaluation.teacher_metrics`): the
    teacher decides at 0.5, the student at `threshold`, and the KL clips both sides alike.

    examples (Iterable[Example]): examples whose reference docs come from a target file.
    labels (Iterable[str]): the component's labels.
    multi_label (bool): compare each label's decision (True) or the argmax (False).
    threshold (float): the decision threshold of multi-label predictions.
    RETURNS (Dict[str, Any]): cats_teacher_agreement (share of docs, or of doc-label
        decisions, where student and teacher agree) and cats_teacher_kl (mean KL divergence
        from teacher to student); None for both when no doc has a teacher.
    """
    labels = list(labels)
    teacher_rows: List[List[float]] = []
    student_rows: List[List[float]] = []
    for eg in examples:
        target = get_target(eg.reference)
        if target is None or not target.has_teacher:
            continue
        teacher_probs = dict(zip(target.labels, target.probabilities()))
        teacher_rows.append([float(teacher_probs.get(label, 0.0)) for label in labels])
        student_rows.append([float(eg.predicted.cats.get(label, 0.0)) for label in labels])
    if not teacher_rows:
        return {"cats_teacher_agreement": None, "cats_teacher_kl": None}
    teacher = numpy.asarray(teacher_rows, dtype="float64")
    student = numpy.asarray(student_rows, dtype="float64")
    exclusive = not multi_label
    agreed = agreement(
        student, teacher, labels, exclusive=exclusive, threshold=threshold, teacher_threshold=0.5
    )
    # Multi-label: every (doc, label) decision counts once, i.e. the mean of the per-label shares.
    share = agreed["argmax"] if exclusive else float(numpy.mean(list(agreed["per_label"].values())))
    return {
        "cats_teacher_agreement": share,
        "cats_teacher_kl": mean_kl(teacher, student, exclusive=exclusive),
    }


def distill_textcat_score(examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
    """spaCy's `cats` scores on the examples that have gold cats, plus teacher agreement.

    Docs without gold (teacher-only) are left out of the gold metrics: spaCy's scorer would
    count each of them as a false positive.
    """
    examples = list(examples)
    multi_label = bool(kwargs.pop("multi_label", False))
    gold_examples = [eg for eg in examples if eg.reference.cats]
    scores = Scorer.score_cats(gold_examples, "cats", multi_label=multi_label, **kwargs)
    threshold = kwargs.get("threshold")
    scores.update(
        score_teacher_agreement(
            examples,
            labels=kwargs["labels"],
            multi_label=multi_label,
            threshold=0.5 if threshold is None else threshold,
        )
    )
    return scores


@registry.scorers("spacy-distill.distill_textcat_scorer.v1")
def make_distill_textcat_scorer() -> Callable[..., Dict[str, Any]]:
    """Scorer of `distill_textcat` and `distill_textcat_multilabel`."""
    return distill_textcat_score
