"""`run_rounds`: the active distillation loop, one folder per round, resumable.

Round 0 labels a random seed set of `first` texts; each later round selects its share of the
rest of the budget with the strategy (the previous round's student scoring the pool), has the
teacher annotate the picks (through the cache, so a text labelled before costs no call), and
trains a new student on everything labelled so far. After each round the student is scored on
the test set (macro-F1 against gold, agreement with the teacher where the test set stores the
teacher's outputs) and the round is written to `round_<i>/round.json`; a rerun skips the rounds
that have one. `report` turns the rounds into a report with a learning curve.
"""

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy
import srsly

from ..annotation.annotate import annotate
from ..annotation.cache import TeacherCache
from ..arguments import check_int_argument
from ..data.files import write_atomically
from ..data.targets import read_target_summary
from ..errors import DistillError
from ..evaluation.data import load_evaluation_data
from ..evaluation.metrics import classification_metrics
from ..select import select_pool
from ..select.scoring import StudentScorer
from ..teacher_protocol import Teacher
from ..training.student_config import make_student_config
from ..training.train import train_pipeline

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
ROUND_FILE = "round.json"


@dataclass
class RoundResult:
    """One round: what it picked and paid for, how long each step took, and the student's scores."""

    round: int
    strategy: str
    n_picked: int
    n_labelled: int
    teacher_calls: int
    total_teacher_calls: int
    cache_hits: int
    n_duplicates: int
    seconds: Dict[str, float] = field(default_factory=dict)
    macro_f1: Optional[float] = None
    accuracy: Optional[float] = None
    agreement: Optional[float] = None
    teacher_macro_f1: Optional[float] = None
    retention: Optional[float] = None
    student: str = ""


def round_sizes(budget: int, rounds: int, first: Optional[int]) -> List[int]:
    """Texts per round: `first` (default: an equal share) for the seed set, the rest of the
    budget split evenly over the other rounds (earlier rounds take the remainder)."""
    check_int_argument("budget", budget, 1)
    check_int_argument("rounds", rounds, 1)
    first = budget // rounds if first is None else first
    check_int_argument("first", first, 1, budget)
    if rounds == 1:
        return [budget]
    share, extra = divmod(budget - first, rounds - 1)
    if share < 1:
        raise DistillError(
            f"`budget` {budget} leaves {budget - first} texts after the first round's {first}: too "
            f"few for {rounds - 1} more rounds"
        )
    return [first] + [share + (1 if i < extra else 0) for i in range(rounds - 1)]


def run_rounds(
    pool: Union[PathLike, Sequence[PathLike]],
    output_dir: PathLike,
    teacher: Teacher,
    *,
    budget: int,
    test: PathLike,
    dev: PathLike,
    rounds: int = 4,
    first: Optional[int] = None,
    strategy="hybrid",
    config: Optional[PathLike] = None,
    arch: str = "bow",
    max_steps: int = 1000,
    exclude: Sequence[PathLike] = (),
    seed: int = 0,
    cache: Optional[Union[PathLike, TeacherCache]] = None,
    lang: str = "en",
    on_round: Optional[Callable[[RoundResult], None]] = None,
) -> List[RoundResult]:
    """Run the rounds (see the module docstring); RETURNS the results of every round.

    pool: the unlabelled pool (JSONL/CSV files or folders of them).
    output_dir (PathLike): one `round_<i>` folder per round (picks, student), `labelled/` (the
        target file of each round) and `student.cfg`.
    teacher (Teacher): the teacher (a `teachers.loading.LazyTeacher` loads only if a text is
        not in the cache).
    budget (int): teacher calls to spend in all, over all rounds.
    test (PathLike): the test set (JSONL/CSV with gold, or a target file; one that stores the
        teacher's outputs also gives agreement and retention).
    dev (PathLike): the development target file `spacy train` scores on.
    rounds (int): how many rounds; first (Optional[int]): the seed set's size (default: an
        equal share).
    strategy: the selector of the rounds after the first (see `select.strategies`).
    config (Optional[PathLike]): the student's training config; None writes one
        (`make_student_config` with `arch` and `max_steps`) from the first round's targets.
    exclude (Sequence[PathLike]): texts never to label, e.g. the evaluation sets (the dev and
        test sets are always excluded).
    seed (int): the seed of every selection.
    cache: the teacher cache (an SQLite path or an open cache); None scores every text.
    on_round (Optional[Callable[[RoundResult], None]]): called after each round (progress).
    """
    sizes = round_sizes(budget, rounds, first)
    output_dir = Path(output_dir)
    labelled = output_dir / "labelled"
    labelled.mkdir(parents=True, exist_ok=True)
    exclude = [*exclude, dev, test]
    results: List[RoundResult] = []
    student: Optional[Path] = None
    picks: List[Path] = []
    for index, size in enumerate(sizes):
        folder = output_dir / f"round_{index}"
        done = folder / ROUND_FILE
        picks_path = folder / "picks.jsonl"
        if not done.is_file():
            result = _run_round(
                index,
                size,
                folder,
                pool,
                teacher,
                student,
                picks,
                labelled,
                exclude,
                strategy,
                seed,
                cache,
                lang,
                config,
                dev,
                test,
                (arch, max_steps),
                results,
            )
            write_atomically(done, srsly.json_dumps(asdict(result), indent=2).encode("utf8"))
        # Read back, also after a fresh round: a resumed run reports the very same numbers.
        result = RoundResult(**srsly.read_json(done))
        results.append(result)
        picks.append(picks_path)
        student = Path(result.student)
        if on_round is not None:
            on_round(result)
    return results


