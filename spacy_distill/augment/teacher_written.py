"""Texts written by an LLM (local or behind a server; see `generation.py`):

- `spacy-distill.Paraphrase.v1`: each seed rewritten `n` times by a prompt (paraphrase by
  default; any rewrite: "make it more formal", "as a tweet"...);
- `spacy-distill.LabelExamples.v1`: `n` new texts per label, written from the label's
  description (optionally shown a few seed texts for style). It is seedless: its texts have no
  parent, and `params.label` says which label they were asked for; the teacher still labels
  them, since the LLM may well miss.

Answers are cleaned (first non-empty line, wrapping quotes and a leading "Paraphrase:" style
prefix removed); empty answers, echoes of the seed and duplicates are dropped. An echo is an
answer with the seed's words: small LLMs often hand a seed back with only its case and spacing
changed ("the film is routine ." -> "The film is routine."), which is no new text.
"""

import random
import re
from typing import Any, Dict, List, Sequence, Tuple

from ..errors import DistillError
from ..registry import registry
from .base import Augmenter, check_count, check_template, torch_seed

DEFAULT_PARAPHRASE = (
    "Rewrite the following text in other words. Keep its meaning, tone and language. "
    "Answer with the rewritten text only.\n\nText: {text}\nRewritten text:"
)
DEFAULT_LABEL_PROMPT = (
    'Write one new, realistic text of the category "{label}": {description}\n'
    "{examples}Answer with the text only.\nText:"
)
EXAMPLES_HEADER = "Examples of texts (of any category):\n"
PREFIX = re.compile(
    r"^\s*(rewritten text|rewritten|paraphrase|text|answer|translation)\s*:\s*", re.IGNORECASE
)
QUOTES = ('"', "'", "\u201c", "\u201d", "`")
NOT_A_WORD = re.compile(r"[\W_]+", re.UNICODE)


def clean_answer(answer: str, one_line: bool = True, labels: Sequence[str] = ()) -> str:
    """The text in a generated answer: the first non-empty line (when `one_line`), without a
    leading "Rewritten text:" style prefix or wrapping quotes.

    answer (str): the generated answer.
    one_line (bool): keep only the first non-empty line.
    labels (Sequence[str]): more prefixes to remove when followed by a colon, e.g. the
        language a translation was asked in ("English: ...").
    RETURNS (str): the cleaned text ("" when nothing is left).
    """
    text = answer.strip()
    if one_line:
        text = next((line.strip() for line in text.splitlines() if line.strip()), "")
    extra = None
    if labels:
        names = "|".join(re.escape(label) for label in labels if label)
        extra = re.compile(rf"^\s*(in\s+)?({names})\s*:\s*", re.IGNORECASE) if names else None
    for _ in range(2):  # the prefix may sit inside the quotes or outside them
        text = PREFIX.sub("", text).strip()
        if extra is not None:
            text = extra.sub("", text).strip()
        if len(text) >= 2 and text[0] in QUOTES and text[-1] in QUOTES:
            text = text[1:-1].strip()
    return text


def is_echo(answer: str, text: str) -> bool:
    """Whether an answer repeats the text: the same words, case, spacing and punctuation aside."""
    return NOT_A_WORD.sub("", answer.casefold()) == NOT_A_WORD.sub("", text.casefold())


class Paraphrase(Augmenter):
    """Asks a generator to rewrite each seed; one call samples n answers."""

    method = "spacy-distill.Paraphrase.v1"

    def __init__(
        self,
        generator,
        n: int = 1,
        prompt: str = DEFAULT_PARAPHRASE,
        one_line: bool = True,
        attempts: int = 2,
    ) -> None:
        """Seeds rewritten by an LLM.

        generator (Any): a `[....generator]` block: spacy-distill.HFGenerator.v1 or OpenAIGenerator.v1.
        n (int): variants per seed.
        prompt (str): the request, with {text}.
        one_line (bool): keep the first non-empty line of each answer.
        attempts (int): calls per seed at most (later ones replace dropped answers).
        """
        super().__init__(n)
        self.generator = generator
        self.prompt = check_template(prompt, "prompt", ("text",), ("text",))
        self.one_line = one_line
        self.attempts = check_count(attempts, "attempts", least=1)

    @property
    def params(self) -> Dict[str, Any]:
        return {"prompt": self.prompt, **self.generator.params}

    def augment(self, text: str, rng: random.Random, n: int) -> List[str]:
        if not text.strip():
            return []
        found: List[str] = []
        for _ in range(self.attempts):  # a second call fills in for dropped answers
            missing = n - len(found)
            if missing <= 0:
                break
            for answer in self.generator.generate(
                self.prompt.format(text=text), missing, torch_seed(rng)
            ):
                cleaned = clean_answer(answer, self.one_line)
                if cleaned and not is_echo(cleaned, text) and cleaned not in found:
                    found.append(cleaned)
        return found[:n]


class LabelExamples(Augmenter):
    """Asks a generator for new texts of each label, from the label's description."""

    method = "spacy-distill.LabelExamples.v1"
    seedless = True

    def __init__(
        self,
        generator,
        descriptions: Dict[str, str],
        n: int = 1,
        prompt: str = DEFAULT_LABEL_PROMPT,
        shots: int = 0,
        one_line: bool = True,
        attempts: int = 2,
    ) -> None:
        """New texts written by an LLM for each label, from its description.

        generator (Any): a `[....generator]` block.
        descriptions (Dict[str, str]): label -> what its texts are about.
        n (int): texts per label.
        prompt (str): the request, with {label} and optionally {description} and {examples}.
        shots (int): seed texts shown as examples of style (0: none).
        one_line (bool): keep the first non-empty line of each answer.
        attempts (int): calls per label at most.
        """
        super().__init__(n)
        if not descriptions:
            raise DistillError("descriptions: give at least one label and its description")
        self.generator = generator
        self.descriptions = dict(descriptions)
        self.prompt = check_template(
            prompt, "prompt", ("label",), ("label", "description", "examples")
        )
        self.shots = check_count(shots, "shots")
        self.one_line = one_line
        self.attempts = check_count(attempts, "attempts", least=1)

    @property
    def params(self) -> Dict[str, Any]:
        return {"prompt": self.prompt, "shots": self.shots, **self.generator.params}

    def generate(
        self, seeds: Sequence[str], rng: random.Random
    ) -> List[Tuple[str, Dict[str, Any]]]:
        made: List[Tuple[str, Dict[str, Any]]] = []
        for label, description in self.descriptions.items():
            found: List[str] = []
            for _ in range(self.attempts):
                missing = self.n - len(found)
                if missing <= 0:
                    break
                shots = rng.sample(list(seeds), min(self.shots, len(seeds))) if self.shots else []
                examples = (EXAMPLES_HEADER + "".join(f"- {s}\n" for s in shots)) if shots else ""
                prompt = self.prompt.format(label=label, description=description, examples=examples)
                for answer in self.generator.generate(prompt, missing, torch_seed(rng)):
                    cleaned = clean_answer(answer, self.one_line)
                    if cleaned and cleaned not in found and cleaned not in shots:
                        found.append(cleaned)
            made.extend((text, {"label": label}) for text in found[: self.n])
        return made


configure_paraphrase = registry.spacy_distill_text_augmenters(Paraphrase.method)(Paraphrase)


configure_label_examples = registry.spacy_distill_text_augmenters(LabelExamples.method)(
    LabelExamples
)
