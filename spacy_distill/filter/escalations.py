"""The escalation log: what the cascade teacher decided, kept so that the next `spacy train`
learns exactly the texts the student doubted in production, without a second teacher call.

One JSON object per line (schema 1), one line per doc the teacher decided:

    text        str     the doc's text
    labels      list    the student's labels, in the order of `teacher` and `student`
    teacher     list    the teacher's probability per label
    student     list    the student's probability per label
    margin      float   the student's distance to its nearest threshold (why it was in doubt)
    verdict     str     the verdict the teacher's probabilities gave
    exclusive   bool    one label per text (True) or multi-label
    component   str     the `semantic_filter` that escalated it
    teacher_id  str     the teacher's readable id, secrets masked (`mask_secrets`)
    time        str     when the batch was written, UTC, ISO 8601
    schema      int     1

Crash safety: a batch's lines go to the file in one `os.write` on an `O_APPEND` descriptor,
under an exclusive `flock` where the platform has one, then `os.fsync`. Concurrent writers
(threads or processes) never interleave within a line, and a SIGKILL loses at most the lines
being written. Those can be left half-written at the end of the file: the next writer cuts
them off before it appends, and a reader skips a final line without its newline (with a
warning).

Rotation: a file that has grown past `max_bytes` is renamed, between batches, to
`PATH.<YYYYmmddTHHMMSSZ>.<n>` and the next batch starts a new PATH. A timestamped name rather
than logrotate's `PATH.1..N`: one atomic rename per rotation, no shifting of the older files
(which a crash could leave half done, and which would change the name of a file that a target
file's provenance already points at), and the names sort in the order they were written.

Part of the run time a packaged student carries: the standard library and spaCy's own
dependencies only.
"""

import datetime
import glob
import json
import logging
import math
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Union

from ..errors import DistillError

try:  # POSIX; elsewhere writers of one file in several processes are not serialised
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

SCHEMA = 1
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
FILE_MODE = 0o600  # the texts are user data
FIELDS = (
    "text",
    "labels",
    "teacher",
    "student",
    "margin",
    "verdict",
    "exclusive",
    "component",
    "teacher_id",
    "time",
    "schema",
)
_STAMP = "%Y%m%dT%H%M%SZ"
_ROTATED = r"\.(\d{8}T\d{6}Z)\.(\d+)"
_LOG_SUFFIX = ".jsonl"

# Secrets that an HTTP client may put in an error message or a teacher's id: credentials in a
# URL, key-like query parameters, authorization headers, API keys.
_SECRETS = (
    (re.compile(r"(://)[^/\s@]+@"), r"\1***@"),
    (
        re.compile(
            r"(?i)([?&](?:api[_-]?key|key|token|access_token|secret|password|sig|signature)=)[^&\s'\"]+"
        ),
        r"\1***",
    ),
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    (re.compile(r"\b(sk|pk|hf|ghp|gho|xox[abp])[-_][A-Za-z0-9_-]{8,}"), r"\1-***"),
)


