"""Run a behavioural test suite (CheckList-style: minimum functionality, invariance, directional
tests; the file format is in `check_suite`) on a student and, side by side, on its teacher.

Per test the report gives each model's failure rate and the cases where the student fails and
the teacher does not ("lost" in distillation) and where both fail ("inherited" from the
teacher). Every text is scored once per model, so a suite of a few thousand texts costs one
pass of each model over them; the cases are fixed by the seed.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language

from ..errors import DistillError, LabelMismatchError
from ..filter.settings import FILTER_FACTORY
from ..pipeline.textcat_lookup import find_textcat, is_exclusive
from ..probabilities import scores_to_probabilities
from ..teacher_protocol import Teacher
from .check_suite import Case, CheckTest, Suite, build_cases, load_suite

# A model as a function: texts -> one {label: probability} per text (as `doc.cats`).
ModelFn = Callable[[Sequence[str]], Sequence[Mapping[str, float]]]


@dataclass
class CaseResult:
    """One case and how each model did on it: failed or not, and why in a few words."""

    text: str
    variants: Tuple[str, ...]
    student_failed: bool
    student_detail: str
    teacher_failed: Optional[bool] = None
    teacher_detail: str = ""

    def to_dict(self) -> Dict[str, Any]:
        out = {"text": self.text, "variants": list(self.variants)}
        out["student"] = {"failed": self.student_failed, "detail": self.student_detail}
        if self.teacher_failed is not None:
            out["teacher"] = {"failed": self.teacher_failed, "detail": self.teacher_detail}
        return out


@dataclass
class TestReport:
    """A test's results: its cases, the failure rates, and the lost / inherited failures."""

    __test__ = False  # not a pytest test class

    name: str
    kind: str
    description: str
    label: Optional[str]
    cases: List[CaseResult] = field(default_factory=list)

    @property
    def n_cases(self) -> int:
        return len(self.cases)

    @property
    def student_failure_rate(self) -> float:
        return _rate(sum(c.student_failed for c in self.cases), self.n_cases)

    @property
    def teacher_failure_rate(self) -> Optional[float]:
        if not self.cases or self.cases[0].teacher_failed is None:
            return None
        return _rate(sum(bool(c.teacher_failed) for c in self.cases), self.n_cases)

    @property
    def lost(self) -> List[CaseResult]:
        """Cases the student fails and the teacher passes (what distillation lost)."""
        return [c for c in self.cases if c.student_failed and c.teacher_failed is False]

    @property
    def inherited(self) -> List[CaseResult]:
        """Cases both fail (what the student inherited from its teacher)."""
        return [c for c in self.cases if c.student_failed and c.teacher_failed]

    def to_dict(self, max_examples: int = 10) -> Dict[str, Any]:
        """JSON-ready summary with up to `max_examples` cases of each kind of failure."""
        out: Dict[str, Any] = {
            "test": self.name,
            "kind": self.kind,
            "description": self.description,
            "label": self.label,
            "n_cases": self.n_cases,
            "student_failure_rate": self.student_failure_rate,
            "teacher_failure_rate": self.teacher_failure_rate,
        }
        failures = [c for c in self.cases if c.student_failed]
        out["student_failures"] = [c.to_dict() for c in failures[:max_examples]]
        if self.teacher_failure_rate is not None:
            out["n_lost"], out["n_inherited"] = len(self.lost), len(self.inherited)
            out["lost"] = [c.to_dict() for c in self.lost[:max_examples]]
            out["inherited"] = [c.to_dict() for c in self.inherited[:max_examples]]
        return out


@dataclass
class SuiteReport:
    """A suite's results, one `TestReport` per test in the suite's order."""

    suite: str
    seed: int
    tests: List[TestReport]
    student_labels: Dict[str, str]
    teacher_id: Optional[str] = None
    teacher_labels: Dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> TestReport:
        for test in self.tests:
            if test.name == name:
                return test
        raise KeyError(
            f"suite '{self.suite}' has no test '{name}' (tests: {[t.name for t in self.tests]})"
        )

    def to_dict(self, max_examples: int = 10) -> Dict[str, Any]:
        return {
            "suite": self.suite,
            "seed": self.seed,
            "teacher": self.teacher_id,
            "labels": {"student": self.student_labels, "teacher": self.teacher_labels or None},
            "tests": [t.to_dict(max_examples) for t in self.tests],
        }


