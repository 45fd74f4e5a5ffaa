"""Build a teacher from the command line: a teacher config file or a spaCy pipeline."""
from pathlib import Path
from typing import Any, Dict, Optional, Union

from catalogue import RegistryError
from confection import ConfigValidationError
from spacy.util import load_config

from ..errors import DistillError
from ..registry import registry
from .base import Teacher


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
        try:
            teacher = registry.resolve({"teacher": config["teacher"]})["teacher"]
        except (RegistryError, ConfigValidationError) as err:
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
