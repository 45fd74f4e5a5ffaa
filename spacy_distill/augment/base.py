"""What a text augmenter is, and the helpers every augmenter shares: seeded random streams,
word spans, case copying and parameter checks.

An augmenter turns one text into up to `n` new texts (`augment(text, rng, n)`); a *seedless*
one (e.g. texts written for a label from its description) makes texts once per run
(`generate(seeds, rng)`). It names itself in every variant's provenance through `method` (its
registered name) and `params` (its settings, JSON-serializable). Randomness comes only from the
`random.Random` it is handed, which the runner derives from the run's seed, the step's name and
the seed text's key: the same seed gives the same variants, whatever else is in the file.
"""

import hashlib
import random
import re
import string
from typing import Any, Dict, List, Sequence, Tuple

from ..errors import DistillError

# An augmenter asked for n variants makes up to n * TRIES attempts to find n distinct ones.
TRIES = 4
WORD = re.compile(r"\w+", re.UNICODE)


class Augmenter:
    """Base class: subclasses set `method`, `param_names` and implement `transform` (one random
    variant) or override `augment`."""

    method: str = ""
    param_names: Tuple[str, ...] = ()
    seedless: bool = False

    def __init__(self, n: int = 1) -> None:
        self.n = check_count(n, "n")

    @property
    def params(self) -> Dict[str, Any]:
        """The settings that made a variant, stored in its provenance."""
        return {name: getattr(self, name) for name in self.param_names}

    def augment(self, text: str, rng: random.Random, n: int) -> List[str]:
        """Up to n distinct variants of a text, none equal to it.

        text (str): the seed text.
        rng (random.Random): the only source of randomness.
        n (int): how many variants to make.
        RETURNS (List[str]): the variants (fewer than n when the text allows no more, e.g. a
            text without letters for a letter-level noise).
        """
        found: List[str] = []
        for _ in range(n * TRIES):
            if len(found) >= n:
                break
            variant = self.transform(text, rng)
            if variant != text and variant not in found and variant.strip():
                found.append(variant)
        return found

    def transform(self, text: str, rng: random.Random) -> str:
        raise NotImplementedError

    def generate(
        self, seeds: Sequence[str], rng: random.Random
    ) -> List[Tuple[str, Dict[str, Any]]]:
        """Seedless augmenters: the texts of a run, each with extra params (e.g. its label)."""
        return []


def derive_rng(*parts: Any) -> random.Random:
    """A random stream fixed by its parts (the run's seed, a step name, a text's key), the
    same in every process and Python version (unlike `hash()`)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def torch_seed(rng: random.Random) -> int:
    """A seed for torch (or a server's `seed`) drawn from a random stream."""
    return rng.getrandbits(31)


def word_spans(text: str) -> List[Tuple[int, int]]:
    """(start, end) of each word (a run of letters, digits or underscores, any script)."""
    return [match.span() for match in WORD.finditer(text)]


def replace_spans(text: str, replacements: Dict[Tuple[int, int], str]) -> str:
    """The text with some (start, end) spans replaced; the rest, spacing included, kept."""
    parts, last = [], 0
    for (start, end), new in sorted(replacements.items()):
        parts.append(text[last:start])
        parts.append(new)
        last = end
    parts.append(text[last:])
    return "".join(parts)


def copy_case(source: str, word: str) -> str:
    """`word` in the case pattern of `source`: "Good" -> "Nice", "GOOD" -> "NICE"."""
    if source.isupper() and len(source) > 1:
        return word.upper()
    if source[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def choose_some(
    items: Sequence[Any], rate: float, rng: random.Random, at_least_one: bool
) -> List[Any]:
    """Each item with probability `rate`; with `at_least_one`, one at random when none was
    drawn (so a short text still changes)."""
    chosen = [item for item in items if rng.random() < rate]
    if not chosen and at_least_one and items and rate > 0:
        chosen = [items[rng.randrange(len(items))]]
    return chosen


def check_rate(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise DistillError(f"{name}: expected a rate between 0 and 1, got {value!r}")
    return float(value)


def check_count(value: Any, name: str, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise DistillError(f"{name}: expected an integer >= {least}, got {value!r}")
    return value


def check_choices(values: Sequence[str], allowed: Sequence[str], name: str) -> List[str]:
    values = [values] if isinstance(values, str) else list(values)
    unknown = [v for v in values if v not in allowed]
    if not values or unknown:
        raise DistillError(f"{name}: {unknown or 'none given'}; choose from {list(allowed)}")
    return values


def check_template(
    template: str, name: str, required: Sequence[str], allowed: Sequence[str]
) -> str:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as err:
        raise DistillError(
            f"{name}: not a valid format string ({err}); write braces as {{{{ }}}}"
        ) from err
    missing = [f for f in required if f not in fields]
    unknown = sorted(fields - set(allowed))
    if missing or unknown:
        raise DistillError(
            f"{name}: must contain {['{' + f + '}' for f in required]} and may contain "
            f"{['{' + f + '}' for f in allowed]}; missing {missing}, unknown {unknown}"
        )
    return template