def _run_round(
    index,
    size,
    folder,
    pool,
    teacher,
    student,
    picks,
    labelled,
    exclude,
    strategy,
    seed,
    cache,
    lang,
    config,
    dev,
    test,
    student_options,
    results,
) -> RoundResult:
    seconds: Dict[str, float] = {}
    start = time.perf_counter()
    name = "random" if index == 0 else strategy
    selection = select_pool(
        pool,
        folder / "picks.jsonl",
        size,
        strategy=name,
        student=student if index else None,
        exclude=[*exclude, *picks],
        seed=seed,
    )
    seconds["select"] = time.perf_counter() - start
    start = time.perf_counter()
    targets = labelled / f"round_{index}.spacy"
    annotation = annotate(
        folder / "picks.jsonl", targets, teacher, cache=cache, lang=lang, show_progress=False
    )
    seconds["annotate"] = time.perf_counter() - start
    config_path = Path(config) if config is not None else labelled.parent / "student.cfg"
    if config is None and not config_path.is_file():
        arch, max_steps = student_options
        made = make_student_config(targets, dev, arch=arch, max_steps=max_steps, lang=lang)
        config_path.write_text(made.to_str(), encoding="utf8")
    start = time.perf_counter()
    model = train_pipeline(
        config_path,
        folder / "student",
        {"paths.train": str(labelled), "paths.dev": str(dev), "system.seed": seed},
    )
    seconds["train"] = time.perf_counter() - start
    start = time.perf_counter()
    scores = score_student(model, test)
    seconds["evaluate"] = time.perf_counter() - start
    before = results[-1].total_teacher_calls if results else 0
    n_labelled = sum(
        read_target_summary(path)["n_docs"] for path in sorted(labelled.glob("*.spacy"))
    )
    return RoundResult(
        round=index,
        strategy=selection.strategy,
        n_picked=selection.n_selected,
        n_labelled=n_labelled,
        teacher_calls=annotation.n_teacher,
        total_teacher_calls=before + annotation.n_teacher,
        cache_hits=annotation.n_cache_hits,
        n_duplicates=selection.n_duplicates,
        seconds={k: round(v, 2) for k, v in seconds.items()},
        student=str(model),
        **scores,
    )


def score_student(model: PathLike, test: PathLike) -> Dict[str, Optional[float]]:
    """The student's macro-F1 and accuracy on the test set's gold, and, where the test set
    stores the teacher's outputs, its agreement with the teacher, the teacher's macro-F1 and
    the retention (student / teacher macro-F1)."""
    scorer = StudentScorer(model)
    data = load_evaluation_data(test, scorer.labels, exclusive=scorer.exclusive)
    probs = scorer.probabilities(data.texts)
    student = classification_metrics(data.gold, probs, scorer.labels, exclusive=scorer.exclusive)
    scores: Dict[str, Any] = {
        "macro_f1": student.get("macro_f1"),
        "accuracy": student.get("accuracy"),
    }
    if data.teacher_probs is not None:
        teacher = classification_metrics(
            data.gold, data.teacher_probs, scorer.labels, exclusive=scorer.exclusive
        )
        if scorer.exclusive:
            same = probs.argmax(axis=1) == data.teacher_probs.argmax(axis=1)
        else:
            same = ((probs >= 0.5) == (data.teacher_probs >= 0.5)).all(axis=1)
        scores["agreement"] = float(numpy.mean(same))
        scores["teacher_macro_f1"] = teacher.get("macro_f1")
        if scores["macro_f1"] is not None and teacher.get("macro_f1"):
            scores["retention"] = scores["macro_f1"] / teacher["macro_f1"]
    return scores


__all__ = ["ROUND_FILE", "RoundResult", "round_sizes", "run_rounds", "score_student"]
