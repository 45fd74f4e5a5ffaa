"""Build a teacher from the command line: a teacher config file or a spaCy pipeline."""

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple, Union

import numpy
from catalogue import RegistryError
from confection import ConfigValidationError
from spacy.util import import_file, load_config

from ..errors import DistillError
from ..registry import registry
from ..teacher_protocol import Teacher, TeacherBase, as_capable

# Teacher settings that may name a file or folder: a relative one is read against the config's
# folder (so `training/teacher.cfg` works from anywhere), if it exists there.
PATH_SETTINGS = ("model", "head", "train_data", "gguf_file")


def resolve_relative_paths(block: Dict[str, Any], folder: Path) -> Dict[str, Any]:
    """A copy of a [teacher] block whose relative paths (PATH_SETTINGS, in nested blocks too:
    ensemble members) that exist under `folder` are made absolute; anything else (hub names,
    paths that only exist relative to the current directory) is left as it is."""
    resolved: Dict[str, Any] = {}
    for key, value in block.items():
        if isinstance(value, dict):
            value = resolve_relative_paths(value, folder)
        elif (
            key in PATH_SETTINGS
            and isinstance(value, str)
            and value
            and not Path(value).is_absolute()
        ):
            candidate = folder / value
            if candidate.exists():
                value = str(candidate.resolve())
        resolved[key] = value
    return resolved


def import_code(code_path: Optional[Union[str, Path]]) -> None:
    """Import a Python file that registers custom functions (e.g. a teacher), as `spacy train
    --code` does, but raising instead of exiting: a Ray actor or a library caller builds
    teachers too.

    code_path (Optional[Union[str, Path]]): the file; None imports nothing.
    """
    if code_path is None:
        return
    path = Path(code_path)
    if not path.is_file():
        raise DistillError(f"{path}: code file not found")
    try:
        import_file("python_code", path)
    except Exception as err:  # whatever the user's module raises on import
        raise DistillError(
            f"{path}: cannot import this code file ({type(err).__name__}: {err})"
        ) from err


def load_teacher(spec: Union[str, Path], overrides: Optional[Dict[str, Any]] = None) -> Teacher:
    """Build the teacher that `spec` names.

    spec (Union[str, Path]): a `.cfg` file with a `[teacher]` block (`@teachers = ...`), or a
        spaCy pipeline (package name or directory), used as `spacy-distill.SpacyTeacher.v1`.
    overrides (Optional[Dict[str, Any]]): config overrides, e.g. {"teacher.batch_size": 8}.
    RETURNS (Teacher): the teacher.
    """
    path = Path(spec)
    overrides = dict(overrides or {})
    if path.suffix == ".cfg":
        if not path.is_file():
            raise DistillError(f"{path}: teacher config not found")
        config = load_config(path, overrides=overrides, interpolate=True)
        if "teacher" not in config:
            raise DistillError(
                f"{path}: no [teacher] block; it needs e.g. "
                '[teacher] @teachers = "spacy-distill.SpacyTeacher.v1"'
            )
        block = resolve_relative_paths(config["teacher"], path.parent)
        try:
            teacher = registry.resolve({"teacher": block})["teacher"]
        except (RegistryError, ConfigValidationError, OSError) as err:
            # OSError: a model path that is neither a folder nor a package (spaCy's E050).
            raise DistillError(f"{path}: the [teacher] block does not build: {err}") from err
    else:
        from .spacy_teacher import configure_spacy_teacher

        kwargs = {key.split(".", 1)[1]: value for key, value in overrides.items()}
        try:
            teacher = configure_spacy_teacher(str(spec), **kwargs)
        except OSError as err:
            raise DistillError(
                f"{spec}: cannot load this as a spaCy pipeline ({err}); pass a pipeline "
                "directory, an installed pipeline package, or a teacher .cfg file"
            ) from err
    if not isinstance(teacher, Teacher):
        raise DistillError(
            f"{spec}: the [teacher] block built a {type(teacher).__name__}, which lacks what a "
            "Teacher has (labels, exclusive, teacher_id, batch_size, fingerprint, score)"
        )
    return teacher


