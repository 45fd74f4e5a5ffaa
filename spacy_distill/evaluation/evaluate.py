"""`spacy-distill evaluate`: student and teacher side by side on the same texts, in one run."""

import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy
import spacy
from tqdm import tqdm

from ..arguments import check_int_argument
from ..errors import LabelMismatchError
from ..filter.decision import REVIEW, DecisionRule
from ..filter.settings import ShippedDecision, shipped_decision
from ..pipeline.meta import stored_calibration
from ..pipeline.textcat_lookup import find_textcat, is_exclusive
from ..teachers.loading import load_teacher
from . import metrics
from .data import EvaluationData, load_evaluation_data, teacher_probabilities
from .report import write_report
from .tune import decision_quality

logger = logging.getLogger(__name__)


def evaluate(
    student: Union[str, Path],
    data: Union[str, Path],
    output_dir: Union[str, Path],
    *,
    teacher: Optional[str] = None,
    component: Optional[str] = None,
    limit: int = 0,
    batch_size: int = 256,
    measure_cost: bool = True,
    latency_n: int = 200,
    plots: bool = True,
    show_progress: bool = True,
    baseline: Optional[Union[str, Path]] = None,
) -> Dict[str, Any]:
    """Compare a student with its teacher on one data set and write report.json/report.md/PNGs.

    student (Union[str, Path]): the student pipeline (path or package name).
    data (Union[str, Path]): JSONL/CSV records, or a target file whose stored teacher outputs
        are used instead of running the teacher again.
    output_dir (Union[str, Path]): where the report goes.
    teacher (Optional[str]): a teacher spec (pipeline or .cfg) to score texts that have no
        stored teacher output, and to measure the teacher's cost.
    component (Optional[str]): the student's text classifier (None: the only one).
    limit (int): evaluate on the first N texts (0: all).
    batch_size (int): batch size of throughput measurements.
    measure_cost (bool): measure speed and memory (each model in its own subprocess).
    latency_n (int): single-text calls for latency percentiles.
    plots (bool): write PNG plots (needs matplotlib).
    show_progress (bool): show progress while models run.
    baseline (Optional[Union[str, Path]]): a student trained on gold alone (same data, no
        teacher), reported beside the distilled one, with the labels where the teacher or the
        distilled student is worse than it (`gold_check`).
    RETURNS (Dict[str, Any]): the report (also written to report.json).
    """
    # Before the output folder is made and any model runs.
    check_int_argument("limit", limit, 0)
    check_int_argument("batch_size", batch_size, 1)
    check_int_argument("latency_n", latency_n, 0)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    nlp = spacy.load(student)
    name = find_textcat(nlp, component)
    exclusive = is_exclusive(nlp, name)
    labels = list(nlp.get_pipe(name).labels)
    threshold = float(nlp.get_pipe(name).cfg.get("threshold", 0.5)) if not exclusive else 0.5
    dataset = load_evaluation_data(data, labels, exclusive=exclusive, limit=limit)
    _log(
        f"evaluating on {len(dataset.texts)} texts from {dataset.source} ({dataset.n_gold} with gold)"
    )
    student_probs = _student_probabilities(
        nlp, name, dataset.texts, labels, batch_size, show_progress
    )
    teacher_probs, teacher_id, teacher_from = teacher_probabilities_for(
        dataset, teacher, exclusive, show_progress
    )

    report: Dict[str, Any] = {
        "student": {"path": str(student), "component": name},
        "teacher": {"id": teacher_id, "spec": teacher, "outputs_from": teacher_from},
        "data": {"path": dataset.source, "n_texts": len(dataset.texts), "n_gold": dataset.n_gold},
        "labels": labels,
        "exclusive": exclusive,
        "threshold": threshold,
    }
    quality: Dict[str, Any] = {}
    calibration: Dict[str, Any] = {}
    confusion: Dict[str, Any] = {}
    models = {"student": student_probs}
    if teacher_probs is not None:
        models["teacher"] = teacher_probs
    if baseline is not None:
        baseline_nlp = spacy.load(baseline)
        baseline_name = find_textcat(baseline_nlp, None)
        if sorted(baseline_nlp.get_pipe(baseline_name).labels) != sorted(labels):
            raise LabelMismatchError(
                f"baseline {baseline} has labels "
                f"{list(baseline_nlp.get_pipe(baseline_name).labels)}; the student has {labels}"
            )
        models["gold_only"] = _student_probabilities(
            baseline_nlp, baseline_name, dataset.texts, labels, batch_size, show_progress
        )
        report["baseline"] = {"path": str(baseline), "component": baseline_name}
    for model_name, probs in models.items():
        if dataset.n_gold:
            quality[model_name] = metrics.classification_metrics(
                dataset.gold, probs, labels, exclusive=exclusive, threshold=threshold
            )
            calibration[model_name] = metrics.calibration(dataset.gold, probs, exclusive=exclusive)
            confusion[model_name] = metrics.confusion_matrix(
                dataset.gold, probs, labels, exclusive=exclusive, threshold=threshold
            )
    report["quality"] = quality
    if "gold_only" in quality:
        report["gold_check"] = gold_check(quality)
    report["calibration"] = calibration
    fit = stored_calibration(nlp.meta)
    if fit:
        report["calibration_fit"] = fit
    report["confusion"] = confusion
    if "teacher" in quality:
        report["retention"] = metrics.retention(quality["student"], quality["teacher"])
    if teacher_probs is not None:
        report["agreement"] = metrics.agreement(
            student_probs, teacher_probs, labels, exclusive=exclusive, threshold=threshold
        )
        report["agreement"]["mean_kl_teacher_to_student"] = metrics.mean_kl(
            teacher_probs, student_probs, exclusive=exclusive
        )
        if dataset.n_gold:
            report["teacher_bias_audit"] = metrics.teacher_bias_audit(
                dataset.gold, teacher_probs, student_probs, exclusive=exclusive, threshold=threshold
            )
    shipped = shipped_decision(nlp, labels, exclusive)
    if dataset.n_gold:
        report["filter"] = filter_report(dataset.gold, student_probs, shipped)
    if teacher_probs is not None and dataset.n_gold:
        report["cascade"] = _cascade(
            nlp, shipped, labels, exclusive, dataset.gold, student_probs, teacher_probs
        )
    if measure_cost:
        report["cost"] = _measure_cost(student, teacher, dataset.texts, batch_size, latency_n)
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["command"] = " ".join(["spacy-distill"] + sys.argv[1:]) if sys.argv else None
    write_report(report, output_dir, plots=plots)
    _log(f"wrote {output_dir / 'report.md'}")
    return report