def mask_secrets(text: str) -> str:
    """`text` with likely secrets (URL credentials, key-like query parameters, authorization
    headers, API keys) replaced by `***`."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the millisecond (the `time` field)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def escalation_record(
    *,
    text: str,
    labels: Sequence[str],
    teacher: Sequence[float],
    student: Sequence[float],
    margin: float,
    verdict: str,
    exclusive: bool,
    component: str,
    teacher_id: str,
    time: str,
) -> Dict[str, Any]:
    """One line of the log (see the module docstring); the teacher_id with secrets masked."""
    return {
        "text": text,
        "labels": list(labels),
        "teacher": [float(p) for p in teacher],
        "student": [float(p) for p in student],
        "margin": float(margin),
        "verdict": verdict,
        "exclusive": bool(exclusive),
        "component": component,
        "teacher_id": mask_secrets(str(teacher_id)),
        "time": time,
        "schema": SCHEMA,
    }


class EscalationLog:
    """An append-only, rotating JSONL file of escalations (see the module docstring).

    Nothing is held open between batches: each `write` opens PATH, appends, syncs and closes
    it, so a rotation by another process is followed at the next batch and there is nothing to
    flush or close when the process ends.
    """

    def __init__(
        self,
        path: Union[str, Path],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = 0,
        fsync: bool = True,
    ) -> None:
        """
        path (Union[str, Path]): the log file (made, with its folder, on the first write);
            a relative path is read against the current directory now.
        max_bytes (int): rotate the file once it holds more than this many bytes.
        keep (int): how many rotated files to keep (the newest); 0: all.
        fsync (bool): sync each batch to disk before `write` returns.
        """
        if int(max_bytes) < 1:
            raise DistillError(f"max_bytes must be >= 1, got {max_bytes}")
        if int(keep) < 0:
            raise DistillError(f"keep must be >= 0, got {keep}")
        self.path = Path(path).expanduser().absolute()
        self.max_bytes = int(max_bytes)
        self.keep = int(keep)
        self.fsync = bool(fsync)
        self.n_written = 0
        self._thread_lock = threading.Lock()

    def __getstate__(self) -> Dict[str, Any]:
        # A pipeline is pickled for `nlp.pipe(n_process=...)`: each process gets its own lock
        # (processes are serialised by the file lock).
        return {k: v for k, v in self.__dict__.items() if k != "_thread_lock"}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()

    def write(self, records: Sequence[Dict[str, Any]]) -> int:
        """Append one batch of records (see `escalation_record`) in one write.

        RETURNS (int): the number of records written.
        """
        if not records:
            return 0
        data = "".join(
            json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
            for record in records
        ).encode("utf8")
        with self._thread_lock, self._locked_file() as fd:
            _cut_torn_tail(fd, self.path)
            written = os.write(fd, data)
            if written != len(data):  # a full disk; what did land is cut off by the next writer
                raise OSError(f"{self.path}: wrote {written} of {len(data)} bytes")
            if self.fsync:
                os.fsync(fd)
            if os.fstat(fd).st_size > self.max_bytes:
                self._rotate()
        self.n_written += len(records)
        return len(records)

    @contextmanager
    def _locked_file(self) -> Iterator[int]:
        """An O_APPEND descriptor on the current PATH, exclusively locked (where flock exists);
        readable too, to find a torn last line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    # Renamed by another writer's rotation while we waited: open the new PATH.
                    try:
                        same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                    except FileNotFoundError:
                        same = False
                    if not same:
                        continue
                yield fd
                return
            finally:
                os.close(fd)  # closing releases the lock

    def _rotate(self) -> Path:
        """Rename PATH to its next free rotated name (the caller holds the lock); drop the oldest
        rotated files beyond `keep`. RETURNS (Path): the rotated file."""
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime(_STAMP)
        # After the newest rotated file of the same second, never in a gap `keep` left: the
        # names must sort in the order they were written.
        numbers = [int(p.name.rsplit(".", 1)[1]) for p in rotated_files(self.path)]
        stamps = [p.name.rsplit(".", 2)[1] for p in rotated_files(self.path)]
        n = 1 + max([k for k, s in zip(numbers, stamps) if s == stamp], default=0)
        target = self.path.with_name(f"{self.path.name}.{stamp}.{n}")
        os.rename(self.path, target)
        logger.info("escalation log %s rotated to %s", self.path, target.name)
        if self.keep:
            for old in rotated_files(self.path)[: -self.keep]:
                old.unlink(missing_ok=True)
        return target


def _cut_torn_tail(fd: int, path: Path) -> None:
    """Cut off a last line without its newline (a writer killed mid-write), so that the next
    line does not join it. The caller holds the lock."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    os.ftruncate(fd, end)
    logger.warning(
        "%s: cut off %d byte(s) of a line left half-written (a writer was killed mid-write)",
        path,
        size - end,
    )


def rotated_files(path: Union[str, Path]) -> List[Path]:
    """The rotated siblings of a log, oldest first."""
    path = Path(path)
    pattern = re.compile(re.escape(path.name) + _ROTATED + r"$")
    found = []
    if path.parent.is_dir():
        for sibling in path.parent.iterdir():
            match = pattern.match(sibling.name)
            if match and sibling.is_file():
                found.append(((match.group(1), int(match.group(2))), sibling))
    return [sibling for _, sibling in sorted(found)]


def escalation_files(paths: Union[str, Path, Iterable[Union[str, Path]]]) -> List[Path]:
    """The log files that `paths` name, each log's rotated files first (oldest first), then the
    log itself.

    paths: a log (its rotated siblings come with it), a rotated file, a directory (its `*.jsonl`
        logs and their rotated files) or a glob pattern; or a list of them.
    RETURNS (List[Path]): the files, in the order they were written.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: List[Path] = []
    for entry in paths:
        text = str(entry)
        if glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
            if not matches:
                raise DistillError(f"{text}: no file matches this pattern")
            files.extend(_in_log_order(matches))
        elif Path(text).is_dir():
            logs = sorted(Path(text).glob(f"*{_LOG_SUFFIX}"))
            rotated = sorted(Path(text).glob(f"*{_LOG_SUFFIX}.*"))
            found = _in_log_order([*logs, *(p for p in rotated if _rotated_base(p) is not None)])
            if not found:
                raise DistillError(f"{text}: no escalation logs (*{_LOG_SUFFIX}) in this folder")
            files.extend(found)
        else:
            path = Path(text)
            siblings = rotated_files(path)
            if not path.is_file() and not siblings:
                raise DistillError(f"{path}: escalation log not found")
            files.extend(siblings + ([path] if path.is_file() else []))
    unique: List[Path] = []
    for path in files:
        if path not in unique:
            unique.append(path)
    return unique


def _rotated_base(path: Path) -> Optional[Path]:
    match = re.match(r"(.+)" + _ROTATED + r"$", path.name)
    return path.with_name(match.group(1)) if match else None


