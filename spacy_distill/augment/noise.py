"""Noise: keyboard typos, character insert/delete/swap/substitute, word dropout and swap, case
changes. Each acts on every eligible unit (a key, a character, a word) with probability `rate`,
so the share of units changed is `rate` on average (what the tests check on long texts)."""

import random
from typing import Dict, List, Sequence

from ..registry import registry
from .base import Augmenter, check_choices, check_rate, choose_some, word_spans

QWERTY_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> Dict[str, str]:
    """Keys next to each key on a QWERTY keyboard (left, right, and the rows above and below,
    which are offset by about half a key)."""
    where = {key: (r, c) for r, row in enumerate(QWERTY_ROWS) for c, key in enumerate(row)}
    neighbours: Dict[str, str] = {}
    for key, (r, c) in where.items():
        near = []
        for dr, dcs in ((0, (-1, 1)), (-1, (0, 1)), (1, (-1, 0))):
            for dc in dcs:
                rr, cc = r + dr, c + dc
                if 0 <= rr < len(QWERTY_ROWS) and 0 <= cc < len(QWERTY_ROWS[rr]):
                    near.append(QWERTY_ROWS[rr][cc])
        neighbours[key] = "".join(near)
    return neighbours


KEYBOARD_NEIGHBOURS = _keyboard_neighbours()
CHAR_OPS = ("insert", "delete", "swap", "substitute")
WORD_OPS = ("dropout", "swap")
CASE_MODES = ("upper", "lower", "title", "invert")


class KeyboardTypos(Augmenter):
    """Each letter or digit of a QWERTY key becomes a neighbouring key with probability `rate`
    (the case is kept); other characters (any other script, emoji) are left alone."""

    method = "spacy-distill.KeyboardTypos.v1"
    param_names = ("rate",)

    def __init__(self, n: int = 1, rate: float = 0.05) -> None:
        super().__init__(n)
        self.rate = check_rate(rate, "rate")

    def transform(self, text: str, rng: random.Random) -> str:
        out = []
        for char in text:
            near = KEYBOARD_NEIGHBOURS.get(char.lower())
            if near and rng.random() < self.rate:
                new = near[rng.randrange(len(near))]
                char = new.upper() if char.isupper() else new
            out.append(char)
        return "".join(out)


class CharNoise(Augmenter):
    """Each letter or digit is, with probability `rate`, deleted, swapped with the next
    character, followed by an inserted one or replaced by one (one of `ops`, uniformly). New
    characters come from the text's own letters, so a Greek text gets Greek noise."""

    method = "spacy-distill.CharNoise.v1"
    param_names = ("rate", "ops")

    def __init__(self, n: int = 1, rate: float = 0.05, ops: Sequence[str] = CHAR_OPS) -> None:
        super().__init__(n)
        self.rate = check_rate(rate, "rate")
        self.ops = check_choices(ops, CHAR_OPS, "ops")

    def transform(self, text: str, rng: random.Random) -> str:
        alphabet = sorted({c.lower() for c in text if c.isalpha()}) or sorted(
            {c for c in text if c.isalnum()}
        )
        chars: List[str] = list(text)
        out: List[str] = []
        i = 0
        while i < len(chars):
            char = chars[i]
            if not char.isalnum() or rng.random() >= self.rate:
                out.append(char)
                i += 1
                continue
            op = self.ops[rng.randrange(len(self.ops))]
            if op == "delete":
                pass
            elif op == "insert":
                out.extend((char, alphabet[rng.randrange(len(alphabet))]))
            elif op == "substitute":
                out.append(alphabet[rng.randrange(len(alphabet))])
            elif i + 1 < len(chars):  # swap with the next character
                out.extend((chars[i + 1], char))
                i += 1
            else:
                out.append(char)
            i += 1
        return "".join(out)