# Packages whose version can change what a teacher built from the same config answers.
KEY_PACKAGES = ("spacy-distill", "spacy", "spacy-transformers", "transformers", "torch")
# What a LazyTeacher keeps of a built teacher, so that a rerun answers it without building.
RECORD_FIELDS = ("fingerprint", "labels", "exclusive", "teacher_id", "batch_size", "method")


class TeacherRecords(Protocol):
    """Where a LazyTeacher keeps what a built teacher answered (`cache.TeacherCache`)."""

    def teacher_record(self, key: str) -> Optional[Dict[str, Any]]: ...

    def save_teacher_record(self, key: str, record: Dict[str, Any]) -> None: ...


class LazyTeacher(TeacherBase):
    """A teacher built only when something needs the model.

    Loading a model can take a minute; a rerun whose texts are all in the teacher cache needs
    only the teacher's labels and fingerprint. `key` is a cheap hash of what the teacher is built
    from (see `teacher_key`). Once `use_records` is given a store that holds a record under the
    key, the labels, fingerprint, id, batch size and method come from it, and the model is built
    on the first call that scores a text or asks for hidden states. With no record (or no store)
    the teacher is built at once and its record saved.
    """

    def __init__(
        self, build: Callable[[], Teacher], config: Any = None, key: Optional[str] = None
    ) -> None:
        """
        build (Callable[[], Teacher]): builds the teacher (e.g. `load_teacher` with its arguments).
        config (Any): the resolved config the teacher is built from (kept for error messages).
        key (Optional[str]): the hash of that config and its files; None: never assume a record.
        """
        self._build = build
        self.config = config
        self.key = key
        self._teacher: Optional[Teacher] = None
        self._record: Optional[Dict[str, Any]] = None
        self._store: Optional[TeacherRecords] = None

    @property
    def is_built(self) -> bool:
        return self._teacher is not None

    def use_records(self, store: Optional[TeacherRecords]) -> None:
        """Answer from the record `store` keeps under `key`; without one, build now and save it."""
        self._store = store
        found = (
            store.teacher_record(self.key) if store is not None and self.key is not None else None
        )
        if found is not None and all(name in found for name in RECORD_FIELDS):
            self._record = found
        else:
            self.build()

    def build(self) -> Teacher:
        """The teacher itself, built on the first call.

        A record assumed before must match what the built teacher answers; if not, something
        the key does not cover changed (a package, a hub model): the record is replaced and a
        DistillError raised, since scores were already served under the old fingerprint.
        """
        if self._teacher is not None:
            return self._teacher
        teacher = self._build()
        built = teacher_record(teacher)
        self._teacher = teacher
        if self._store is not None and self.key is not None and built != self._record:
            self._store.save_teacher_record(self.key, built)
        assumed, self._record = self._record, built
        if assumed is not None and assumed != built:
            changed = sorted(name for name in RECORD_FIELDS if assumed.get(name) != built.get(name))
            raise DistillError(
                f"teacher {built['teacher_id']}: built from the same config and files as before, "
                f"but its {', '.join(changed)} changed (a package or a downloaded model may have "
                "been updated); run again to score with the teacher as it is now"
            )
        return teacher

    def _answer(self, name: str) -> Any:
        if self._record is None:
            self.build()
        return self._record[name]  # type: ignore[index]

    @property  # type: ignore[override]
    def labels(self) -> Tuple[str, ...]:
        return tuple(self._answer("labels"))

    @property  # type: ignore[override]
    def exclusive(self) -> bool:
        return bool(self._answer("exclusive"))

    @property  # type: ignore[override]
    def teacher_id(self) -> str:
        return str(self._answer("teacher_id"))

    @property  # type: ignore[override]
    def batch_size(self) -> int:
        return self._answer("batch_size")

    @property  # type: ignore[override]
    def method(self) -> Optional[str]:
        return self._answer("method")

    @property
    def fingerprint(self) -> str:
        return str(self._answer("fingerprint"))

    @property  # type: ignore[override]
    def supports_hidden(self) -> bool:
        return as_capable(self.build()).supports_hidden

    @property
    def hf_tokenizer(self) -> Optional[Any]:
        return as_capable(self.build()).hf_tokenizer

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        return self.build().score(texts)

    def score_with_members(
        self, texts: Sequence[str]
    ) -> Tuple[numpy.ndarray, Dict[str, numpy.ndarray]]:
        return as_capable(self.build()).score_with_members(texts)

    def stats(self) -> Dict[str, Any]:
        # Never built (every text was cached): nothing was counted.
        return as_capable(self._teacher).stats() if self._teacher is not None else {}

    def hidden_settings(self, **kwargs: Any) -> Dict[str, Any]:
        return as_capable(self.build()).hidden_settings(**kwargs)

    def hidden_states(
        self, texts: Sequence[str], docs: Optional[Sequence[Any]] = None, **kwargs: Any
    ) -> List[Any]:
        return as_capable(self.build()).hidden_states(texts, docs, **kwargs)


