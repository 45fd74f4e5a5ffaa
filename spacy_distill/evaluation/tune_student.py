"""Tune a saved student on dev data (what `spacy-distill tune` runs): calibrate its
probabilities, choose per-label thresholds (`spacy_distill.evaluation.tune`), optionally the
cascade band, and save it all with the pipeline (`spacy_distill.pipeline.meta`)."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy
import spacy
from spacy.language import Language

from ..errors import DistillError
from ..filter.cascade import escalation_summary, margin_for_accuracy, margin_for_rate
from ..filter.decision import ALLOW, DecisionRule
from ..filter.settings import FILTER_FACTORY
from ..pipeline.textcat_lookup import find_textcat, is_exclusive
from ..training.calibration import calibrate as fit_and_apply_temperature
from .data import load_evaluation_data
from .tune import (
    save_actions,
    save_cascade,
    save_thresholds,
    select_exclusive_thresholds,
    tune_thresholds,
)


def tune_student(
    student: Union[str, Path],
    data: Union[str, Path],
    *,
    output: Optional[Union[str, Path]] = None,
    objective: str = "f1",
    value: Optional[float] = None,
    component: Optional[str] = None,
    escalation_rate: Optional[float] = None,
    cascade_accuracy: Optional[float] = None,
    teacher: Optional[str] = None,
    actions: Optional[Dict[str, str]] = None,
    default_action: str = ALLOW,
    calibrate: bool = True,
) -> Dict[str, Any]:
    """Tune per-label thresholds of a student on dev data and save them with the pipeline;
    optionally also the cascade band (the margin around the thresholds whose docs escalate).

    student (Union[str, Path]): the student pipeline.
    data (Union[str, Path]): dev data with gold (JSONL/CSV or a target file).
    output (Optional[Union[str, Path]]): where to save the tuned pipeline (default: in place).
    objective (str): "f1", "precision" or "recall".
    value (Optional[float]): the precision or recall to reach.
    component (Optional[str]): the text classifier (default: the only one).
    escalation_rate (Optional[float]): choose the band that escalates this fraction of dev.
    cascade_accuracy (Optional[float]): choose the narrowest band whose cascade reaches this
        accuracy on dev (needs the teacher's outputs: a dev target file, or `teacher`).
    teacher (Optional[str]): a teacher spec to score dev when the data holds no teacher outputs.
    actions (Optional[Dict[str, str]]): label -> the filter's action (e.g. {"spam": "block"});
        exclusive thresholds are judged on the decisions these actions make, and they are stored
        for the exported filter.
    default_action (str): the filter's verdict when no label is decided.
    calibrate (bool): first fit a temperature on the data and store it in the weights (see
        `spacy_distill.training.calibration`); thresholds are then tuned on the calibrated probabilities.
    RETURNS (Dict[str, Any]): per label: threshold, precision, recall, f1, met, support; under
        "cascade" the band, if one was asked for; under "decisions" the argmax's and the tuned
        thresholds' decision quality (exclusive labels, objective f1); under "calibration" the
        temperature fit, if calibrated.
    """
    if escalation_rate is not None and cascade_accuracy is not None:
        raise DistillError(
            "choose the band by `escalation_rate` or by `cascade_accuracy`, not both"
        )
    for arg, given in (
        ("value", value),
        ("escalation_rate", escalation_rate),
        ("cascade_accuracy", cascade_accuracy),
    ):
        if given is not None and not 0.0 <= given <= 1.0:
            raise DistillError(f"{arg} must be in [0, 1], got {given!r}")
    nlp = spacy.load(student)
    name = find_textcat(nlp, component)
    labels = list(nlp.get_pipe(name).labels)
    exclusive = is_exclusive(nlp, name)
    dataset = load_evaluation_data(data, labels, exclusive=exclusive)
    if not dataset.n_gold:
        raise DistillError(f"{data}: no gold labels to tune thresholds on")
    probs = _textcat_probabilities(nlp, dataset.texts, labels)
    actions = dict(actions or {})
    calibration = None
    if calibrate:
        calibration = fit_and_apply_temperature(
            nlp, name, dataset.gold, probs, exclusive=exclusive, data=str(data)
        )
        calibration.pop("probabilities")
        # The model's own outputs now, so that thresholds sit where the runtime's scores fall.
        probs = _textcat_probabilities(nlp, dataset.texts, labels)
    chosen: Dict[str, Any] = tune_thresholds(
        dataset.gold, probs, labels, objective=objective, value=value
    )
    decisions = None
    if exclusive and objective == "f1":
        selection = select_exclusive_thresholds(
            dataset.gold,
            probs,
            labels,
            {k: v["threshold"] for k, v in chosen.items()},
            actions=actions,
            default_action=default_action,
        )
        for label, info in chosen.items():
            info["one_vs_rest_threshold"] = info["threshold"]
            info["threshold"] = selection["thresholds"].get(label)
        decisions = {"argmax": selection["argmax"], "tuned": selection["tuned"]}
    save_thresholds(
        nlp, chosen, objective=objective, value=value, data=str(data), decisions=decisions
    )
    save_actions(nlp, actions, default_action)
    if escalation_rate is not None or cascade_accuracy is not None:
        thresholds = {k: v["threshold"] for k, v in chosen.items() if v["threshold"] is not None}
        rule = DecisionRule(labels, exclusive, thresholds, actions, default_action)
        if escalation_rate is not None:
            band = escalation_summary(
                rule.margins(probs), margin_for_rate(rule.margins(probs), escalation_rate)
            )
            band["met"] = True
            band_objective, band_value = "escalation_rate", escalation_rate
        else:
            from .evaluate import teacher_probabilities_for

            teacher_probs, _, _ = teacher_probabilities_for(dataset, teacher, exclusive)
            if teacher_probs is None:
                raise DistillError(
                    f"{data}: holds no teacher outputs, which `cascade_accuracy` needs; pass a target file "
                    "written by `spacy-distill annotate`, or `teacher`"
                )
            band = margin_for_accuracy(
                dataset.gold,
                probs,
                teacher_probs,
                rule,
                DecisionRule(labels, exclusive),
                cascade_accuracy,  # type: ignore[arg-type]
            )
            band_objective, band_value = "accuracy", cascade_accuracy
        save_cascade(nlp, band, objective=band_objective, value=band_value, data=str(data))  # type: ignore[arg-type]
        chosen = {**chosen, "cascade": band}
    # New dicts, not new keys: the per-label dict is stored in the meta as it is.
    if decisions is not None:
        chosen = {**chosen, "decisions": decisions}
    if calibration is not None:
        chosen = {**chosen, "calibration": calibration}
    nlp.to_disk(output or student)
    return chosen


def _textcat_probabilities(nlp: Language, texts: Sequence[str], labels: List[str]) -> numpy.ndarray:
    """The classifier's probabilities, (n, L) in label order; a `semantic_filter` is left out,
    as it only reads them (and could escalate docs to a teacher)."""
    filters = [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory == FILTER_FACTORY]
    return numpy.asarray(
        [[doc.cats[label] for label in labels] for doc in nlp.pipe(texts, disable=filters)]
    )
