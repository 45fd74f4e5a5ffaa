"""Back-translation: a text translated to a pivot language and back comes back reworded.

- `spacy-distill.BackTranslation.v1`: a local pair of seq2seq translation models (any
  `AutoModelForSeq2SeqLM`, e.g. Helsinki-NLP/opus-mt-en-de and opus-mt-de-en). The forward
  model samples `n` pivot translations (the diversity), the backward model translates each back
  greedily.
- `spacy-distill.LLMBackTranslation.v1`: an LLM generator prompted to translate there (sampled)
  and back (greedy, temperature 0).

torch and transformers are imported when a model is loaded.
"""

import random
from typing import Any, Dict, List, Optional

from ..errors import DistillError
from ..registry import registry
from .base import Augmenter, check_template, torch_seed
from .teacher_written import clean_answer, is_echo

DEFAULT_THERE = (
    "Translate the following text into {language}. Answer with the translation only.\n\n"
    "Text: {text}\nTranslation:"
)
# The way back is the same request, into the seeds' language.
DEFAULT_BACK = DEFAULT_THERE


class BackTranslation(Augmenter):
    """Round trips through a local pair of translation models."""

    method = "spacy-distill.BackTranslation.v1"
    param_names = ("forward_model", "backward_model", "temperature", "max_length")

    def __init__(
        self,
        forward: Any,
        backward: Any,
        forward_tokenizer: Any,
        backward_tokenizer: Any,
        n: int = 1,
        temperature: float = 0.8,
        max_length: int = 256,
        forward_model: str = "forward",
        backward_model: str = "backward",
    ) -> None:
        from ..hf.loading import require_transformers

        super().__init__(n)
        self._torch, _ = require_transformers()
        self.forward, self.backward = forward, backward
        self.forward_tokenizer, self.backward_tokenizer = forward_tokenizer, backward_tokenizer
        if temperature <= 0:
            raise DistillError(
                f"temperature: must be > 0 (sampling makes the variants differ), got {temperature!r}"
            )
        self.temperature = float(temperature)
        self.max_length = int(max_length)
        self.forward_model, self.backward_model = forward_model, backward_model

    def _translate(self, model, tokenizer, texts: List[str], n: int, sample: bool) -> List[str]:
        torch = self._torch
        encoded = tokenizer(
            texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length
        )
        encoded = encoded.to(model.device)
        kwargs: Dict[str, Any] = {"max_new_tokens": self.max_length}
        if sample:
            kwargs.update(do_sample=True, temperature=self.temperature, num_return_sequences=n)
        else:
            kwargs.update(do_sample=False, num_beams=1)
        inputs = {key: encoded[key] for key in ("input_ids", "attention_mask") if key in encoded}
        with torch.no_grad():
            out = model.generate(**inputs, **kwargs)
        return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in out]

    def augment(self, text: str, rng: random.Random, n: int) -> List[str]:
        if not text.strip():
            return []
        self._torch.manual_seed(torch_seed(rng))
        pivots = [
            p for p in self._translate(self.forward, self.forward_tokenizer, [text], n, True) if p
        ]
        if not pivots:
            return []
        found: List[str] = []
        for back in self._translate(self.backward, self.backward_tokenizer, pivots, 1, False):
            if back and back != text and back not in found:
                found.append(back)
        return found


class LLMBackTranslation(Augmenter):
    """Round trips through an LLM prompted to translate."""

    method = "spacy-distill.LLMBackTranslation.v1"

    def __init__(
        self,
        generator: Any,
        language: str = "German",
        source_language: str = "English",
        n: int = 1,
        prompt_there: str = DEFAULT_THERE,
        prompt_back: str = DEFAULT_BACK,
    ) -> None:
        """Back-translation by an LLM prompted to translate there and back.

        generator (Any): a `[....generator]` block (HFGenerator.v1 or OpenAIGenerator.v1).
        language (str): the pivot language, by name.
        source_language (str): the seeds' language, by name.
        n (int): variants per seed.
        prompt_there (str): the request, with {text} and {language}.
        prompt_back (str): the request for the way back, with {text} and {language}.
        """
        super().__init__(n)
        self.generator = generator
        self.language = language
        self.source_language = source_language
        self.prompt_there = check_template(
            prompt_there, "prompt_there", ("text", "language"), ("text", "language")
        )
        self.prompt_back = check_template(
            prompt_back, "prompt_back", ("text", "language"), ("text", "language")
        )

    @property
    def params(self) -> Dict[str, Any]:
        return {
            "language": self.language,
            "source_language": self.source_language,
            **self.generator.params,
        }

    def augment(self, text: str, rng: random.Random, n: int) -> List[str]:
        if not text.strip():
            return []
        there = self.generator.generate(
            self.prompt_there.format(text=text, language=self.language), n, torch_seed(rng)
        )
        found: List[str] = []
        # Small LLMs label their answer with the language asked for ("German: ...", "English: ...").
        for pivot in dict.fromkeys(clean_answer(t, labels=(self.language,)) for t in there):
            if not pivot or is_echo(pivot, text):  # not translated: its way back is no new text
                continue
            prompt = self.prompt_back.format(text=pivot, language=self.source_language)
            answer = self.generator.generate(prompt, 1, torch_seed(rng), temperature=0.0)[0]
            back = clean_answer(answer, labels=(self.source_language,))
            if back and not is_echo(back, text) and not is_echo(back, pivot) and back not in found:
                found.append(back)
        return found


@registry.spacy_distill_text_augmenters(BackTranslation.method)
def configure_back_translation(
    forward_model: str,
    backward_model: str,
    n: int = 1,
    temperature: float = 0.8,
    max_length: int = 256,
    device: str = "auto",
    dtype: str = "auto",
    revision: Optional[str] = None,
) -> BackTranslation:
    """Back-translation through two local seq2seq translation models.

    forward_model (str): source -> pivot (a hub name or local folder).
    backward_model (str): pivot -> source.
    n (int): variants per seed (pivot translations sampled).
    temperature (float): sampling temperature of the forward model.
    max_length (int): the most tokens in and out.
    device (str): "cpu", "cuda", "cuda:N" or "auto".
    dtype (str): "auto" (float32 on CPU), "float32", "float16" or "bfloat16".
    revision (Optional[str]): a hub revision (both models).
    RETURNS (BackTranslation): the augmenter.
    """
    from ..hf.loading import load_model_and_tokenizer

    fwd, fwd_tok = load_model_and_tokenizer(
        "AutoModelForSeq2SeqLM", forward_model, revision=revision, dtype=dtype, device=device
    )
    bwd, bwd_tok = load_model_and_tokenizer(
        "AutoModelForSeq2SeqLM", backward_model, revision=revision, dtype=dtype, device=device
    )
    return BackTranslation(
        fwd,
        bwd,
        fwd_tok,
        bwd_tok,
        n,
        temperature,
        max_length,
        str(forward_model),
        str(backward_model),
    )


configure_llm_back_translation = registry.spacy_distill_text_augmenters(LLMBackTranslation.method)(
    LLMBackTranslation
)
