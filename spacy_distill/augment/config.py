"""The `[augment]` block of an augmentation config, which drives `spacy-distill augment` as a
teacher config drives `annotate`:

    [augment]
    seed = 0              # same seed, input and config -> byte-identical output
    keep_seeds = false    # also write the seeds (with their labels) first

    [augment.steps.typos]            # one step: its own variants of every seed
    @text_augmenters = "spacy-distill.KeyboardTypos.v1"
    n = 2
    rate = 0.05

    [augment.steps.leet]
    @text_augmenters = "spacy-distill.Leetspeak.v1"
    n = 1
    rate = 0.5

Steps run in the order of the file; a step's name appears in its variants' ids.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

from catalogue import RegistryError
from confection import ConfigValidationError
from spacy.util import load_config

from ..errors import DistillError
from ..registry import TEXT_AUGMENTERS, block_keys, registry
from .base import Augmenter

SETTINGS = ("seed", "keep_seeds", "steps")


@dataclass
class AugmentPlan:
    """What an `[augment]` block says: the steps by name, in order, the seed and keep_seeds."""

    steps: Dict[str, Augmenter]
    seed: int = 0
    keep_seeds: bool = False


def load_augment_config(
    path: Union[str, Path], overrides: Optional[Dict[str, Any]] = None
) -> AugmentPlan:
    """Build the augmenters of a config file's `[augment]` block.

    path (Union[str, Path]): the .cfg file.
    overrides (Optional[Dict[str, Any]]): e.g. {"augment.seed": 1, "augment.steps.typos.n": 3}.
    RETURNS (AugmentPlan): the steps, seed and keep_seeds.
    """
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"{path}: augmentation config not found")
    try:
        config = load_config(path, overrides=dict(overrides or {}), interpolate=True)
    except ConfigValidationError as err:
        raise DistillError(f"{path}: {err}") from err
    block = config.get("augment")
    if not isinstance(block, dict):
        raise DistillError(f"{path}: no [augment] block (see docs/augmentation.md)")
    unknown = sorted(set(block) - set(SETTINGS))
    if unknown:
        raise DistillError(
            f"{path}: [augment] has unknown setting(s) {unknown}; allowed: {list(SETTINGS)}"
        )
    steps_block = block.get("steps")
    if not isinstance(steps_block, dict) or not steps_block:
        raise DistillError(
            f"{path}: [augment.steps] is empty; add a step, e.g. [augment.steps.typos]"
        )
    for name, step in steps_block.items():
        if not isinstance(step, dict) or not any(
            key in step for key in block_keys(TEXT_AUGMENTERS)
        ):
            raise DistillError(
                f'{path}: [augment.steps.{name}] needs @{TEXT_AUGMENTERS} (or @text_augmenters) = "..." '
                f"(registered: {sorted(registry.spacy_distill_text_augmenters.get_all())})"
            )
    try:
        steps = registry.resolve({"steps": steps_block})["steps"]
    except (RegistryError, ConfigValidationError) as err:
        raise DistillError(f"{path}: [augment.steps] does not build: {err}") from err
    except DistillError as err:
        raise DistillError(f"{path}: [augment.steps]: {err}") from err
    for name, step in steps.items():
        if not isinstance(step, Augmenter):
            raise DistillError(
                f"{path}: [augment.steps.{name}] built a {type(step).__name__}, not an augmenter"
            )
    seed, keep_seeds = block.get("seed", 0), block.get("keep_seeds", False)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DistillError(f"{path}: [augment] seed: expected an integer, got {seed!r}")
    if not isinstance(keep_seeds, bool):
        raise DistillError(
            f"{path}: [augment] keep_seeds: expected true or false, got {keep_seeds!r}"
        )
    # The config's order, not the resolver's, fixes the step order (and so the output bytes).
    ordered = {name: steps[name] for name in steps_block}
    return AugmentPlan(steps=ordered, seed=seed, keep_seeds=keep_seeds)
