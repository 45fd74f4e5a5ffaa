"""The `spacy-distill` command line: one module per command."""
from ._app import app
from . import annotate, convert, init_config  # noqa: F401  (registers the commands)

__all__ = ["app"]
