"""Files: written atomically, hashed in constant memory, and JSON reports read back, each with an
error that names the file. The one place these file mechanics live, below every other layer."""

import hashlib
import os
from contextlib import suppress
from pathlib import Path
from typing import Any, Union

import srsly

from ..errors import DistillError
from .targets import TMP_SUFFIX

_HASH_BLOCK = 1 << 20


def file_sha256(path: Union[str, Path]) -> str:
    """The SHA-256 of a file's bytes, read in blocks (constant memory for any input size)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file_:
        for block in iter(lambda: file_.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: Union[str, Path], data: bytes) -> Path:
    """Write `data` to `path` (its folder created if missing) through `<path>.tmp` in the same
    folder, renamed into place.

    A reader never sees half a file, and a failure (a full disk, an interrupt) leaves neither
    half a file nor the temporary. An OSError is raised again with `path` as its filename, so
    its message names the file that could not be written (not the temporary).

    path (Union[str, Path]): the file to write.
    data (bytes): its content.
    RETURNS (Path): the path written.
    """
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as file_:
            file_.write(data)
            file_.flush()
            # Durable before the rename: after a power cut the name holds all of it or nothing.
            os.fsync(file_.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    return path


def read_report(path: Union[str, Path], what: str) -> Any:
    """The parsed JSON of the report at `path`; a DistillError naming `path` and `what` (e.g.
    "evaluation report") when it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"{path}: {what} not found")
    try:
        return srsly.read_json(path)
    except ValueError as err:
        raise DistillError(f"{path}: the {what} is not JSON ({err})") from err