def gold_check(quality: Dict[str, Any]) -> Dict[str, Any]:
    """Per label, the F1 of the teacher and the distilled student against the gold-only student,
    and the labels where either is worse (distillation should never end below gold alone)."""
    per_label = {}
    for label, base in quality["gold_only"]["per_label"].items():
        row = {
            "gold_only_f1": base.get("f1"),
            "student_f1": quality["student"]["per_label"][label].get("f1"),
        }
        if "teacher" in quality:
            row["teacher_f1"] = quality["teacher"]["per_label"][label].get("f1")
        per_label[label] = row

    def worse(key: str) -> List[str]:
        return [
            label
            for label, row in per_label.items()
            if row.get(key) is not None
            and row["gold_only_f1"] is not None
            and row[key] < row["gold_only_f1"] - 1e-9
        ]

    return {
        "per_label": per_label,
        "teacher_worse": worse("teacher_f1"),
        "student_worse": worse("student_f1"),
        "macro_f1": {name: quality[name]["macro_f1"] for name in quality},
    }


def filter_report(
    gold: numpy.ndarray, student_probs: numpy.ndarray, shipped: ShippedDecision
) -> Dict[str, Any]:
    """What the shipped filter does on these docs, computed with its own rule: the quality of its
    decisions against gold next to the argmax's, and how often it gives each verdict (docs in
    the band get `review` when no teacher is set)."""
    rule = shipped.rule
    argmax_rule = DecisionRule(rule.labels, rule.exclusive, None, rule.actions, rule.default_action)
    kept = rule.kept(student_probs)
    verdicts = numpy.asarray(rule.verdicts(kept, student_probs), dtype=object)
    in_band = rule.margins(student_probs) < shipped.escalation_margin
    verdicts[in_band] = REVIEW
    names, counts = (
        numpy.unique(verdicts.astype(str), return_counts=True) if len(verdicts) else ([], [])
    )
    return {
        "source": shipped.source,
        "thresholds": dict(rule.thresholds),
        "actions": dict(rule.actions),
        "default_action": rule.default_action,
        "escalation_margin": shipped.escalation_margin,
        "decisions": decision_quality(gold, student_probs, rule),
        "argmax": decision_quality(gold, student_probs, argmax_rule),
        "verdict_rates": {
            str(name): int(count) / len(verdicts) for name, count in zip(names, counts)
        },
        "review_band_rate": float(in_band.mean()) if len(in_band) else 0.0,
    }


