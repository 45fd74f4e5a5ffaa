"""Data generation and augmentation: new texts from seed texts, for the teacher to label.

One module per concept: `base` (what an augmenter is), `noise`, `obfuscation`, `synonyms`,
`masked_lm`, `generation` (LLM or server text generators), `teacher_written` (paraphrases and
texts written for a label), `back_translation`, `compose` (chains), `run` (seeded runs to
JSONL) and `config` (the `[augment]` block). The evaluation-set guard they run is the data
layer's, `spacy_distill.data.leakage`. Importing the
package registers the augmenters; torch, transformers and httpx are imported only when an
augmenter that needs them is built.
"""

from ..data.leakage import EvalIndex, LeakageError
from . import (
    back_translation,
    compose,
    generation,
    masked_lm,
    noise,
    obfuscation,
    synonyms,
    teacher_written,
)  # noqa: F401
from .base import Augmenter, derive_rng
from .config import AugmentPlan, load_augment_config
from .run import AugmentSummary, augment_file, augment_records

__all__ = [
    "Augmenter",
    "AugmentPlan",
    "AugmentSummary",
    "EvalIndex",
    "LeakageError",
    "augment_file",
    "augment_records",
    "derive_rng",
    "load_augment_config",
]