def teacher_record(teacher: Teacher) -> Dict[str, Any]:
    """What a LazyTeacher keeps of a built teacher (RECORD_FIELDS), as JSON values."""
    capable = as_capable(teacher)
    return {
        "fingerprint": str(capable.fingerprint),
        "labels": list(capable.labels),
        "exclusive": bool(capable.exclusive),
        "teacher_id": str(capable.teacher_id),
        "batch_size": capable.batch_size,
        "method": capable.method,
    }


def teacher_key(config: Any, paths: Sequence[Union[str, Path]] = ()) -> str:
    """A hash of what a teacher is built from: the resolved config, the size and modification
    time of every file under `paths` (a model folder, a code file), and the versions of
    KEY_PACKAGES. Cheap: files are listed, not read."""
    files = []
    for path in map(Path, paths):
        found = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file_ in found:
            if file_.is_file():
                stat = file_.stat()
                files.append([str(file_), stat.st_size, stat.st_mtime_ns])
    versions = {name: _version(name) for name in KEY_PACKAGES}
    text = json.dumps(
        {"config": config, "files": files, "versions": versions}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode("utf8")).hexdigest()


def lazy_teacher(
    spec: Union[str, Path],
    overrides: Optional[Dict[str, Any]] = None,
    code: Optional[Union[str, Path]] = None,
) -> LazyTeacher:
    """The teacher `load_teacher(spec, overrides)` builds, built only when needed (`LazyTeacher`).

    spec (Union[str, Path]): as for `load_teacher`.
    overrides (Optional[Dict[str, Any]]): as for `load_teacher`.
    code (Optional[Union[str, Path]]): the code file imported before (it may define the
        teacher): its size and modification time are part of the key.
    RETURNS (LazyTeacher): the teacher.
    """
    overrides = dict(overrides or {})
    path = Path(spec)
    paths: List[Path] = [Path(code)] if code is not None else []
    try:
        if path.suffix == ".cfg":
            config = load_config(path, overrides=overrides, interpolate=True)
            block = resolve_relative_paths(dict(config.get("teacher", {})), path.parent)
            resolved: Any = {"teacher": block}
            paths.extend(_setting_paths(block))
        else:
            resolved = {"pipeline": str(spec), "overrides": overrides}
            paths.append(path if path.exists() else _package_path(str(spec)))
        key: Optional[str] = teacher_key(resolved, paths)
    except Exception:  # whatever a broken config raises, `load_teacher` reports when it builds
        resolved, key = None, None
    return LazyTeacher(lambda: load_teacher(spec, overrides), resolved, key)


def _setting_paths(block: Dict[str, Any]) -> List[Path]:
    # The local files and folders a [teacher] block names (PATH_SETTINGS, nested blocks too).
    found: List[Path] = []
    for key, value in block.items():
        if isinstance(value, dict):
            found.extend(_setting_paths(value))
        elif key in PATH_SETTINGS and isinstance(value, str) and value and Path(value).exists():
            found.append(Path(value))
    return found


def _package_path(name: str) -> Path:
    # An installed pipeline package's folder; a name that is neither makes the build fail.
    from spacy.util import get_package_path, is_package

    return get_package_path(name) if is_package(name) else Path(name)


def _version(name: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
