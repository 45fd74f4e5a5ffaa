import logging
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

import typer
from wasabi import msg

app = typer.Typer(
    name="spacy-distill",
    help="Distil a large teacher into a small, fast spaCy text classifier.",
    no_args_is_help=True,
    add_completion=False,
    # Help texts are plain text: Rich markup would swallow "[teacher]" and "spacy-distill[ray]".
    rich_markup_mode=None,
)


def positive(value: float) -> float:
    """A typer callback for options that must be > 0: typer's `min=` includes its bound, and a
    temperature or coefficient of 0 divides by zero (NaN fails here too)."""
    if not value > 0:
        raise typer.BadParameter(f"must be > 0, got {value}")
    return value


@app.callback()
def main(
    torch_threads: Optional[int] = typer.Option(
        None,
        "--torch-threads",
        min=0,
        help="Threads for torch, which runs the teachers (0: torch's default, one per core). One "
        "per core oversubscribes a busy machine: 1 was 4-7x faster per step on a shared 2-core one",
    ),
):
    """Distil a large teacher into a small, fast spaCy text classifier."""
    if torch_threads is not None:
        from ..threads import set_torch_threads

        set_torch_threads(torch_threads)


def cache_option() -> Any:
    """The --cache option of the commands that call a teacher."""
    return typer.Option(
        None,
        "--cache",
        help="Teacher cache (SQLite); default $SPACY_DISTILL_CACHE or ~/.cache/spacy-distill/teacher_cache.sqlite",
    )


def cache_path(cache: Optional[Path], use_cache: bool) -> Optional[Path]:
    """The teacher cache that --cache and --use-cache/--no-cache ask for (None: no cache)."""
    if not use_cache:
        return None
    from ..annotation.cache import default_cache_path

    return cache or default_cache_path()


def code_option(what: str = "teacher") -> Any:
    """The --code option: a Python file that registers the user's own `what` (see import_code)."""
    return typer.Option(
        None,
        "--code",
        "-c",
        help=f"A Python file to import first, e.g. one registering your own {what}",
    )


def progress_option(help_text: str = "Show a progress bar") -> Any:
    """The --progress/--no-progress option."""
    return typer.Option(True, "--progress/--no-progress", help=help_text)


# Commands that take config overrides (`--teacher.batch_size 8`) pass unknown options on.
OVERRIDES_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def import_code(code_path) -> None:
    """Import a Python file (e.g. one that registers a custom teacher), as `spacy train --code`."""
    from wasabi import msg

    from ..errors import DistillError
    from ..teachers.loading import import_code as import_code_file

    try:
        import_code_file(code_path)
    except DistillError as err:
        msg.fail(f"--code: {err}", exits=1)


# How library messages name an argument: `name`, or `name=value` with the value it was given.
_ARGUMENT = re.compile(r"`(\w+)(?:=([^`]*))?`")


def option_flags(*names: str) -> Dict[str, str]:
    """Argument name -> the flag of the option of the same name (`hidden_loss` -> --hidden-loss)."""
    return {name: "--" + name.replace("_", "-") for name in names}


def with_flags(
    message: str, flags: Mapping[str, str], value_flags: Optional[Mapping[str, str]] = None
) -> str:
    """A library message as the command line says it: the arguments it names in backticks
    (`hidden_loss`, `arch='bow'`) become the command's flags (--hidden-loss, --arch bow).

    flags (Mapping[str, str]): argument name -> flag (or the name of a positional, e.g. OUTPUT);
        arguments left out stay as they are.
    value_flags (Optional[Mapping[str, str]]): "name=value" -> a flag of its own (e.g.
        "cache=None" -> "--no-cache").
    """

    def flag(match: "re.Match[str]") -> str:
        name, value = match.group(1), match.group(2)
        if name not in flags:
            return match.group(0)
        if value is None:
            return flags[name]
        return (value_flags or {}).get(
            f"{name}={value}", f"{flags[name]} {value.strip(chr(34) + chr(39))}"
        )

    return _ARGUMENT.sub(flag, message)


class _LogPrinter(logging.Handler):
    def __init__(self, level: int, rewrite: Callable[[str], str]) -> None:
        super().__init__(level)
        self.rewrite = rewrite

    def emit(self, record: logging.LogRecord) -> None:
        text = self.rewrite(self.format(record))
        if record.levelno >= logging.WARNING:
            msg.warn(text)
        else:
            print(text, file=sys.stderr, flush=True)


@contextmanager
def library_log_shown(
    level: int = logging.INFO,
    logger_name: str = "spacy_distill",
    rewrite: Callable[[str], str] = str,
) -> Iterator[None]:
    """Show what the library logs at `level` or above while a command runs (warnings as the
    command's own): the library never prints, the command line does. `rewrite` turns a message
    into the command's terms, e.g. arguments into flags (`with_flags`)."""
    logger, handler = logging.getLogger(logger_name), _LogPrinter(level, rewrite)
    previous = logger.level
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
