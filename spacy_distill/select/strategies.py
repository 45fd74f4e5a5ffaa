"""The selection strategies, in the `spacy_distill_selectors` registry.

A selector gets the candidates (the pool after exclusion and dedupe, see `pool`), the budget, the
seed and, when there is one, the current student; it returns exactly min(budget, candidates)
picks in priority order, each with a score and the reason it was picked. Users add their own:

    @spacy.registry.spacy_distill_selectors("my.Selector.v1")
    def make_selector(...) -> Selector: ...   # an object with `name`, `needs_student`, `select`

Memory: random and uncertainty keep a heap of `budget` records; diversity and hybrid need every
candidate's features at once, so they work on a seeded random sample of at most `max_candidates`
candidates (a pool that holds more is sampled first; the report says so). Their cost is about
budget x candidates x 128 multiply-adds (k-center) or candidates x clusters x 128 (k-means).
"""

import hashlib
import heapq
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy

from ..data.records import Record
from ..errors import DistillError
from ..registry import selectors
from .pool import CandidateSpool
from .scoring import (
    FEATURE_KINDS,
    SCORE_BATCH,
    HashedFeatures,
    StudentScorer,
    batched,
    describe_uncertainty,
    normalize_rows,
    uncertainty,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_CANDIDATES = 50_000
# Texts between two progress lines.
PROGRESS_EVERY = 50_000
# References (already labelled texts) that diversity measures distances to, at most.
MAX_REFERENCES = 50_000
_FEATURE_BATCH = 4096


@dataclass
class Pick:
    """A picked record, the strategy's score (higher: picked earlier) and why it was picked."""

    record: Record
    strategy: str
    score: float
    reason: str


@dataclass
class SelectionContext:
    """What a selector may use.

    candidates (CandidateSpool): the records it chooses from (read as often as needed).
    budget (int): how many to pick (exactly, or all candidates if there are fewer).
    seed (int): the seed; the same inputs and seed give the same picks.
    student (Optional[StudentScorer]): the current student, if one was given.
    references (Sequence[str]): texts already labelled (diversity keeps away from them).
    notes (List[str]): what the selector did that the summary should say (e.g. sampling).
    """

    candidates: CandidateSpool
    budget: int
    seed: int
    student: Optional[StudentScorer] = None
    references: Sequence[str] = ()
    notes: List[str] = field(default_factory=list)
    show_progress: bool = False
    _started: Dict[str, Tuple[float, int]] = field(default_factory=dict)

    def progress(self, stage: str, done: int, total: int) -> None:
        """Log a line with rate and ETA every PROGRESS_EVERY texts of a stage (and at its end)
        when progress is asked for: scoring millions of candidates takes minutes."""
        if not self.show_progress:
            return
        start, logged = self._started.setdefault(stage, (time.perf_counter(), 0))
        if done - logged >= PROGRESS_EVERY or done >= total:
            self._started[stage] = (start, done)
            rate = done / max(time.perf_counter() - start, 1e-9)
            eta = (total - done) / rate if rate else 0.0
            logger.info(
                "select: %s %d/%d candidates (%.0f/s, ETA %.0f s)", stage, done, total, rate, eta
            )

    @property
    def n_picks(self) -> int:
        return min(self.budget, len(self.candidates))

    def require_student(self, strategy: str) -> StudentScorer:
        if self.student is None:
            raise DistillError(
                f"strategy '{strategy}' scores texts with the current student: pass `student` (a "
                "trained pipeline); the first round, before any student exists, uses 'random'"
            )
        return self.student


@runtime_checkable
class Selector(Protocol):
    name: str
    needs_student: bool

    def select(self, context: SelectionContext) -> List[Pick]: ...


def random_priority(seed: int, key: str) -> float:
    """A uniform number in [0, 1) from the seed and the record's key: the same record gets the
    same number in any order and any run, so a random pick does not depend on the input order."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode("utf8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _smallest_by_priority(context: SelectionContext, n: int) -> List[Tuple[float, Record]]:
    """The n candidates of smallest random priority, in that order (a heap of n)."""
    heap: List[Tuple[float, str, Record]] = []
    for record in context.candidates:
        item = (-random_priority(context.seed, record.key), record.key, record)
        if len(heap) < n:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    return sorted(((-p, record) for p, _, record in heap), key=lambda x: (x[0], x[1].key))


class RandomSelector:
    """Uniform random picks: the baseline every learning curve is compared with."""

    name = "random"
    needs_student = False

    def select(self, context: SelectionContext) -> List[Pick]:
        return [
            Pick(record, self.name, 1.0 - priority, f"random (seed {context.seed})")
            for priority, record in _smallest_by_priority(context, context.n_picks)
        ]


class UncertaintySelector:
    """The texts the current student is least sure of (margin or entropy)."""

    name = "uncertainty"
    needs_student = True

    def __init__(self, measure: str = "margin") -> None:
        uncertainty(numpy.zeros((0, 2)), True, measure)  # checks the measure
        self.measure = measure

    def select(self, context: SelectionContext) -> List[Pick]:
        student = context.require_student(self.name)
        n = context.n_picks
        heap: List[Tuple[float, float, str, Record, numpy.ndarray]] = []
        done, total = 0, len(context.candidates)
        for batch in batched(context.candidates):
            probs = student.probabilities([r.text for r in batch])
            done += len(batch)
            context.progress("scored", done, total)
            scores = uncertainty(probs, student.exclusive, self.measure)
            for record, score, row in zip(batch, scores.tolist(), probs):
                # Ties go to the smaller random priority, so that equal scores do not favour
                # the start of the pool.
                item = (score, -random_priority(context.seed, record.key), record.key, record, row)
                if len(heap) < n:
                    heapq.heappush(heap, item)
                elif item[:3] > heap[0][:3]:
                    heapq.heapreplace(heap, item)
        ordered = sorted(heap, key=lambda x: x[:3], reverse=True)
        return [
            Pick(
                record,
                self.name,
                score,
                f"{self.measure} uncertainty {score:.3f}: "
                + describe_uncertainty(row, student.labels, student.exclusive),
            )
            for score, _, _, record, row in ordered
        ]


def _features(context: SelectionContext, kind: str) -> Callable[[Sequence[str]], numpy.ndarray]:
    if kind == "hashed":
        return HashedFeatures(context.seed)
    student = context.require_student(f"features '{kind}'")
    return lambda texts: normalize_rows(student.doc_vectors(texts))


def _sample(context: SelectionContext, max_candidates: int, strategy: str) -> List[Record]:
    """The candidates a whole-pool strategy works on: all, or a seeded random sample."""
    n = len(context.candidates)
    if n <= max_candidates:
        return list(context.candidates)
    context.notes.append(
        f"{strategy}: {n} candidates, more than max_candidates ({max_candidates}); chose among a "
        "random sample of that size"
    )
    return [record for _, record in _smallest_by_priority(context, max_candidates)]


def _embed(featurize, texts: Sequence[str], context: SelectionContext, stage: str) -> numpy.ndarray:
    parts = []
    for start in range(0, len(texts), _FEATURE_BATCH):
        parts.append(featurize(texts[start : start + _FEATURE_BATCH]))
        context.progress(stage, start + len(parts[-1]), len(texts))
    return numpy.concatenate(parts) if parts else numpy.zeros((0, 1), dtype="float32")


def _distances_to(vectors: numpy.ndarray, references: numpy.ndarray) -> numpy.ndarray:
    """(n,) each vector's cosine distance to its nearest reference (inf without references)."""
    nearest = numpy.full(len(vectors), numpy.inf)
    for start in range(0, len(references), _FEATURE_BATCH):
        block = references[start : start + _FEATURE_BATCH]
        nearest = numpy.minimum(nearest, 1.0 - (vectors @ block.T).max(axis=1))
    return nearest


def k_center_greedy(
    vectors: numpy.ndarray, k: int, start: Optional[numpy.ndarray] = None
) -> List[Tuple[int, float]]:
    """Greedy k-center (Sener & Savarese, 2018) in cosine distance: each pick is the point
    farthest from the points picked before it and from the references (`start`: each point's
    distance to its nearest reference). RETURNS (index, distance when picked) in pick order."""
    nearest = (
        numpy.full(len(vectors), numpy.inf)
        if start is None
        else numpy.array(start, dtype="float64")
    )
    picks: List[Tuple[int, float]] = []
    for _ in range(min(k, len(vectors))):
        i = int(numpy.argmax(nearest))  # first of ties: the sample is in random order
        picks.append((i, float(nearest[i])))
        nearest = numpy.minimum(nearest, 1.0 - vectors @ vectors[i])
        nearest[i] = -numpy.inf
    return picks


class DiversitySelector:
    """Texts that cover the pool: greedy k-center over feature vectors, away from what is
    already labelled."""

    name = "diversity"
    needs_student = False

    def __init__(
        self, features: str = "hashed", max_candidates: int = DEFAULT_MAX_CANDIDATES
    ) -> None:
        _check_features(features, max_candidates)
        self.features, self.max_candidates = features, max_candidates

    def select(self, context: SelectionContext) -> List[Pick]:
        sample = _sample(context, self.max_candidates, self.name)
        featurize = _features(context, self.features)
        vectors = _embed(featurize, [r.text for r in sample], context, "embedded")
        start = None
        if context.references:
            start = _distances_to(
                vectors, _embed(featurize, list(context.references), context, "embedded labelled")
            )
        picks = []
        for i, distance in k_center_greedy(vectors, context.n_picks, start):
            reason = (
                "first pick: nothing labelled yet"
                if distance == numpy.inf
                else f"cosine distance {distance:.3f} to the nearest text labelled or picked before"
            )
            picks.append(Pick(sample[i], self.name, _finite(distance), reason))
        return picks


class HybridSelector:
    """Cluster the candidates, then take the most uncertain text of each cluster in turn, with
    class balance: each label the student predicts gets an equal share of the budget (what a
    label cannot use goes to the others), so that rare labels (hate, fraud) get teacher calls."""

    name = "hybrid"
    needs_student = True

    def __init__(
        self,
        n_clusters: int = 20,
        measure: str = "margin",
        features: str = "hashed",
        class_balance: bool = True,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
    ) -> None:
        if n_clusters < 1:
            raise DistillError(f"n_clusters: expected >= 1, got {n_clusters}")
        uncertainty(numpy.zeros((0, 2)), True, measure)
        _check_features(features, max_candidates)
        self.n_clusters, self.measure, self.features = n_clusters, measure, features
        self.class_balance, self.max_candidates = class_balance, max_candidates

    def select(self, context: SelectionContext) -> List[Pick]:
        from sklearn.cluster import MiniBatchKMeans

        student = context.require_student(self.name)
        sample = _sample(context, self.max_candidates, self.name)
        texts = [r.text for r in sample]
        parts = [numpy.zeros((0, len(student.labels)))]
        for start in range(0, len(texts), SCORE_BATCH):
            parts.append(student.probabilities(texts[start : start + SCORE_BATCH]))
            context.progress("scored", start + len(parts[-1]), len(texts))
        probs = numpy.concatenate(parts)
        scores = uncertainty(probs, student.exclusive, self.measure)
        vectors = _embed(_features(context, self.features), texts, context, "embedded")
        k = min(self.n_clusters, len(sample))
        clusters = (
            MiniBatchKMeans(n_clusters=k, random_state=context.seed, n_init=3, batch_size=2048)
            .fit_predict(vectors)
            .tolist()
            if k > 1
            else [0] * len(sample)
        )
        predicted = probs.argmax(axis=1).tolist() if len(sample) else []
        groups = predicted if self.class_balance else [0] * len(sample)
        quotas = balanced_quotas({g: groups.count(g) for g in set(groups)}, context.n_picks)
        order = self._order(scores, clusters, groups, quotas, context.seed, sample)
        picks = []
        for i in order:
            label = student.labels[predicted[i]]
            reason = (
                f"most uncertain left in cluster {clusters[i]} of {k} ({self.measure} "
                f"{scores[i]:.3f}; {describe_uncertainty(probs[i], student.labels, student.exclusive)})"
            )
            if self.class_balance:
                reason += f"; predicted '{label}', whose share is {quotas[groups[i]]}"
            picks.append(Pick(sample[i], self.name, float(scores[i]), reason))
        return picks

    @staticmethod
    def _order(scores, clusters, groups, quotas, seed, sample) -> List[int]:
        """Round-robin over groups, and within a group over its clusters, each turn taking the
        cluster's most uncertain text left: the first picks already cover every group."""
        queues: Dict[int, Dict[int, List[int]]] = {}
        for i in range(len(scores)):
            queues.setdefault(groups[i], {}).setdefault(clusters[i], []).append(i)
        for by_cluster in queues.values():
            for members in by_cluster.values():
                members.sort(key=lambda i: (-scores[i], random_priority(seed, sample[i].key)))
        cursors = {
            g: sorted(by_cluster, key=lambda c: (-scores[by_cluster[c][0]], c))
            for g, by_cluster in queues.items()
        }
        taken = {g: 0 for g in queues}
        turn = {g: 0 for g in queues}
        order: List[int] = []
        active = sorted(g for g in queues if quotas.get(g, 0) > 0)
        while active:
            for g in list(active):
                by_cluster, names = queues[g], cursors[g]
                name = names[turn[g] % len(names)]
                order.append(by_cluster[name].pop(0))
                taken[g] += 1
                if not by_cluster[name]:
                    names.remove(name)
                else:
                    turn[g] += 1
                if taken[g] >= quotas[g] or not names:
                    active.remove(g)
        return order


def balanced_quotas(available: Dict[int, int], budget: int) -> Dict[int, int]:
    """Equal shares of `budget` per group, no group given more than it has, the rest passed on
    to the groups that can take it (water-filling). The shares add up to min(budget, total)."""
    quotas = {g: 0 for g in available}
    left = min(budget, sum(available.values()))
    open_groups = sorted(g for g, n in available.items() if n > 0)
    while left > 0 and open_groups:
        share, extra = divmod(left, len(open_groups))
        for rank, g in enumerate(list(open_groups)):
            give = min(share + (1 if rank < extra else 0), available[g] - quotas[g])
            quotas[g] += give
            left -= give
            if quotas[g] >= available[g]:
                open_groups.remove(g)
    return quotas


def _check_features(features: str, max_candidates: int) -> None:
    if features not in FEATURE_KINDS:
        raise DistillError(f"features: expected one of {list(FEATURE_KINDS)}, got {features!r}")
    if max_candidates < 1:
        raise DistillError(f"max_candidates: expected >= 1, got {max_candidates}")


def _finite(value: float) -> float:
    return 1.0 if value == numpy.inf else value


# Short names that `select_pool(strategy=...)` and the CLI take.
STRATEGIES = {
    "random": "spacy-distill.Random.v1",
    "uncertainty": "spacy-distill.Uncertainty.v1",
    "diversity": "spacy-distill.Diversity.v1",
    "hybrid": "spacy-distill.Hybrid.v1",
}


@selectors(STRATEGIES["random"])
def configure_random() -> RandomSelector:
    return RandomSelector()


@selectors(STRATEGIES["uncertainty"])
def configure_uncertainty(measure: str = "margin") -> UncertaintySelector:
    return UncertaintySelector(measure)


@selectors(STRATEGIES["diversity"])
def configure_diversity(
    features: str = "hashed", max_candidates: int = DEFAULT_MAX_CANDIDATES
) -> DiversitySelector:
    return DiversitySelector(features, max_candidates)


@selectors(STRATEGIES["hybrid"])
def configure_hybrid(
    n_clusters: int = 20,
    measure: str = "margin",
    features: str = "hashed",
    class_balance: bool = True,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
) -> HybridSelector:
    return HybridSelector(n_clusters, measure, features, class_balance, max_candidates)


def get_selector(strategy) -> Selector:
    """A selector from a short name ("uncertainty"), a registered name
    ("spacy-distill.Uncertainty.v1") or a selector object."""
    if not isinstance(strategy, str):
        if not isinstance(strategy, Selector):
            raise DistillError(
                f"strategy: expected a name or an object with name, needs_student and select(), got {strategy!r}"
            )
        return strategy
    name = STRATEGIES.get(strategy, strategy)
    try:
        make = selectors.get(name)
    except Exception:
        known = sorted(set(STRATEGIES) | set(selectors.get_all()))
        raise DistillError(f"strategy: unknown selector {strategy!r}; known: {known}") from None
    return make()


__all__ = [
    "DEFAULT_MAX_CANDIDATES",
    "STRATEGIES",
    "DiversitySelector",
    "HybridSelector",
    "Pick",
    "RandomSelector",
    "SelectionContext",
    "Selector",
    "UncertaintySelector",
    "balanced_quotas",
    "get_selector",
    "k_center_greedy",
    "random_priority",
]
