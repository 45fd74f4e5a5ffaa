"""The `spacy-distill` command line: one module per command."""

from . import (
    active,
    annotate,
    augment,
    check_teacher,
    convert,
    evaluate,
    export,
    inherit,
    init_config,
    merge,
    package,
    select,
    tune,
    word_vectors,
)  # noqa: F401  (registers the commands)
from ._app import app

__all__ = ["app"]