@dataclass
class _ScoredModel:
    """A model's probabilities for every text of a run, and how to read its verdicts."""

    labels: Tuple[str, ...]
    exclusive: bool
    probs: Dict[str, numpy.ndarray]
    label_of: Dict[str, str]  # suite label -> this model's label
    threshold: float

    def p(self, text: str, suite_label: str) -> float:
        return float(self.probs[text][self.labels.index(self.label_of[suite_label])])

    def verdict(self, text: str, suite_label: Optional[str] = None) -> str:
        """The decision, as words: the argmax label (exclusive) or the labels at or over the
        threshold (multi-label); restricted to one label when the test names one."""
        row = self.probs[text]
        if suite_label is not None:
            mine = self.label_of[suite_label]
            yes = (
                self.verdict(text) == mine
                if self.exclusive
                else self.p(text, suite_label) >= self.threshold
            )
            return mine if yes else f"not {mine}"
        if self.exclusive:
            return self.labels[int(numpy.argmax(row))]
        return (
            "+".join(label for label, p in zip(self.labels, row) if p >= self.threshold) or "none"
        )


def run_suite(
    model: Union[Language, ModelFn],
    suite: Union[Suite, str],
    *,
    teacher: Optional[Teacher] = None,
    seed: int = 0,
    labels: Optional[Sequence[str]] = None,
    exclusive: Optional[bool] = None,
    label_map: Optional[Mapping[str, str]] = None,
    teacher_label_map: Optional[Mapping[str, str]] = None,
    threshold: float = 0.5,
    batch_size: int = 64,
) -> SuiteReport:
    """Run a behavioural test suite on a student and, optionally, its teacher.

    model (Union[Language, ModelFn]): a pipeline with one text classifier (a semantic_filter is
        disabled: the classifier is what is tested), or a function texts -> one {label: prob}
        dict per text.
    suite (Union[Suite, str]): a loaded suite, or a path / shipped suite name for `load_suite`.
    teacher (Optional[Teacher]): anything with `labels`, `exclusive` and `score(texts)`
        (log-probabilities or logits); its failures are reported next to the student's.
    seed (int): fixes the sampled base texts and the random perturbations.
    labels (Optional[Sequence[str]]): a model function's labels; None: the keys of its first dict.
    exclusive (Optional[bool]): whether a model function's labels are exclusive; None: True.
    label_map (Optional[Mapping[str, str]]): suite label -> student label, over the suite's own.
    teacher_label_map (Optional[Mapping[str, str]]): suite label -> teacher label.
    threshold (float): a multi-label model's decision threshold.
    batch_size (int): texts per batch.
    RETURNS (SuiteReport): per test, the cases and both models' failure rates.
    """
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    cases = {test.name: build_cases(test, seed) for test in suite.tests}
    texts = list(
        dict.fromkeys(t for found in cases.values() for c in found for t in (c.text, *c.variants))
    )
    used = sorted({t.label for t in suite.tests if t.label is not None})
    student = _score_student(model, texts, labels, exclusive, batch_size)
    student.label_of = _resolve_labels(suite, used, student.labels, label_map, "student")
    student.threshold = threshold
    scored_teacher = None
    if teacher is not None:
        scored_teacher = _score_teacher(teacher, texts, batch_size)
        scored_teacher.label_of = _resolve_labels(
            suite, used, scored_teacher.labels, teacher_label_map, "teacher"
        )
        scored_teacher.threshold = threshold
    reports = []
    for test in suite.tests:
        report = TestReport(test.name, test.kind, test.description, test.label)
        for case in cases[test.name]:
            failed, detail = _judge(test, case, student)
            result = CaseResult(case.text, case.variants, failed, detail)
            if scored_teacher is not None:
                result.teacher_failed, result.teacher_detail = _judge(test, case, scored_teacher)
            report.cases.append(result)
        reports.append(report)
    return SuiteReport(
        suite.name,
        seed,
        reports,
        student.label_of,
        teacher_id=None
        if teacher is None
        else str(getattr(teacher, "teacher_id", type(teacher).__name__)),
        teacher_labels={} if scored_teacher is None else scored_teacher.label_of,
    )


