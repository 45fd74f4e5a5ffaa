"""Masked-LM replacement (Tang et al., 2019): words are masked, with probability `rate` each
(at least one per variant), and a masked language model fills each mask with one of its
`top_k` most likely whole words, sampled in proportion to their probability (the original word
excluded). All masks of a variant are filled from one forward pass. The pieces of a contraction
("don't", "ai n't", "it's") are never masked: filling the "t" of "n't" with a word gives "n'and".
torch and transformers are imported when the model is loaded."""

import random
from typing import Any, Optional

import numpy

from ..errors import DistillError
from ..registry import registry
from .base import (
    Augmenter,
    check_count,
    check_rate,
    choose_some,
    copy_case,
    replace_spans,
    word_spans,
)

APOSTROPHES = ("'", "\u2019")


class MaskedLMReplacement(Augmenter):
    """Fill-mask replacement with a local masked LM (BERT, RoBERTa, ...)."""

    method = "spacy-distill.MaskedLM.v1"
    param_names = ("model", "rate", "top_k")

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        n: int = 1,
        rate: float = 0.15,
        top_k: int = 10,
        max_length: int = 256,
        model_name: str = "model",
    ) -> None:
        from ..hf.loading import require_transformers

        super().__init__(n)
        self._torch, _ = require_transformers()
        if getattr(tokenizer, "mask_token", None) is None:
            raise DistillError(
                f"{model_name}: the tokenizer has no mask token; use a masked LM (BERT, RoBERTa...)"
            )
        self.hf_model, self.tokenizer = model, tokenizer
        self.model = model_name
        self.rate = check_rate(rate, "rate")
        self.top_k = check_count(top_k, "top_k", least=1)
        self.max_length = int(max_length)
        special = set(tokenizer.all_special_ids)
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        words = [w.strip() for w in tokenizer.batch_decode([[i] for i in range(len(tokenizer))])]
        # Whole words only: no special tokens, no "##" continuation pieces, letters only.
        self.word_of = {
            i: w
            for i, (t, w) in enumerate(zip(tokens, words))
            if i not in special and w.isalpha() and not (t or "").startswith("##")
        }
        self.allowed = numpy.zeros(len(tokenizer), dtype=bool)
        self.allowed[list(self.word_of)] = True

    def transform(self, text: str, rng: random.Random) -> str:
        torch = self._torch
        spans = [
            s
            for s in word_spans(text)
            if text[s[0] : s[1]].isalpha() and not _in_contraction(text, s)
        ]
        chosen = sorted(choose_some(spans, self.rate, rng, at_least_one=True))
        if not chosen:
            return text
        mask = self.tokenizer.mask_token
        masked = replace_spans(text, {span: mask for span in chosen})
        encoded = self.tokenizer(
            masked, return_tensors="pt", truncation=True, max_length=self.max_length
        )
        with torch.no_grad():
            logits = self.hf_model(**encoded.to(self.hf_model.device)).logits[0]
        positions = (
            (encoded["input_ids"][0] == self.tokenizer.mask_token_id).nonzero().flatten().tolist()
        )
        replacements = {}
        for span, position in zip(
            chosen, positions
        ):  # masks cut off by truncation stay as they were
            original = text[span[0] : span[1]]
            scores = logits[position].float().cpu().numpy().astype("float64")
            scores[~self.allowed] = -numpy.inf
            order = [
                i
                for i in numpy.argsort(-scores, kind="stable")[: self.top_k + 1]
                if numpy.isfinite(scores[i]) and self.word_of[i].casefold() != original.casefold()
            ][: self.top_k]
            if not order:
                continue
            probs = numpy.exp(scores[order] - scores[order].max())
            pick = order[_weighted_index(probs / probs.sum(), rng)]
            replacements[span] = copy_case(original, self.word_of[int(pick)])
        return replace_spans(text, replacements)


def _in_contraction(text: str, span) -> bool:
    """Whether a word touches an apostrophe ("don" and "t" in "don't")."""
    start, end = span
    return (start > 0 and text[start - 1] in APOSTROPHES) or (
        end < len(text) and text[end] in APOSTROPHES
    )


def _weighted_index(probs: numpy.ndarray, rng: random.Random) -> int:
    """An index drawn with these probabilities from a `random.Random` (so the run's seed holds)."""
    draw, total = rng.random(), 0.0
    for i, p in enumerate(probs):
        total += float(p)
        if draw < total:
            return i
    return len(probs) - 1


@registry.spacy_distill_text_augmenters(MaskedLMReplacement.method)
def configure_masked_lm(
    model: str,
    n: int = 1,
    rate: float = 0.15,
    top_k: int = 10,
    max_length: int = 256,
    device: str = "auto",
    revision: Optional[str] = None,
) -> MaskedLMReplacement:
    """Words replaced by a masked LM's fill-mask guesses.

    model (str): an `AutoModelForMaskedLM` (hub name or local folder), e.g. bert-base-uncased.
    n (int): variants per seed.
    rate (float): the probability that a word is masked.
    top_k (int): the guesses to sample from.
    max_length (int): the most tokens per text (masks beyond are left as they were).
    device (str): "cpu", "cuda", "cuda:N" or "auto".
    revision (Optional[str]): a hub revision.
    RETURNS (MaskedLMReplacement): the augmenter.
    """
    from ..hf.loading import load_model_and_tokenizer

    mlm, tokenizer = load_model_and_tokenizer(
        "AutoModelForMaskedLM", model, revision=revision, device=device
    )
    return MaskedLMReplacement(mlm, tokenizer, n, rate, top_k, max_length, model_name=str(model))
