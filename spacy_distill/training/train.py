"""`spacy train` in this process, for loops that train many students (the rounds of `active`):
the config's own reader, losses and scorer, with spaCy's table of scores sent to the log
instead of the terminal (the library never prints)."""

import io
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Union

from spacy import util
from spacy.training.initialize import init_nlp
from spacy.training.loop import train

from ..errors import DistillError

logger = logging.getLogger(__name__)


class _LogLines(io.TextIOBase):
    """A text stream whose lines go to the log at DEBUG (spaCy's training table and messages)."""

    def __init__(self) -> None:
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                logger.debug("spacy train: %s", line.rstrip())
        return len(text)


def train_pipeline(
    config_path: Union[str, Path],
    output_dir: Union[str, Path],
    overrides: Optional[Dict[str, Any]] = None,
) -> Path:
    """Train a pipeline as `spacy train CONFIG --output OUTPUT_DIR` would, on the CPU.

    config_path (Union[str, Path]): the training config (e.g. from `make_student_config`).
    output_dir (Union[str, Path]): where model-best and model-last go.
    overrides (Optional[Dict[str, Any]]): config overrides, e.g. {"paths.train": "..."}.
    RETURNS (Path): the model-best folder.
    """
    config_path = Path(config_path)
    if not config_path.is_file():
        raise DistillError(f"{config_path}: training config not found")
    config = util.load_config(config_path, overrides=overrides or {}, interpolate=False)
    stream = _LogLines()
    nlp = init_nlp(config, use_gpu=-1)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    train(nlp, output_dir, use_gpu=-1, stdout=stream, stderr=stream)
    return output_dir / "model-best"


__all__ = ["train_pipeline"]
