import typer

app = typer.Typer(
    name="spacy-distill",
    help="Distil a large teacher into a small, fast spaCy text classifier.",
    no_args_is_help=True,
    add_completion=False,
    # Help texts are plain text: Rich markup would swallow "[teacher]" and "spacy-distill[ray]".
    rich_markup_mode=None,
)

# Commands that take config overrides (`--teacher.batch_size 8`) pass unknown options on.
OVERRIDES_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def import_code(code_path) -> None:
    """Import a Python file (e.g. one that registers a custom teacher), as `spacy train --code`."""
    if code_path is not None:
        from spacy.cli._util import import_code as spacy_import_code

        spacy_import_code(code_path)
