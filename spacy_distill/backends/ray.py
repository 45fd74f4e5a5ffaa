"""The Ray backend: a teacher run as Ray Data batch inference on a pool of teacher actors.

The driver (the `annotate` process) streams the run's texts, keeps those the teacher cache
lacks, and puts them into Ray's object store in blocks of `block_size` texts (so the driver's
memory stays flat; the object store spills to disk when it fills). Ray Data maps the blocks
through an actor pool (`concurrency` actors, each holding one teacher, with `num_gpus` GPUs each)
and streams the scores back; the driver stores each batch in the cache as it arrives, so a run
killed mid-way keeps everything returned so far. `annotate` then writes the targets from the
cache, exactly as the plain backend does, so both give the same target files.

A local Ray (address None or "local") is started by this process and stopped on every exit
it can see: a normal return, an exception, KeyboardInterrupt, SIGTERM or SIGHUP (turned into
SystemExit, so that cleanup code runs), and interpreter exit (atexit). SIGKILL cannot be caught:
on Linux Ray fate-shares the processes it starts with the driver (the kernel kills them when it
dies; see docs/scale.md for what is left and how to clean up). A cluster this process only
connected to is left running.

Ray is an optional dependency: `pip install spacy-distill[ray]`.
"""

import atexit
import json
import signal
import sys
import threading
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy
from tqdm import tqdm

from ..annotation.cache import TeacherCache, score_with_details
from ..annotation.run import LENGTH_BUCKET_BATCHES
from ..errors import DistillError
from ..teacher_protocol import Teacher, as_capable

