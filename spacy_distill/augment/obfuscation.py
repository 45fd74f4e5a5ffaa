"""The spellings spammers and abusers use to slip past filters: leetspeak ("fr33 c@sh"), letters
split by spaces or punctuation ("s p a m", "f.r.e.e"), homoglyphs (Cyrillic "а" for Latin "a")
and repeated letters ("freeeee"). Each acts on every eligible unit with probability `rate`."""

import random
from typing import Dict, List, Sequence

from ..errors import DistillError
from ..registry import registry
from .base import Augmenter, check_count, check_rate, choose_some, word_spans

# The documented leetspeak table: a letter (either case) becomes one of its forms, uniformly.
LEET: Dict[str, str] = {
    "a": "4@",
    "b": "8",
    "e": "3",
    "g": "9",
    "i": "1!",
    "l": "1|",
    "o": "0",
    "s": "5$",
    "t": "7+",
    "z": "2",
}
# Latin letters and the Cyrillic or Greek letters that look the same in most fonts.
HOMOGLYPHS: Dict[str, str] = {
    "a": "\u0430",
    "c": "\u0441",
    "e": "\u0435",
    "i": "\u0456",
    "j": "\u0458",
    "o": "\u043e",
    "p": "\u0440",
    "s": "\u0455",
    "x": "\u0445",
    "y": "\u0443",
    "A": "\u0410",
    "B": "\u0412",
    "C": "\u0421",
    "E": "\u0415",
    "H": "\u041d",
    "I": "\u0406",
    "K": "\u041a",
    "M": "\u041c",
    "O": "\u041e",
    "P": "\u0420",
    "T": "\u0422",
    "X": "\u0425",
    "Y": "\u03a5",
    "Z": "\u0396",
    "N": "\u039d",
}
SEPARATORS = (" ", ".", "-", "_", "*")


class Leetspeak(Augmenter):
    """Each letter in the LEET table becomes one of its forms with probability `rate`."""

    method = "spacy-distill.Leetspeak.v1"
    param_names = ("rate",)

    def __init__(self, n: int = 1, rate: float = 0.5) -> None:
        super().__init__(n)
        self.rate = check_rate(rate, "rate")

    def transform(self, text: str, rng: random.Random) -> str:
        out = []
        for char in text:
            forms = LEET.get(char.lower())
            if forms and rng.random() < self.rate:
                char = forms[rng.randrange(len(forms))]
            out.append(char)
        return "".join(out)


class Homoglyphs(Augmenter):
    """Each Latin letter in the HOMOGLYPHS table becomes its look-alike with probability `rate`."""

    method = "spacy-distill.Homoglyphs.v1"
    param_names = ("rate",)

    def __init__(self, n: int = 1, rate: float = 0.3) -> None:
        super().__init__(n)
        self.rate = check_rate(rate, "rate")

    def transform(self, text: str, rng: random.Random) -> str:
        return "".join(
            HOMOGLYPHS[c] if c in HOMOGLYPHS and rng.random() < self.rate else c for c in text
        )


class SplitLetters(Augmenter):
    """Each word of two or more characters, with probability `rate` (at least one word per
    variant), has its letters split by one of `separators`: "s p a m", "f.r.e.e"."""

    method = "spacy-distill.SplitLetters.v1"
    param_names = ("rate", "separators")

    def __init__(
        self, n: int = 1, rate: float = 0.2, separators: Sequence[str] = SEPARATORS
    ) -> None:
        super().__init__(n)
        self.rate = check_rate(rate, "rate")
        self.separators = [separators] if isinstance(separators, str) else list(separators)
        if not self.separators or not all(isinstance(s, str) and s for s in self.separators):
            raise DistillError(f"separators: expected non-empty strings, got {separators!r}")

    def transform(self, text: str, rng: random.Random) -> str:
        spans = [(s, e) for s, e in word_spans(text) if e - s >= 2]
        out, last = [], 0
        for start, end in sorted(choose_some(spans, self.rate, rng, at_least_one=True)):
            separator = self.separators[rng.randrange(len(self.separators))]
            out.extend((text[last:start], separator.join(text[start:end])))
            last = end
        out.append(text[last:])
        return "".join(out)


class RepeatedLetters(Augmenter):
    """Each letter, with probability `rate`, is repeated 1 to `max_repeat` more times."""

    method = "spacy-distill.RepeatedLetters.v1"
    param_names = ("rate", "max_repeat")

    def __init__(self, n: int = 1, rate: float = 0.05, max_repeat: int = 3) -> None:
        super().__init__(n)
        self.rate = check_rate(rate, "rate")
        self.max_repeat = check_count(max_repeat, "max_repeat", least=1)

    def transform(self, text: str, rng: random.Random) -> str:
        out: List[str] = []
        for char in text:
            out.append(char)
            if char.isalpha() and rng.random() < self.rate:
                out.append(char * rng.randint(1, self.max_repeat))
        return "".join(out)


@registry.spacy_distill_text_augmenters(Leetspeak.method)
def configure_leetspeak(n: int = 1, rate: float = 0.5) -> Leetspeak:
    """Leetspeak: a→4/@, b→8, e→3, g→9, i→1/!, l→1/|, o→0, s→5/$, t→7/+, z→2.

    n (int): variants per seed.
    rate (float): the probability that a letter of the table is replaced.
    RETURNS (Leetspeak): the augmenter.
    """
    return Leetspeak(n, rate)


@registry.spacy_distill_text_augmenters(Homoglyphs.method)
def configure_homoglyphs(n: int = 1, rate: float = 0.3) -> Homoglyphs:
    """Latin letters replaced by Cyrillic or Greek look-alikes.

    n (int): variants per seed.
    rate (float): the probability that a letter with a look-alike is replaced.
    RETURNS (Homoglyphs): the augmenter.
    """
    return Homoglyphs(n, rate)


@registry.spacy_distill_text_augmenters(SplitLetters.method)
def configure_split_letters(
    n: int = 1, rate: float = 0.2, separators: List[str] = list(SEPARATORS)
) -> SplitLetters:
    """Letters of words split by spaces or punctuation.

    n (int): variants per seed.
    rate (float): the probability that a word is split.
    separators (List[str]): what goes between letters (one per word, chosen uniformly).
    RETURNS (SplitLetters): the augmenter.
    """
    return SplitLetters(n, rate, separators)


@registry.spacy_distill_text_augmenters(RepeatedLetters.method)
def configure_repeated_letters(
    n: int = 1, rate: float = 0.05, max_repeat: int = 3
) -> RepeatedLetters:
    """Letters repeated ("freeee").

    n (int): variants per seed.
    rate (float): the probability that a letter is repeated.
    max_repeat (int): the most extra copies.
    RETURNS (RepeatedLetters): the augmenter.
    """
    return RepeatedLetters(n, rate, max_repeat)
