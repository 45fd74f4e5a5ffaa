"""Scoring a fixed set of answers (verbalizers) after many prompts with a causal LM: the
token and likelihood machinery of the HF prompt teacher (`hf_prompt.py`).

`PromptEncoder` gives a prompt's token ids (its text cut until the prompt fits) and an answer's
ids as they follow a prompt. `ContinuationScorer` scores the answers after many prompts.

Prompts are sorted by token length, left-padded into batches of `batch_size` (explicit position
ids, so padding shifts nothing), and scored back in input order. When every verbalizer is one
token, one forward pass per batch reads them all from the next-token log-probabilities at the
last prompt position. Otherwise that pass also keeps the prompt's key/value cache; the cache is
repeated once per multi-token verbalizer and only the verbalizers' tokens run on top of it, so
the shared prompt is never recomputed per answer.

torch is imported by the caller (`require_transformers`) and handed in.
"""

import inspect
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy

from ..errors import DistillError
from ..probabilities import logsumexp

# Rows in one continuation forward pass (prompts x verbalizers): bounds the copies of the
# prefix cache held at once.
CONTINUATION_ROWS = 64


def pad_token_id(tokenizer: Any) -> int:
    """The tokenizer's padding id, else its end-of-text id, else 0 (padding is masked anyway)."""
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    return int(pad_id)