def _cascade(nlp, shipped, labels, exclusive, gold, student_probs, teacher_probs) -> Dict[str, Any]:
    """Accuracy vs escalation rate with the shipped rule (and its tuned band)."""
    from ..filter.cascade import cascade_curve
    from .tune import get_cascade

    teacher_rule = DecisionRule(
        labels, exclusive, None, shipped.rule.actions, shipped.rule.default_action
    )
    tuned = get_cascade(nlp)
    named = [("tuned", float(tuned["margin"]))] if tuned.get("margin") is not None else []
    return cascade_curve(
        gold, student_probs, teacher_probs, shipped.rule, teacher_rule, extra_margins=named
    )


def _student_probabilities(
    nlp, name: str, texts: Sequence[str], labels: List[str], batch_size: int, show_progress: bool
) -> numpy.ndarray:
    rows = []
    # The filter (and any cascade teacher it holds) is not what is measured here.
    filters = [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory == "semantic_filter"]
    docs = nlp.pipe(texts, batch_size=batch_size, disable=filters)
    for doc in tqdm(
        docs,
        total=len(texts),
        desc="student",
        unit="doc",
        disable=not show_progress,
        file=sys.stderr,
    ):
        rows.append([doc.cats.get(label, 0.0) for label in labels])
    return numpy.asarray(rows, dtype="float64")


def teacher_probabilities_for(
    dataset: EvaluationData, teacher: Optional[str], exclusive: bool, show_progress: bool = False
):
    """The teacher's probabilities on the data: stored ones, else from running `teacher`.

    RETURNS: (probabilities or None, teacher id, where they came from).
    """
    if dataset.teacher_probs is not None:
        return dataset.teacher_probs, dataset.teacher_id, "target file"
    if teacher is None:
        return None, None, None
    model = load_teacher(teacher)
    if set(model.labels) != set(dataset.labels) or bool(model.exclusive) != exclusive:
        raise LabelMismatchError(
            f"teacher {model.teacher_id} has labels {list(model.labels)} (exclusive={model.exclusive}); "
            f"the student has {dataset.labels} (exclusive={exclusive}); map them with label_map"
        )
    order = [list(model.labels).index(label) for label in dataset.labels]
    rows = []
    size = max(1, int(getattr(model, "batch_size", 32)))
    with tqdm(
        total=len(dataset.texts),
        desc="teacher",
        unit="doc",
        disable=not show_progress,
        file=sys.stderr,
    ) as bar:
        for start in range(0, len(dataset.texts), size):
            batch = dataset.texts[start : start + size]
            rows.append(numpy.asarray(model.score(batch), dtype="float64")[:, order])
            bar.update(len(batch))
    return (
        teacher_probabilities(numpy.concatenate(rows), exclusive),
        model.teacher_id,
        "teacher run",
    )


def _measure_cost(
    student, teacher: Optional[str], texts: Sequence[str], batch_size: int, latency_n: int
) -> Dict[str, Any]:
    from . import cost

    result: Dict[str, Any] = {}
    _log("measuring the student's cost in a subprocess")
    # As it ships: in a venv with spaCy alone, not beside the teacher's torch.
    result["student"] = cost.measure_in_subprocess(
        "pipeline",
        str(student),
        list(texts),
        batch_size=batch_size,
        latency_n=latency_n,
        without_frameworks=True,
    )
    if teacher is not None:
        _log("measuring the teacher's cost in a subprocess")
        result["teacher"] = cost.measure_in_subprocess(
            "teacher", str(teacher), list(texts), batch_size=batch_size, latency_n=latency_n
        )
        result["summary"] = cost.cost_summary(result["student"], result["teacher"])
    return result


def _log(message: str) -> None:
    # Progress of a long evaluation: the CLI shows these INFO records; a library caller chooses.
    logger.info("[evaluate] %s", message)