def _judge(test: CheckTest, case: Case, model: _ScoredModel) -> Tuple[bool, str]:
    """Whether a model fails a case, and a few words on what it did."""
    if test.kind == "MFT":
        assert test.label is not None
        got, p = model.verdict(case.text), model.p(case.text, test.label)
        want = model.label_of[test.label]
        passed = got == want if model.exclusive else p >= model.threshold
        return not passed, f"{got} (p({want})={p:.3f}), expected {want}"
    if test.kind == "INV":
        base = model.verdict(case.text, test.label)
        for variant in case.variants:
            got = model.verdict(variant, test.label)
            if got != base:
                return True, f"{variant!r} -> {got}; the base text -> {base}"
        return False, f"{len(case.variants)} variant(s) -> {base}"
    assert test.label is not None
    sign = 1.0 if test.direction == "up" else -1.0
    base = model.p(case.text, test.label)
    worst, worst_variant = None, ""
    for variant in case.variants:
        move = sign * (model.p(variant, test.label) - base)
        if worst is None or move < worst:
            worst, worst_variant = move, variant
    assert worst is not None
    want = model.label_of[test.label]
    detail = f"p({want}) {base:.3f} -> {base + sign * worst:.3f} for {worst_variant!r}"
    return (
        worst < test.min_change - test.tolerance,
        f"{detail} (expected {test.direction} by >= {test.min_change - test.tolerance:g})",
    )


def _score_student(model, texts, labels, exclusive, batch_size) -> _ScoredModel:
    if isinstance(model, Language):
        name = find_textcat(model)
        model_labels = tuple(model.get_pipe(name).labels)
        filters = [n for n in model.pipe_names if model.get_pipe_meta(n).factory == FILTER_FACTORY]
        cats = [doc.cats for doc in model.pipe(texts, batch_size=batch_size, disable=filters)]
        model_exclusive = is_exclusive(model, name)
    elif callable(model):
        cats = []
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            found = list(model(batch))
            if len(found) != len(batch):
                raise DistillError(
                    f"the model function returned {len(found)} results for {len(batch)} texts"
                )
            cats.extend(found)
        model_labels = tuple(labels) if labels is not None else tuple(cats[0]) if cats else ()
        model_exclusive = True if exclusive is None else bool(exclusive)
    else:
        raise DistillError(
            f"model must be a spaCy pipeline or a function texts -> cats dicts, not {type(model).__name__}"
        )
    try:
        rows = numpy.asarray([[c[label] for label in model_labels] for c in cats], dtype="float64")
    except KeyError as err:
        raise LabelMismatchError(
            f"the student gave no probability for label {err} (its labels: {list(model_labels)})"
        ) from err
    return _ScoredModel(model_labels, model_exclusive, dict(zip(texts, rows)), {}, 0.5)


def _score_teacher(teacher: Teacher, texts: Sequence[str], batch_size: int) -> _ScoredModel:
    size = max(1, int(getattr(teacher, "batch_size", batch_size) or batch_size))
    blocks = [
        numpy.asarray(teacher.score(texts[start : start + size]), dtype="float64")
        for start in range(0, len(texts), size)
    ]
    labels = tuple(teacher.labels)
    scores = numpy.concatenate(blocks) if blocks else numpy.zeros((0, len(labels)))
    if scores.shape != (len(texts), len(labels)) or not numpy.all(numpy.isfinite(scores)):
        raise DistillError(
            f"teacher {getattr(teacher, 'teacher_id', '')}: scores of shape {scores.shape} with non-finite values "
            f"or the wrong shape (expected ({len(texts)}, {len(labels)}), finite)"
        )
    probs = scores_to_probabilities(scores, bool(teacher.exclusive))
    return _ScoredModel(labels, bool(teacher.exclusive), dict(zip(texts, probs)), {}, 0.5)


def _resolve_labels(
    suite: Suite,
    used: Sequence[str],
    model_labels: Sequence[str],
    overrides: Optional[Mapping[str, str]],
    who: str,
) -> Dict[str, str]:
    """Suite label -> the model's label, for every label a test names: the override, else the
    first of the suite's names for it that the model has (the suite label itself counts)."""
    resolved = {}
    for label in used:
        if overrides and label in overrides:
            candidates: Tuple[str, ...] = (overrides[label],)
        else:
            candidates = (label, *suite.labels.get(label, ()))
        found = next((c for c in candidates if c in model_labels), None)
        if found is None:
            argument = "label_map" if who == "student" else "teacher_label_map"
            raise LabelMismatchError(
                f"suite '{suite.name}' label '{label}': the {who} has none of {list(candidates)} "
                f"(its labels: {list(model_labels)}); map it with {argument}"
            )
        resolved[label] = found
    return resolved


def _rate(count: int, total: int) -> float:
    return count / total if total else 0.0