class PromptEncoder:
    """How a prompt becomes token ids: as is, or as the user message of the tokenizer's chat
    template (the answer then starts the assistant message).

    tokenizer: a (fast) Hugging Face tokenizer.
    use_chat_template (Optional[bool]): use the chat template; None: when the tokenizer has one.
    system_prompt (Optional[str]): a system message (chat template only).
    model_name (str): the model's name, for messages.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        use_chat_template: Optional[bool] = None,
        system_prompt: Optional[str] = None,
        model_name: str = "model",
    ) -> None:
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if use_chat_template and not has_chat:
            raise DistillError(
                f"{model_name}: use_chat_template = true, but its tokenizer has no chat template; "
                "set use_chat_template = false"
            )
        self.tokenizer = tokenizer
        self.use_chat_template = has_chat if use_chat_template is None else bool(use_chat_template)
        if system_prompt is not None and not self.use_chat_template:
            raise DistillError("system_prompt needs use_chat_template = true")
        self.system_prompt = system_prompt

    def wrap(self, prompt: str) -> str:
        """The prompt as the model reads it: in the chat template when that is used."""
        if not self.use_chat_template:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def encode(self, prompt: str) -> List[int]:
        """The token ids of a wrapped prompt. A rendered chat template holds its special tokens
        already (as apply_chat_template's own tokenization does); a plain prompt gets the
        tokenizer's (e.g. a BOS token)."""
        ids = self.tokenizer(prompt, add_special_tokens=not self.use_chat_template)["input_ids"]
        return list(ids)

    def continuation_ids(self, anchor: str, continuation: str, name: str) -> List[int]:
        """The ids `continuation` adds after the prompt `anchor`: ids(anchor + continuation)
        minus ids(anchor), so they are the tokens the model sees in context.

        name (str): what the continuation answers, for messages.
        RAISES (DistillError): the continuation merges with the prompt's last token, or adds none.
        """
        before = self.encode(anchor)
        after = self.encode(anchor + continuation)
        if after[: len(before)] != before:
            # The prompt's tokens would differ with and without the answer: no shared cache.
            raise DistillError(
                f"verbalizer {continuation.strip()!r} ({name}) merges with the end of the prompt "
                f"when tokenized (prompt ends {anchor[-20:]!r}, continuation {continuation!r}): "
                "end the template with a non-space character such as 'Answer:' or set "
                "verbalizer_prefix"
            )
        ids = after[len(before) :]
        if not ids:
            raise DistillError(
                f"verbalizer {continuation!r} ({name}) tokenizes to nothing after the prompt: "
                "give a non-empty answer string"
            )
        return ids

    def fit(self, render: Callable[[str], str], text: str, budget: int) -> Tuple[List[int], bool]:
        """The ids of `render(text)`, the text cut (never the rest of the prompt) until they are
        at most `budget`; and whether the text was cut."""
        ids = self.encode(render(text))
        if len(ids) <= budget:
            return ids, False
        text_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        keep = max(0, len(text_ids) - (len(ids) - budget))
        while True:
            cut = self.tokenizer.decode(text_ids[:keep], skip_special_tokens=True)
            ids = self.encode(render(cut))
            if len(ids) <= budget or keep == 0:
                return ids, True
            keep = max(0, keep - max(1, len(ids) - budget))


class ContinuationScorer:
    """log p(class | prompt): the log-sum-exp, over a class's verbalizers, of the log-probability
    of the verbalizer's tokens following the prompt.

    torch: the torch module.
    model: a causal LM in eval mode.
    class_ids (Sequence[Sequence[List[int]]]): per class, each verbalizer's token ids as they
        follow a prompt.
    pad_id (int): the id that pads prompts (masked).
    batch_size (int): prompts per forward pass.
    length_normalize (bool): mean log-probability per token instead of the sum.
    """

    def __init__(
        self,
        torch: Any,
        model: Any,
        class_ids: Sequence[Sequence[List[int]]],
        *,
        pad_id: int,
        batch_size: int,
        length_normalize: bool = False,
    ) -> None:
        self._torch = torch
        self.model = model
        self.class_ids = [list(ids) for ids in class_ids]
        # (class, verbalizer ids), flattened: one column per verbalizer.
        self.flat = [
            (c, ids) for c, ids_of_class in enumerate(self.class_ids) for ids in ids_of_class
        ]
        self.single_token = all(len(ids) == 1 for _, ids in self.flat)
        self.max_continuation = max(len(ids) for _, ids in self.flat)
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.length_normalize = length_normalize
        self._device = next(model.parameters()).device
        self._keep_kwarg = _logits_to_keep_kwarg(model)

    def class_loglik(self, prompts: List[List[int]]) -> numpy.ndarray:
        """log p(class | prompt) for every prompt, unnormalised over classes: (n, n_classes)."""
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        result = numpy.zeros((len(prompts), len(self.class_ids)), dtype="float64")
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            result[index] = self._score_batch([prompts[i] for i in index])
        return result

    def _score_batch(self, prompts: List[List[int]]) -> numpy.ndarray:
        torch = self._torch
        n_prompts = len(prompts)
        width = max(len(ids) for ids in prompts)
        input_ids = torch.full((n_prompts, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n_prompts, width), dtype=torch.long)
        for row, ids in enumerate(prompts):  # left padding: every prompt ends at the last column
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        lengths = mask.sum(dim=1)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        input_ids, mask, positions = (t.to(self._device) for t in (input_ids, mask, positions))
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=not self.single_token,
                **self._keep_kwarg,
            )
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
            first_ids = torch.tensor([ids[0] for _, ids in self.flat], device=self._device)
            # (prompts, verbalizers), summed in float64 on the CPU (MPS has no float64)
            verb_scores = first[:, first_ids].cpu().double()
            longer = [j for j, (_, ids) in enumerate(self.flat) if len(ids) > 1]
            per_chunk = max(1, CONTINUATION_ROWS // n_prompts)
            for start in range(0, len(longer), per_chunk):
                chunk = longer[start : start + per_chunk]
                rest = self._score_continuations(out.past_key_values, mask, lengths, chunk)
                verb_scores[:, chunk] += rest.cpu().double()
        if self.length_normalize:
            n_tokens = torch.tensor([len(ids) for _, ids in self.flat], dtype=torch.float64)
            verb_scores = verb_scores / n_tokens
        verb_scores = verb_scores.numpy()
        owners = numpy.asarray([c for c, _ in self.flat])
        return numpy.stack(
            [logsumexp(verb_scores[:, owners == c], axis=1) for c in range(len(self.class_ids))],
            axis=1,
        )

    def _score_continuations(self, cache, mask, lengths, chunk: List[int]):
        """Log-probability of tokens 2.. of the verbalizers in `chunk`, reading the prompt from
        its cache (repeated once per verbalizer) instead of running it again."""
        torch = self._torch
        n_prompts, k = mask.shape[0], len(chunk)
        tails = [self.flat[j][1] for j in chunk]
        steps = max(len(ids) for ids in tails) - 1
        inputs = torch.full((k, steps), self.pad_id, dtype=torch.long)
        targets = torch.zeros((k, steps), dtype=torch.long)
        valid = torch.zeros((k, steps), dtype=torch.long)
        for q, ids in enumerate(tails):
            inputs[q, : len(ids) - 1] = torch.tensor(ids[:-1])
            targets[q, : len(ids) - 1] = torch.tensor(ids[1:])
            valid[q, : len(ids) - 1] = 1
        # Row b * k + q: prompt b, verbalizer q.
        inputs, targets, valid = (
            t.repeat(n_prompts, 1).to(self._device) for t in (inputs, targets, valid)
        )
        attention = torch.cat([mask.repeat_interleave(k, dim=0), valid], dim=1)
        positions = lengths.to(self._device).repeat_interleave(k)[:, None] + torch.arange(
            steps, device=self._device
        )
        out = self.model(
            input_ids=inputs,
            attention_mask=attention,
            position_ids=positions,
            past_key_values=_repeat_cache(cache, k),
            use_cache=True,
        )
        logp = torch.log_softmax(out.logits.float(), dim=-1)
        token_logp = logp.gather(-1, targets[..., None])[..., 0] * valid
        return token_logp.sum(dim=1).reshape(n_prompts, k)


def _repeat_cache(cache, k: int):
    """A new cache with each prompt's keys and values repeated k times (the old one is kept:
    a forward pass appends to the cache it is given)."""
    if hasattr(cache, "to_legacy_cache"):
        legacy = cache.to_legacy_cache()
        repeated = tuple(tuple(t.repeat_interleave(k, dim=0) for t in layer) for layer in legacy)
        return type(cache).from_legacy_cache(repeated)
    return tuple(tuple(t.repeat_interleave(k, dim=0) for t in layer) for layer in cache)


def _logits_to_keep_kwarg(model) -> Dict[str, int]:
    """Ask the LM head for the last position only (it is a large matmul over the vocabulary)."""
    params = inspect.signature(model.forward).parameters
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return {name: 1}
    return {}