class WordNoise(Augmenter):
    """Each word is dropped with probability `dropout` and swapped with the next word with
    probability `swap`; a text never loses all its words."""

    method = "spacy-distill.WordNoise.v1"
    param_names = ("dropout", "swap")

    def __init__(self, n: int = 1, dropout: float = 0.1, swap: float = 0.1) -> None:
        super().__init__(n)
        self.dropout = check_rate(dropout, "dropout")
        self.swap = check_rate(swap, "swap")

    def transform(self, text: str, rng: random.Random) -> str:
        words = text.split()
        if not words:
            return text
        kept = [w for w in words if rng.random() >= self.dropout] or [
            words[rng.randrange(len(words))]
        ]
        i = 0
        while i + 1 < len(kept):
            if rng.random() < self.swap:
                kept[i], kept[i + 1] = kept[i + 1], kept[i]
                i += 1  # a swapped word is not swapped again
            i += 1
        return " ".join(kept)


class CaseNoise(Augmenter):
    """Each word, with probability `rate`, is upper-cased, lower-cased, title-cased or has its
    letters' case inverted (one of `modes`, uniformly)."""

    method = "spacy-distill.CaseNoise.v1"
    param_names = ("rate", "modes")

    def __init__(self, n: int = 1, rate: float = 0.2, modes: Sequence[str] = CASE_MODES) -> None:
        super().__init__(n)
        self.rate = check_rate(rate, "rate")
        self.modes = check_choices(modes, CASE_MODES, "modes")

    def transform(self, text: str, rng: random.Random) -> str:
        spans = [s for s in word_spans(text) if any(c.isalpha() for c in text[s[0] : s[1]])]
        out = list(text)
        for start, end in choose_some(spans, self.rate, rng, at_least_one=False):
            word = text[start:end]
            mode = self.modes[rng.randrange(len(self.modes))]
            new = {
                "upper": word.upper,
                "lower": word.lower,
                "title": word.title,
                "invert": word.swapcase,
            }[mode]()
            if len(new) == len(word):  # "ß".upper() is "SS": keep the offsets valid
                out[start:end] = list(new)
        return "".join(out)


@registry.spacy_distill_text_augmenters(KeyboardTypos.method)
def configure_keyboard_typos(n: int = 1, rate: float = 0.05) -> KeyboardTypos:
    """Keyboard-adjacent typos.

    n (int): variants per seed.
    rate (float): the probability that a key is mistyped.
    RETURNS (KeyboardTypos): the augmenter.
    """
    return KeyboardTypos(n, rate)


@registry.spacy_distill_text_augmenters(CharNoise.method)
def configure_char_noise(
    n: int = 1, rate: float = 0.05, ops: List[str] = list(CHAR_OPS)
) -> CharNoise:
    """Character insertions, deletions, swaps and substitutions.

    n (int): variants per seed.
    rate (float): the probability that a letter or digit is changed.
    ops (List[str]): among "insert", "delete", "swap", "substitute".
    RETURNS (CharNoise): the augmenter.
    """
    return CharNoise(n, rate, ops)


@registry.spacy_distill_text_augmenters(WordNoise.method)
def configure_word_noise(n: int = 1, dropout: float = 0.1, swap: float = 0.1) -> WordNoise:
    """Word dropout and swaps of neighbouring words.

    n (int): variants per seed.
    dropout (float): the probability that a word is dropped.
    swap (float): the probability that a word changes place with the next.
    RETURNS (WordNoise): the augmenter.
    """
    return WordNoise(n, dropout, swap)


@registry.spacy_distill_text_augmenters(CaseNoise.method)
def configure_case_noise(
    n: int = 1, rate: float = 0.2, modes: List[str] = list(CASE_MODES)
) -> CaseNoise:
    """Case changes per word.

    n (int): variants per seed.
    rate (float): the probability that a word's case changes.
    modes (List[str]): among "upper", "lower", "title", "invert".
    RETURNS (CaseNoise): the augmenter.
    """
    return CaseNoise(n, rate, modes)
