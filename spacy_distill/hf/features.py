"""Hidden states of Hugging Face models: `hf_hidden_states` reads them for texts, and the
`HFHiddenStates` mixin gives them (and the tokenizer) to any class that holds a model.

`hf_hidden_states` runs a model with `output_hidden_states=True` on raw texts (no prompt: the
states describe the text itself), selects a layer (or the mean of the last k), pools one vector
per text and aligns the pieces to spaCy tokens by character offsets (see `hidden.alignment`).
torch is imported where it is used.
"""

from typing import Any, Dict, List, Optional, Sequence

import numpy

from ..errors import DistillError
from ..hidden.alignment import (
    HiddenStates,
    align_to_tokens,
    check_level,
    pool_pieces,
    select_layer,
    token_spans,
)
from ..hidden.extract import resolve_hidden_spec
from .loading import require_transformers


def hf_hidden_states(
    module: Any,
    tokenizer: Any,
    texts: Sequence[str],
    docs: Optional[Sequence[Any]],
    *,
    level: str,
    layer: Optional[int],
    last_k: Optional[int],
    pooling: str,
    max_length: int,
    batch_size: int,
    pad_token_id: int,
    model_name: str = "model",
) -> List[HiddenStates]:
    """Hidden states of a transformers model for texts.

    module: the model (or its encoder) to call with input_ids, attention_mask and
        output_hidden_states=True.
    tokenizer: its tokenizer (a fast one for token-level states: they need character offsets).
    texts (Sequence[str]): the texts.
    docs (Optional[Sequence[Doc]]): spaCy docs of the texts, whose tokens the token-level
        vectors are aligned to (needed unless level is "doc").
    level (str): "doc", "token" or "both".
    layer (Optional[int]): the hidden state (0: embeddings, -1: last layer).
    last_k (Optional[int]): average the last k hidden states instead.
    pooling (str): "mean", "cls" or "last" for the doc-level vector.
    max_length (int): pieces per text; longer texts are truncated (tokens past the cut get mask 0).
    batch_size (int): texts per forward pass.
    pad_token_id (int): the id to pad with (masked out).
    model_name (str): the model's name, for errors.
    RETURNS (List[HiddenStates]): one per text, in order.
    """
    torch, _ = require_transformers()
    check_level(level)
    texts = list(texts)
    want_tokens = level in ("token", "both")
    if want_tokens:
        if docs is None or len(docs) != len(texts):
            raise DistillError("token-level hidden states need one spaCy doc per text")
        if not getattr(tokenizer, "is_fast", False):
            raise DistillError(
                f"{model_name}: token-level hidden states need a fast tokenizer (character "
                "offsets); this one is slow. Use --hidden doc, or a model with tokenizer.json"
            )
    if not texts:
        return []
    encoded = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=want_tokens,
        verbose=False,
    )
    ids = [list(row) for row in encoded["input_ids"]]
    offsets = encoded["offset_mapping"] if want_tokens else [None] * len(texts)
    full = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
    empty = next((i for i, row in enumerate(ids) if not row), None)
    if empty is not None:
        raise DistillError(
            f"text {empty} ({texts[empty]!r}) has no tokens for {model_name}'s tokenizer; remove "
            "empty texts"
        )
    device = next(module.parameters()).device
    order = numpy.argsort(-numpy.asarray([len(row) for row in ids]), kind="stable")
    results: List[Optional[HiddenStates]] = [None] * len(texts)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            index = order[start : start + batch_size]
            length = max(len(ids[i]) for i in index)
            input_ids = torch.full((len(index), length), int(pad_token_id), dtype=torch.long)
            mask = torch.zeros((len(index), length), dtype=torch.long)
            for row, i in enumerate(index):
                input_ids[row, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
                mask[row, : len(ids[i])] = 1
            output = module(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                output_hidden_states=True,
            )
            hidden_states = getattr(output, "hidden_states", None)
            if hidden_states is None:
                hidden_states = getattr(output, "encoder_hidden_states", None)
            if hidden_states is None:
                raise DistillError(f"{model_name}: the model returned no hidden states")
            states = select_layer(hidden_states, layer, last_k).float().cpu().numpy()
            for row, i in enumerate(index):
                real = states[row, : len(ids[i])]
                result = HiddenStates(n_pieces=len(ids[i]), truncated=len(full[i]) > len(ids[i]))
                if level in ("doc", "both"):
                    result.doc = pool_pieces(real, pooling)
                if want_tokens:
                    result.tokens, result.token_mask = align_to_tokens(
                        texts[i], token_spans(docs[i]), offsets[i], real
                    )
                results[i] = result
    return results  # type: ignore[return-value]


def model_width(config: Any) -> int:
    """The width of a transformers model's hidden states, from its config (0 if it has none)."""
    return int(getattr(config, "hidden_size", 0) or getattr(config, "d_model", 0) or 0)


def model_layers(config: Any) -> int:
    """The number of layers of a transformers model, from its config (0 if it has none)."""
    return int(getattr(config, "num_hidden_layers", 0) or 0)


class HFHiddenStates:
    """`supports_hidden`, `hidden_settings`, `hidden_states` and `hf_tokenizer` for a class that
    holds a transformers model: a teacher, or the probe's `HiddenStateExtractor`.

    The class sets `model`, `tokenizer`, `model_name`, `max_length` and `batch_size` (and
    `teacher_id`, unless it overrides `_hidden_model_id`). Override the `_hidden_*` hooks where
    the defaults do not fit: the module to run (the whole model), the default layer, last_k and
    pooling (the last layer, mean pooling), the name stored with the states (`teacher_id`), the
    input length (`max_length`) and the padding id (pad, else eos, else unk, else 0).
    """

    supports_hidden = True
    model: Any
    tokenizer: Any
    model_name: str
    max_length: int
    batch_size: int

    @property
    def hf_tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer."""
        return self.tokenizer

    def hidden_settings(
        self,
        *,
        layer: Optional[int] = None,
        last_k: Optional[int] = None,
        pooling: Optional[str] = None,
    ) -> Dict[str, Any]:
        """The hidden-state settings `hidden_states` uses; None takes the default.

        layer (Optional[int]): the hidden state (0: embeddings, -1: last layer).
        last_k (Optional[int]): average the last k hidden states instead.
        pooling (Optional[str]): "mean", "cls" or "last" (the last real token: what a causal LM
            has read the whole text at).
        RETURNS (Dict[str, Any]): layer, last_k, pooling, width and model.
        """
        config = self.model.config
        spec = resolve_hidden_spec(
            layer, last_k, pooling, n_states=model_layers(config) + 1, **self._hidden_defaults()
        )
        return {**spec, "width": model_width(config), "model": self._hidden_model_id()}

    def hidden_states(
        self,
        texts: Sequence[str],
        docs: Optional[Sequence[Any]] = None,
        *,
        level: str = "doc",
        layer: Optional[int] = None,
        last_k: Optional[int] = None,
        pooling: Optional[str] = None,
    ) -> List[Any]:
        """The model's hidden states of the bare texts, pooled per text and/or aligned to the
        tokens of `docs` by character offsets.

        texts (Sequence[str]): the texts.
        docs (Optional[Sequence[Doc]]): their spaCy docs (needed for token-level states).
        level (str): "doc", "token" or "both".
        layer, last_k, pooling: see `hidden_settings`.
        RETURNS (List[HiddenStates]): one per text.
        """
        spec = self.hidden_settings(layer=layer, last_k=last_k, pooling=pooling)
        return hf_hidden_states(
            self._hidden_module(),
            self.tokenizer,
            texts,
            docs,
            level=level,
            layer=spec["layer"],
            last_k=spec["last_k"],
            pooling=spec["pooling"],
            max_length=self._hidden_max_length(),
            batch_size=self.batch_size,
            pad_token_id=self._hidden_pad_token_id(),
            model_name=self.model_name,
        )

    def _hidden_module(self) -> Any:
        """The module to run for hidden states."""
        return self.model

    def _hidden_defaults(self) -> Dict[str, Any]:
        """`default_layer`, `default_last_k` and/or `default_pooling` for `resolve_hidden_spec`."""
        return {}

    def _hidden_model_id(self) -> str:
        """The model's name, stored with its hidden states."""
        return self.teacher_id

    def _hidden_max_length(self) -> int:
        return self.max_length

    def _hidden_pad_token_id(self) -> int:
        # Padding sits after the real tokens and is masked out, so its id only has to exist:
        # causal LMs often ship without a pad token.
        tokenizer = self.tokenizer
        for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
            if token_id is not None:
                return int(token_id)
        return 0
