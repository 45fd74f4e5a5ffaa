"""What a scoring backend is: something that fills the teacher cache for a stream of texts.

`annotate` writes targets from the cache; a backend only decides where the teacher runs. The
plain backend (no backend object) scores batch by batch in the annotate process; the Ray
backend (`spacy_distill.backends.ray`) runs the teacher as Ray Data batch inference on an
actor pool. Using the cache as the meeting point keeps one writer of target files and makes
every backend resumable the same way: a rerun finds the scores and computes nothing twice, and a
rerun whose texts are all cached does not even load the driver's teacher.
A backend that starts processes (a local Ray) stops them before `fill_cache` returns or
raises, and on the exits it cannot return from (SIGTERM, interpreter exit).
"""

from typing import Iterator, Protocol, runtime_checkable

from ..annotation.cache import TeacherCache
from ..teacher_protocol import Teacher

BACKEND_CHOICES = ("plain", "ray")


@runtime_checkable
class ScoringBackend(Protocol):
    def fill_cache(
        self,
        teacher: Teacher,
        texts: Iterator[str],
        cache: TeacherCache,
        *,
        total: int,
        show_progress: bool,
    ) -> int:
        """Score the texts the cache lacks and store their scores in it.

        teacher (Teacher): the driver's teacher: its labels and fingerprint key the cache, its
            batch size sizes the batches. Only these are read (a `LazyTeacher` answers them
            without loading its model); where the teacher runs, the backend builds its own.
        texts (Iterator[str]): the run's texts, in order (some may be cached already).
        cache (TeacherCache): the cache to read and fill.
        total (int): how many texts to expect, for progress.
        show_progress (bool): show a progress bar with rate and ETA.
        RETURNS (int): the number of texts the teacher scored.
        """
        ...
