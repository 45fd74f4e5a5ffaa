"""Composition within one variant: `spacy-distill.Chain.v1` runs augmenters one after the
other on the same text (synonyms, then typos). Steps that each make their own variants are the
entries of `[augment.steps]` (see `run.py`)."""

import random
from typing import Any, Dict, List

from ..errors import DistillError
from ..registry import registry
from .base import TRIES, Augmenter


class Chain(Augmenter):
    """Each variant passes through every step in order; a step that finds no variant of its
    input (e.g. letter noise on an emoji) passes it on unchanged."""

    method = "spacy-distill.Chain.v1"

    def __init__(self, steps: Dict[str, Augmenter], n: int = 1) -> None:
        super().__init__(n)
        if not steps:
            raise DistillError("Chain: steps is empty; give it sub-blocks [....steps.NAME]")
        for name, step in steps.items():
            if not isinstance(step, Augmenter) or step.seedless:
                raise DistillError(
                    f"Chain: steps.{name} is not an augmenter of seed texts ({step!r})"
                )
        self.steps = dict(steps)

    @property
    def params(self) -> Dict[str, Any]:
        return {
            "steps": [
                {"name": name, "method": s.method, "params": s.params}
                for name, s in self.steps.items()
            ]
        }

    def augment(self, text: str, rng: random.Random, n: int) -> List[str]:
        found: List[str] = []
        for _ in range(n * TRIES):
            if len(found) >= n:
                break
            current = text
            for step in self.steps.values():
                out = step.augment(current, rng, 1)
                current = out[0] if out else current
            if current != text and current not in found and current.strip():
                found.append(current)
        return found


@registry.spacy_distill_text_augmenters(Chain.method)
def configure_chain(steps: Dict[str, Any], n: int = 1) -> Chain:
    """Augmenters applied in sequence to each variant.

    steps (Dict[str, Any]): the augmenters, in the config's order (sub-blocks
        `[augment.steps.NAME.steps.STEP]`; their own `n` is ignored).
    n (int): variants per seed.
    RETURNS (Chain): the augmenter.
    """
    return Chain(steps, n)
