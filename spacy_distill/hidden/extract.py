"""Hidden states of Hugging Face models, shared by every transformers-based teacher.

`hf_hidden_states` runs a model with `output_hidden_states=True` on raw texts (no prompt: the
states describe the text itself), selects a layer (or the mean of the last k), pools one vector
per text and aligns the pieces to spaCy tokens by character offsets (see `alignment`). torch is
imported where it is used.
"""
from typing import Any, Dict, List, Optional, Protocol, Sequence, runtime_checkable

import numpy

from ..errors import DistillError
from .alignment import HiddenStates, align_to_tokens, check_level, pool_pieces, select_layer, token_spans


@runtime_checkable
class HiddenStateTeacher(Protocol):
    """A teacher that can give its hidden states (the optional part of the teacher protocol).

    `spacy-distill annotate --hidden` asks for these; a teacher without them cannot be used for
    hidden-state distillation.
    """

    def hidden_settings(
        self, *, layer: Optional[int] = None, last_k: Optional[int] = None, pooling: Optional[str] = None
    ) -> Dict[str, Any]:
        """The resolved settings (`layer`, `last_k`, `pooling`, `width`, `model`) that
        `hidden_states` uses with these arguments (None: the teacher's defaults)."""
        ...

    def hidden_states(
        self,
        texts: Sequence[str],
        docs: Optional[Sequence[Any]] = None,
        *,
        level: str = "doc",
        layer: Optional[int] = None,
        last_k: Optional[int] = None,
        pooling: Optional[str] = None,
    ) -> List[HiddenStates]:
        """One `HiddenStates` per text; token-level vectors are aligned to the tokens of `docs`."""
        ...


def require_hidden_teacher(teacher: Any) -> HiddenStateTeacher:
    """The teacher, if it can give hidden states; else a DistillError that says which can."""
    if not callable(getattr(teacher, "hidden_states", None)) or not callable(
        getattr(teacher, "hidden_settings", None)
    ):
        name = getattr(teacher, "teacher_id", type(teacher).__name__)
        raise DistillError(
            f"teacher {name} ({type(teacher).__name__}) has no hidden states to distil: it lacks "
            "a `hidden_states` method. Hidden states come from HF classifiers "
            "(spacy-distill.HFClassifierTeacher.v1), HF causal LMs and probes "
            "(HFPromptTeacher, HFProbeTeacher) and spaCy pipelines with a spacy-transformers "
            "`transformer` (SpacyTeacher); annotate without --hidden for the others"
        )
    return teacher


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
    from ..teachers import hf_common

    torch, _ = hf_common.require_transformers()
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
        texts, truncation=True, max_length=max_length, return_offsets_mapping=want_tokens,
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
                input_ids=input_ids.to(device), attention_mask=mask.to(device),
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


def resolve_hidden_spec(
    layer: Optional[int],
    last_k: Optional[int],
    pooling: Optional[str],
    *,
    default_layer: int = -1,
    default_last_k: Optional[int] = None,
    default_pooling: str = "mean",
    n_states: int,
) -> Dict[str, Any]:
    """The layer, last_k and pooling to use: the ones asked for, else the teacher's defaults.
    Giving `layer` drops a default last_k and the other way round."""
    from .alignment import POOLINGS

    if layer is not None and last_k is not None:
        raise DistillError(f"give either a hidden layer ({layer}) or last_k ({last_k}), not both")
    if layer is None and last_k is None:
        layer, last_k = (None, default_last_k) if default_last_k is not None else (default_layer, None)
    pooling = pooling or default_pooling
    if pooling not in POOLINGS:
        raise DistillError(f"hidden pooling must be one of {POOLINGS}, got {pooling!r}")
    if last_k is not None and not (isinstance(last_k, int) and 1 <= last_k <= n_states):
        raise DistillError(f"last_k must be between 1 and {n_states} (the hidden states), got {last_k!r}")
    if layer is not None and not (isinstance(layer, int) and -n_states <= layer < n_states):
        raise DistillError(
            f"hidden layer {layer!r} is out of range: the model has {n_states} hidden states "
            f"(0 = embeddings ... {n_states - 1} = last layer; or -1 ... -{n_states})"
        )
    return {"layer": layer, "last_k": last_k, "pooling": pooling}