def _in_log_order(paths: Sequence[Path]) -> List[Path]:
    def key(path: Path):
        match = re.match(r"(.+)" + _ROTATED + r"$", path.name)
        if match:
            return (str(path.with_name(match.group(1))), 0, match.group(2), int(match.group(3)))
        return (str(path), 1, "", 0)

    return sorted(paths, key=key)


class EscalationLine(NamedTuple):
    """A validated record with the file and (1-based) line it was read from."""

    path: Path
    line: int
    record: Dict[str, Any]


def read_escalation_lines(
    paths: Union[str, Path, Iterable[Union[str, Path]]],
) -> Iterator[EscalationLine]:
    """Read and validate the records of escalation logs, in the order they were written.

    paths: see `escalation_files`.
    YIELDS (EscalationLine): each record with its file and line (see `read_escalation_file`).
    """
    for path in escalation_files(paths):
        yield from read_escalation_file(path)


def read_escalation_file(path: Union[str, Path]) -> Iterator[EscalationLine]:
    """Read and validate the records of one log file (without its rotated siblings).

    path (Union[str, Path]): the file.
    YIELDS (EscalationLine): each record with its file and line. A bad line raises a
        DistillError naming the file, line and field; a last line without its newline (a write
        cut short) is skipped with a warning.
    """
    path = Path(path)
    with path.open("rb") as file_:
        for number, raw in enumerate(file_, start=1):
            if not raw.endswith(b"\n"):
                logger.warning(
                    "%s:%d: skipped a last line without its newline (%d bytes; a write cut short)",
                    path,
                    number,
                    len(raw),
                )
                break
            if raw.strip():
                yield EscalationLine(path, number, _validated(raw, f"{path}:{number}"))


def read_escalations(
    paths: Union[str, Path, Iterable[Union[str, Path]]],
) -> Iterator[Dict[str, Any]]:
    """The validated records of escalation logs, in the order they were written (see
    `read_escalation_lines`, which also says where each came from).

    paths: a log (with its rotated siblings), a rotated file, a directory, a glob pattern, or a
        list of them.
    YIELDS (Dict[str, Any]): one record per line (the fields of the module docstring).
    """
    for entry in read_escalation_lines(paths):
        yield entry.record


def is_escalation_log(path: Union[str, Path]) -> bool:
    """Whether a file's first line looks like an escalation record (has `schema`, `teacher`
    and `student`), e.g. to tell a log from input records."""
    try:
        with Path(path).open("rb") as file_:
            first = json.loads(file_.readline())
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and {"schema", "teacher", "student"} <= set(first)


def _validated(raw: bytes, where: str) -> Dict[str, Any]:
    def fail(field: str, problem: str) -> DistillError:
        return DistillError(f"{where}: field '{field}': {problem}")

    try:
        record = json.loads(raw)
    except ValueError as err:
        raise DistillError(f"{where}: not a JSON line ({err})") from None
    if not isinstance(record, dict):
        raise DistillError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [name for name in FIELDS if name not in record]
    if missing:
        raise fail(missing[0], f"missing (a record has {', '.join(FIELDS)})")
    if record["schema"] != SCHEMA:
        raise fail(
            "schema", f"version {record['schema']!r}; this spacy-distill reads version {SCHEMA}"
        )
    labels = record["labels"]
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(label, str) and label for label in labels)
        or len(set(labels)) != len(labels)
    ):
        raise fail("labels", f"expected a list of distinct label names, got {labels!r}")
    for name in ("teacher", "student"):
        probs = record[name]
        if not isinstance(probs, list) or len(probs) != len(labels):
            raise fail(name, f"expected {len(labels)} probabilities (one per label), got {probs!r}")
        if not all(_is_number(p) and 0.0 <= p <= 1.0 for p in probs):
            raise fail(name, f"expected probabilities in [0, 1], got {probs!r}")
    if not _is_number(record["margin"]):
        raise fail("margin", f"expected a number, got {record['margin']!r}")
    if not isinstance(record["exclusive"], bool):
        raise fail("exclusive", f"expected true or false, got {record['exclusive']!r}")
    for name in ("text", "verdict", "component", "teacher_id"):
        if not isinstance(record[name], str):
            raise fail(name, f"expected a string, got {type(record[name]).__name__}")
    try:
        datetime.datetime.fromisoformat(record["time"])
    except (TypeError, ValueError):
        raise fail("time", f"expected an ISO 8601 time, got {record['time']!r}") from None
    return record


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = [
    "DEFAULT_MAX_BYTES",
    "FIELDS",
    "SCHEMA",
    "EscalationLine",
    "EscalationLog",
    "escalation_files",
    "escalation_record",
    "is_escalation_log",
    "mask_secrets",
    "read_escalation_file",
    "read_escalation_lines",
    "read_escalations",
    "rotated_files",
    "utc_now",
]
