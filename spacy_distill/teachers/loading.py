"""Build a teacher from the command line: a teacher config file or a spaCy pipeline."""
from pathlib import Path
from typing import Any, Dict, Optional, Union

from catalogue import RegistryError
from confection import ConfigValidationError
from spacy.util import import_file, load_config

from ..errors import DistillError
from ..registry import registry
from .base import Teacher


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
        elif key in PATH_SETTINGS and isinstance(value, str) and value and not Path(value).is_absolute():
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
        raise DistillError(f"{path}: cannot import this code file ({type(err).__name__}: {err})") from err


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
