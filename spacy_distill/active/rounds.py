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
from ..select import duplicates_path, select_pool
from ..select.inherit import inherit_targets
from ..select.scoring import StudentScorer
from ..teacher_protocol import Teacher
from ..training.student_config import make_student_config
from ..training.train import train_pipeline

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
ROUND_FILE = "round.json"
# Duplicates of labelled texts, with their representatives' targets (no teacher call).
INHERITED_FILE = "inherited.spacy"


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
    n_inherited: int = 0
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
    inherit: bool = True,
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
    inherit (bool): train also on the pool's duplicates of labelled texts, each with the targets
        of the text it repeats (`labelled/inherited.spacy`; provenance method "inherited").
    on_round (Optional[Callable[[RoundResult], None]]): called after each round (progress).
    """
    sizes = round_sizes(budget, rounds, first)
    run = ActiveRun(
        pool,
        Path(output_dir),
        teacher,
        dev=Path(dev),
        test=Path(test),
        strategy=strategy,
        config=config,
        student_options={"arch": arch, "max_steps": max_steps, "lang": lang},
        exclude=[*exclude, dev, test],
        seed=seed,
        cache=cache,
        inherit=inherit,
    )
    for index, size in enumerate(sizes):
        result = run.round(index, size)
        if on_round is not None:
            on_round(result)
    return run.results


class ActiveRun:
    """The state of `run_rounds` between rounds (see there for the arguments)."""

    def __init__(
        self,
        pool,
        output_dir: Path,
        teacher: Teacher,
        *,
        dev: Path,
        test: Path,
        strategy,
        config,
        student_options: Dict[str, Any],
        exclude: List[PathLike],
        seed: int,
        cache,
        inherit: bool,
    ) -> None:
        self.pool, self.output_dir, self.teacher = pool, output_dir, teacher
        self.dev, self.test, self.strategy, self.exclude = dev, test, strategy, exclude
        self.student_options, self.seed, self.cache, self.inherit = (
            student_options,
            seed,
            cache,
            inherit,
        )
        self.lang: str = student_options["lang"]
        self.labelled = output_dir / "labelled"
        self.labelled.mkdir(parents=True, exist_ok=True)
        self.config = Path(config) if config is not None else output_dir / "student.cfg"
        self.make_config = config is None
        self.results: List[RoundResult] = []
        self.picks: List[Path] = []

    def round(self, index: int, size: int) -> RoundResult:
        """Run round `index` (or read it back, if its round.json exists)."""
        folder = self.output_dir / f"round_{index}"
        done = folder / ROUND_FILE
        if not done.is_file():
            result = self._run(index, size, folder)
            write_atomically(done, srsly.json_dumps(asdict(result), indent=2).encode("utf8"))
        # Read back, also after a fresh round: a resumed run reports the very same numbers.
        result = RoundResult(**srsly.read_json(done))
        self.results.append(result)
        self.picks.append(folder / "picks.jsonl")
        return result

    def _run(self, index: int, size: int, folder: Path) -> RoundResult:
        seconds: Dict[str, float] = {}
        start = time.perf_counter()
        picks = folder / "picks.jsonl"
        selection = select_pool(
            self.pool,
            picks,
            size,
            strategy="random" if index == 0 else self.strategy,
            student=self.results[-1].student if self.results else None,
            exclude=[*self.exclude, *self.picks],
            seed=self.seed,
        )
        seconds["select"] = time.perf_counter() - start
        start = time.perf_counter()
        targets = self.labelled / f"round_{index}.spacy"
        annotation = annotate(
            picks, targets, self.teacher, cache=self.cache, lang=self.lang, show_progress=False
        )
        n_inherited = _inherit(self.labelled, picks, self.lang) if self.inherit else 0
        seconds["annotate"] = time.perf_counter() - start
        if self.make_config and not self.config.is_file():
            options = self.student_options
            made = make_student_config(
                targets,
                self.dev,
                arch=options["arch"],
                max_steps=options["max_steps"],
                lang=self.lang,
            )
            self.config.write_text(made.to_str(), encoding="utf8")
        start = time.perf_counter()
        overrides = {"paths.train": str(self.labelled), "paths.dev": str(self.dev)}
        model = train_pipeline(
            self.config, folder / "student", {**overrides, "system.seed": self.seed}
        )
        seconds["train"] = time.perf_counter() - start
        start = time.perf_counter()
        scores = score_student(model, self.test)
        seconds["evaluate"] = time.perf_counter() - start
        before = self.results[-1].total_teacher_calls if self.results else 0
        n_labelled = sum(
            read_target_summary(path)["n_docs"]
            for path in sorted(self.labelled.glob("round_*.spacy"))
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
            n_inherited=n_inherited,
            seconds={k: round(v, 2) for k, v in seconds.items()},
            student=str(model),
            **scores,
        )


def _inherit(labelled: Path, picks: Path, lang: str) -> int:
    """Give the duplicates the pool holds of labelled texts their targets (`inherit_targets`):
    one file for all rounds, rewritten each round. RETURNS (int): duplicates written."""
    inherited = labelled / INHERITED_FILE
    summary = inherit_targets(
        sorted(labelled.glob("round_*.spacy")), duplicates_path(picks), inherited, lang=lang
    )
    if not summary.n_written:
        inherited.unlink(missing_ok=True)  # an empty file is no training data
    return summary.n_written


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


__all__ = [
    "INHERITED_FILE",
    "ROUND_FILE",
    "ActiveRun",
    "RoundResult",
    "round_sizes",
    "run_rounds",
    "score_student",
]