# Records sorted by length are scored in batches of the teacher's batch size; an actor gets
# this many of them at a time (as the plain backend's length-bucketed windows).
LOCAL_ADDRESSES = (None, "", "local", "none")
# Signals that end the process by default and that a local Ray must not outlive.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def import_ray():
    """Import ray, or fail with the extra that installs it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise DistillError(
            f"The Ray backend needs Ray Data ({err}); install it with `pip install spacy-distill[ray]`"
        ) from None
    return ray


@dataclass
class TeacherSpec:
    """How an actor builds its own copy of the teacher: the spec the driver's teacher was loaded
    from (`load_teacher`'s arguments), not the loaded teacher, which may not pickle.

    teacher (str): a teacher `.cfg` file or a spaCy pipeline (name or path); on a cluster the
        path must be readable on every node (or name an installed package).
    overrides (Dict[str, Any]): config overrides, e.g. {"teacher.batch_size": 8}.
    code (Optional[str]): a Python file to import first (e.g. registering a teacher).
    """

    teacher: str
    overrides: Dict[str, Any]
    code: Optional[str] = None

    def __call__(self) -> Teacher:
        from ..teachers.loading import import_code, load_teacher

        import_code(self.code)
        return load_teacher(self.teacher, self.overrides)


class TeacherActor:
    """A Ray Data callable class: one teacher per actor, loaded once, scoring batches of texts."""

    def __init__(self, make_teacher: Callable[[], Teacher], fingerprint: str) -> None:
        self.teacher = make_teacher()
        if self.teacher.fingerprint != fingerprint:
            # Scores are cached under the driver's fingerprint: a differing actor teacher (another
            # file at the same path on a node, another package version) would poison the cache.
            raise DistillError(
                f"The teacher built on a Ray worker has fingerprint {self.teacher.fingerprint[:12]}, "
                f"the driver's has {fingerprint[:12]}: do all nodes see the same teacher files and versions?"
            )
        self.batch_size = max(1, int(as_capable(self.teacher).batch_size))

    def __call__(self, batch: Dict[str, numpy.ndarray]) -> Dict[str, numpy.ndarray]:
        texts = [str(text) for text in batch["text"]]
        n_labels = len(self.teacher.labels)
        scores = numpy.zeros((len(texts), n_labels), dtype="float32")
        extras: List[str] = [""] * len(texts)
        # Texts of similar length share a batch, so padded teachers waste little compute.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            batch_scores, batch_extras = score_with_details(self.teacher, [texts[i] for i in index])
            if batch_scores.shape != (len(index), n_labels):
                raise DistillError(
                    f"Teacher {self.teacher.teacher_id} returned scores of shape {batch_scores.shape} "
                    f"for {len(index)} texts and {n_labels} labels"
                )
            scores[index] = batch_scores
            for i, extra in zip(index, batch_extras):
                extras[i] = "" if extra is None else json.dumps(extra)
        return {
            "text": numpy.asarray(texts, dtype=object),
            "scores": scores,
            "extra": numpy.asarray(extras, dtype=object),
        }


class RayBackend:
    """Runs the teacher as Ray Data batch inference; see the module docstring."""

    def __init__(
        self,
        make_teacher: Callable[[], Teacher],
        *,
        address: Optional[str] = None,
        num_actors: int = 1,
        batch_size: Optional[int] = None,
        num_gpus: float = 0.0,
        num_cpus: float = 1.0,
        block_size: int = 4096,
    ) -> None:
        """
        make_teacher (Callable[[], Teacher]): builds the teacher in each actor; it is pickled
            and sent to the workers (a `TeacherSpec`, or any importable function).
        address (Optional[str]): the Ray cluster: "auto", "ray://host:10001" or a GCS address;
            None or "local" starts a Ray on this machine (and stops it afterwards). If Ray is
            already initialised in this process, that Ray is used.
        num_actors (int): teacher actors in the pool (copies of the model).
        batch_size (Optional[int]): texts per actor call; None: the teacher's batch size x 16.
        num_gpus (float): GPUs per actor (0: CPU only; 0.5: two actors share a GPU).
        num_cpus (float): CPUs per actor.
        block_size (int): texts per input block put into the object store.
        """
        if num_actors < 1:
            raise DistillError(f"`num_actors` must be at least 1, got {num_actors}")
        if batch_size is not None and batch_size < 1:
            raise DistillError(f"`batch_size` must be at least 1, got {batch_size}")
        if num_gpus < 0 or num_cpus < 0:
            raise DistillError(
                f"`num_gpus` and `num_cpus` must not be negative, got {num_gpus} and {num_cpus}"
            )
        self.make_teacher = make_teacher
        self.address = address
        self.num_actors = num_actors
        self.batch_size = batch_size
        self.num_gpus = num_gpus
        self.num_cpus = num_cpus
        self.block_size = max(1, block_size)

    def fill_cache(
        self,
        teacher: Teacher,
        texts: Iterator[str],
        cache: TeacherCache,
        *,
        total: int,
        show_progress: bool,
    ) -> int:
        """Score the texts the cache lacks on the actor pool; store their scores in the cache.

        RETURNS (int): the number of texts the teacher scored.
        """
        fingerprint, n_labels = teacher.fingerprint, len(teacher.labels)
        ray = import_ray()
        session: Optional[RaySession] = None
        try:
            batch_size = (
                self.batch_size
                or max(1, int(as_capable(teacher).batch_size)) * LENGTH_BUCKET_BATCHES
            )
            # A block goes to one actor: several blocks per actor keep every actor busy.
            block_size = min(self.block_size, max(batch_size, -(-total // (4 * self.num_actors))))
            refs, n_pending = [], 0
            for block in _missing_blocks(texts, cache, fingerprint, n_labels, block_size):
                if session is None and not ray.is_initialized():
                    session = self._init(ray)
                import pyarrow

                refs.append(ray.put(pyarrow.table({"text": block})))
                n_pending += len(block)
            if not n_pending:
                return 0  # all cached: Ray is not even started
            if session is None and not ray.is_initialized():
                session = self._init(ray)
            dataset = ray.data.from_arrow_refs(refs).map_batches(
                TeacherActor,
                fn_constructor_kwargs={
                    "make_teacher": self.make_teacher,
                    "fingerprint": fingerprint,
                },
                batch_size=batch_size,
                batch_format="numpy",
                concurrency=self.num_actors,
                num_gpus=self.num_gpus or None,
                num_cpus=self.num_cpus,
            )
            progress = tqdm(
                total=n_pending,
                unit="doc",
                desc=f"ray: {self.num_actors} teacher actor(s)",
                disable=not show_progress,
                file=sys.stderr,
            )
            n_scored = 0
            try:
                for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    batch_texts = [str(text) for text in batch["text"]]
                    scores = numpy.asarray(batch["scores"], dtype="float32").reshape(
                        len(batch_texts), n_labels
                    )
                    extras = [json.loads(e) if e else None for e in batch["extra"]]
                    # Never cache a NaN (as the plain backend): annotate then reports the text.
                    keep = [i for i in range(len(batch_texts)) if numpy.isfinite(scores[i]).all()]
                    if keep:
                        cache.put_many(
                            fingerprint,
                            [batch_texts[i] for i in keep],
                            scores[keep],
                            [extras[i] for i in keep],
                        )
                    n_scored += len(batch_texts)
                    progress.update(len(batch_texts))
            finally:
                progress.close()
            return n_scored
        finally:
            if session is not None:
                session.close()

    def _init(self, ray) -> "RaySession":
        from ray.data import DataContext

        session = RaySession(ray, self.address)
        DataContext.get_current().enable_progress_bars = False  # ours shows rate and ETA
        return session


def is_local_address(address: Optional[str]) -> bool:
    """Whether `address` asks for a Ray started on this machine for this run."""
    return address is None or str(address).lower() in LOCAL_ADDRESSES


class RaySession:
    """A Ray this process initialised, and the cleanup owed for it.

    A local address starts a new Ray (`address="local"`, never an existing cluster found on the
    machine, so that this process owns what it stops). `close` shuts it down; it also runs at
    interpreter exit (atexit), and SIGTERM or SIGHUP become SystemExit (exit status 128 + the
    signal) so that `finally` blocks, this one's included, run on the way out. A handler set
    before (by the caller) is called instead, as without Ray. `ray.init` replaces the SIGTERM
    handler and never puts it back: `close` restores the handlers found before `ray.init`.
    Connected to a remote cluster, `close` only disconnects (`ray.shutdown` leaves it running).
    """

    def __init__(self, ray, address: Optional[str] = None, **init_kwargs: Any) -> None:
        """
        ray: the ray module.
        address (Optional[str]): see `RayBackend`.
        init_kwargs: more arguments for `ray.init`.
        """
        self.ray = ray
        self.owns_cluster = is_local_address(address)
        self._closed = False
        # Signal handlers can only be read and set from the main thread.
        self._previous: Dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        kwargs = {
            "include_dashboard": False,
            "logging_level": "ERROR",
            "log_to_driver": True,
            **init_kwargs,
        }
        try:
            ray.init(address="local" if self.owns_cluster else address, **kwargs)
        except BaseException:
            self._restore_signals()
            raise
        atexit.register(self.close)
        for sig, previous in self._previous.items():
            if previous is None:  # set outside Python: it can be neither called nor restored
                continue
            # An ignored signal (e.g. SIGHUP under nohup) stays ignored.
            signal.signal(sig, signal.SIG_IGN if previous == signal.SIG_IGN else self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)  # if it ends the process, atexit or `finally` stops Ray
            return
        raise SystemExit(128 + signum)

    def _restore_signals(self) -> None:
        for sig, previous in self._previous.items():
            if previous is not None:
                signal.signal(sig, previous)

    def close(self) -> None:
        """Stop the Ray this process started (or disconnect from a cluster); restore handlers."""
        if self._closed:
            return
        self._closed = True
        # First: a second signal during the shutdown acts at once, as it would without Ray.
        self._restore_signals()
        atexit.unregister(self.close)
        shutdown = self.ray.shutdown
        if "wait_for_processes" in _parameters(shutdown):
            # Return only once the local processes are gone: none outlive this process.
            shutdown(wait_for_processes=True)
        else:  # an older Ray
            shutdown()


def _parameters(function: Callable) -> Tuple[str, ...]:
    import inspect

    try:
        return tuple(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return ()


def _missing_blocks(
    texts: Iterator[str], cache: TeacherCache, fingerprint: str, n_labels: int, size: int
) -> Iterator[List[str]]:
    # Only texts the cache lacks go to Ray; a text repeated within a block is sent once.
    iterator = iter(texts)
    while True:
        window = list(islice(iterator, size))
        if not window:
            return
        cached = cache.get_many(fingerprint, window, n_labels)
        missing = list(dict.fromkeys(text for i, text in enumerate(window) if i not in cached))
        if missing:
            yield missing
