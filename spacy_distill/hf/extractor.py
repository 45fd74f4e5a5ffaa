"""The probe's feature extractor: one layer's hidden states of any Hugging Face model (an
encoder such as BERT or MiniLM, or a causal LLM such as Llama or SmolLM2, also from a GGUF file),
pooled into one vector per text.

torch and transformers are imported where they are used, never when this module is imported.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy

from ..arguments import check_int_argument
from ..errors import DistillError
from ..hidden.alignment import POOLINGS
from .features import HFHiddenStates, model_layers, model_width
from .loading import (
    check_device,
    fingerprint_of,
    load_model,
    load_tokenizer,
    offline_hint,
    require_transformers,
    resolve_max_length,
    split_gguf_path,
)


def pool_hidden_states(hidden, mask, pooling: str):
    """Pool token vectors into one vector per text, looking at real (non-padding) tokens only.

    Works with left and right padding alike.

    hidden (torch.Tensor): (batch, length, width) hidden states.
    mask (torch.Tensor): (batch, length) attention mask, 1 for real tokens and 0 for padding.
    pooling (str): "mean" (average of the real tokens), "cls" (the first real token) or "last"
        (the last real token: what a causal LM has read the whole text at).
    RETURNS (torch.Tensor): (batch, width).
    """
    import torch

    mask = mask.to(hidden.device)
    if pooling == "mean":
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    if pooling not in ("cls", "last"):
        raise DistillError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    real = (mask > 0).long()
    if pooling == "cls":
        index = real.argmax(dim=1)  # the first maximum: the first real token
    else:
        positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
        index = (real * positions).argmax(dim=1)  # the highest position holding a real token
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


class HiddenStateExtractor(HFHiddenStates):
    """Pooled hidden states of a Hugging Face model: one vector per text.

    The model is loaded with `AutoModel`, the base model of both encoders and causal LMs (for a
    causal LM this skips the vocabulary projection, which probing does not need), falling back to
    `AutoModelForCausalLM`; an encoder-decoder model runs its encoder only. Texts are padded on
    the right, so a causal model's real tokens never see padding and a text's vector does not
    depend on the batch it is in. For a layer below the last, the forward pass stops once that
    layer's hidden state exists (checked at load time against a full run on a sample text).
    """

    def __init__(
        self,
        model: str,
        *,
        gguf_file: Optional[str] = None,
        revision: Optional[str] = None,
        layer: int = -1,
        last_k: Optional[int] = None,
        pooling: str = "mean",
        max_length: Optional[int] = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 32,
        allow_pickle: bool = False,
    ) -> None:
        """
        model (str): a hub name, a local model directory, a GGUF file's folder (with gguf_file)
            or a path to a .gguf file.
        gguf_file (Optional[str]): the GGUF file inside `model` (transformers dequantizes it).
        revision (Optional[str]): a hub revision.
        layer (int): the index into the model's hidden states (0: the embeddings, -1: the last
            layer; negative counts from the end).
        last_k (Optional[int]): average the last k layers instead of taking `layer`.
        pooling (str): "mean", "cls" (first real token) or "last" (last real token, for causal LMs).
        max_length (Optional[int]): tokens per text (longer texts are truncated and counted);
            None: the tokenizer's limit, at most 512 and at most the model's positions.
        device (str): "cpu", "cuda", "cuda:N" or "auto".
        dtype (str): "auto" (float32), "float32", "float16" or "bfloat16".
        batch_size (int): texts per forward pass.
        allow_pickle (bool): load pickled weights (`pytorch_model.bin`, which can run code when
            loaded) when the model has no safetensors; only for a model you trust.
        """
        check_int_argument("batch_size", batch_size, 1)
        check_device(device)
        self.allow_pickle = allow_pickle
        if pooling not in POOLINGS:
            raise DistillError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if last_k is not None:
            if not isinstance(last_k, int) or last_k < 1:
                raise DistillError(f"last_k must be a positive integer or null, got {last_k!r}")
            if layer != -1:
                raise DistillError(
                    f"give either layer ({layer}) or last_k ({last_k}), not both: last_k averages "
                    "the last k layers"
                )
        if not isinstance(layer, int):
            raise DistillError(
                f"layer must be an integer index into the hidden states, got {layer!r}"
            )
        self.model_name, self.gguf_file = split_gguf_path(str(model), gguf_file)
        self.revision = revision
        self.pooling = pooling
        self.last_k = last_k
        self.layer: Optional[int] = None if last_k is not None else layer
        self.dtype = dtype
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(
            self.model_name, gguf_file=self.gguf_file, revision=revision
        )
        self.model = self._load_model(device)
        self.device = str(self.model.device)
        config = self.model.config
        self.n_layers = model_layers(config)
        self.width = model_width(config)
        self._check_layers()
        self.max_length = resolve_max_length(
            self.model, self.tokenizer, max_length, self.model_name, minimum=1
        )
        self.pad_token_id = self._hidden_pad_token_id()
        self._setup_early_exit()
        self.n_scored = 0
        self.n_truncated = 0
        self._fingerprint: Optional[str] = None

    @property
    def settings(self) -> Dict[str, Any]:
        """What decides the features: model, GGUF file, revision, layer or last_k, pooling and
        max_length. A saved head records these and refuses an extractor that differs."""
        return {
            "model": self.model_name,
            "gguf_file": self.gguf_file,
            "revision": self.revision,
            "layer": self.layer,
            "last_k": self.last_k,
            "pooling": self.pooling,
            "max_length": self.max_length,
        }

    @property
    def model_id(self) -> str:
        """The model's name: its path or hub name, and its GGUF file if it has one."""
        return f"{self.model_name}/{self.gguf_file}" if self.gguf_file else self.model_name

    @property
    def teacher_id(self) -> str:
        """The name its features and hidden states are kept under: the model's."""
        return self.model_id

    @property
    def fingerprint(self) -> str:
        """sha256 of the settings, the width, the resolved hub commit, the dtype and, for a local
        model, its files' names, sizes and times."""
        if self._fingerprint is None:
            local = Path(self.model_name).exists()
            files = (
                str(Path(self.model_name) / self.gguf_file)
                if local and self.gguf_file
                else self.model_name
                if local
                else None
            )
            self._fingerprint = fingerprint_of(
                [
                    "spacy-distill.HiddenStateExtractor",
                    self.settings,
                    self.width,
                    getattr(self.model.config, "_commit_hash", None),
                    self.dtype,
                ],
                model_files=files,
            )
        return self._fingerprint

    def features(self, texts: Sequence[str]) -> numpy.ndarray:
        """Pooled hidden states, one row per text, in the order given.

        Texts are sorted by token length and run in batches of `batch_size`, so each batch pads
        to a similar length.

        texts (Sequence[str]): the texts.
        RETURNS (numpy.ndarray): shape (len(texts), width), float32.
        """
        texts = list(texts)
        if not texts:
            return numpy.zeros((0, self.width), dtype="float32")
        torch, _ = require_transformers()
        full = self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        self.n_scored += len(texts)
        self.n_truncated += sum(len(ids) > self.max_length for ids in full)
        ids = [list(row) for row in full]
        long = [i for i, row in enumerate(ids) if len(row) > self.max_length]
        if long:
            # The tokenizer truncates: it keeps the closing special tokens (e.g. [SEP]).
            cut = self.tokenizer(
                [texts[i] for i in long], truncation=True, max_length=self.max_length
            )["input_ids"]
            for i, row in zip(long, cut):
                ids[i] = list(row)
        if any(not row for row in ids):
            empty = next(i for i, row in enumerate(ids) if not row)
            raise DistillError(
                f"text {empty} ({texts[empty]!r}) has no tokens for {self.model_name}'s tokenizer; "
                "remove empty texts"
            )
        order = numpy.argsort(-numpy.asarray([len(row) for row in ids]), kind="stable")
        output = numpy.zeros((len(texts), self.width), dtype="float32")
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                index = order[start : start + self.batch_size]
                output[index] = self._forward([ids[i] for i in index])
        return output

    # Its hidden states (`hidden_settings`, `hidden_states`, from HFHiddenStates) default to the
    # layer (or last_k) and pooling of the features, so that they agree with `features`.
    def _hidden_module(self) -> Any:
        return self._module

    def _hidden_defaults(self) -> Dict[str, Any]:
        return {
            "default_layer": -1 if self.layer is None else self.layer,
            "default_last_k": self.last_k,
            "default_pooling": self.pooling,
        }

    def _forward(self, batch: List[List[int]], early_exit: bool = True) -> numpy.ndarray:
        torch, _ = require_transformers()
        length = max(len(row) for row in batch)
        input_ids = torch.full((len(batch), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.long)
        for i, row in enumerate(batch):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        input_ids, mask = input_ids.to(self.model.device), mask.to(self.model.device)
        hidden = self._run(input_ids, mask, early_exit and self._exit_layer is not None)
        return pool_hidden_states(hidden.float(), mask, self.pooling).cpu().numpy()

    def _run(self, input_ids, mask, early_exit: bool):
        torch, _ = require_transformers()
        handle = None
        if early_exit:
            # The hidden state asked for is the input of block `_exit_layer`: take it there and
            # stop, rather than run the blocks above it (half the model for a middle layer).
            def stop(module, args, kwargs):
                raise _EarlyExit(args[0] if args else kwargs["hidden_states"])

            block = self._blocks[self._exit_layer]
            handle = block.register_forward_pre_hook(stop, with_kwargs=True)
        try:
            output = self._module(
                input_ids=input_ids, attention_mask=mask, output_hidden_states=True
            )
        except _EarlyExit as exit_:
            return exit_.hidden
        finally:
            if handle is not None:
                handle.remove()
        states = output.hidden_states
        if self.last_k is not None:
            return torch.stack([state.float() for state in states[-self.last_k :]]).mean(dim=0)
        return states[self.layer]

    def _setup_early_exit(self) -> None:
        """Find the model's stack of blocks and check on a sample text that stopping early gives
        the same vectors as a full run; any doubt keeps the full run."""
        self._exit_layer: Optional[int] = None
        self._blocks = None
        if self.layer is None or self.layer % (self.n_layers + 1) == self.n_layers:
            return  # the last hidden state often has a final norm applied: run everything
        torch, _ = require_transformers()
        stacks = [
            module
            for module in self._module.modules()
            if isinstance(module, torch.nn.ModuleList) and len(module) == self.n_layers
        ]
        if len(stacks) != 1:
            return
        self._blocks, self._exit_layer = stacks[0], self.layer % (self.n_layers + 1)
        sample = self.tokenizer(["A sample text, to check early exit."])["input_ids"]
        with torch.inference_mode():
            full, early = self._forward(sample, early_exit=False), self._forward(sample)
        if not numpy.allclose(full, early, rtol=1e-4, atol=1e-4 * float(numpy.abs(full).max())):
            self._exit_layer = None

    def _load_model(self, device: str):
        kwargs = dict(
            gguf_file=self.gguf_file,
            revision=self.revision,
            dtype=self.dtype,
            device=device,
            # False leaves it to the environment (SPACY_DISTILL_ALLOW_PICKLE).
            allow_pickle=True if self.allow_pickle else None,
        )
        try:
            model = load_model("AutoModel", self.model_name, **kwargs)
        except DistillError as base_error:
            try:
                model = load_model("AutoModelForCausalLM", self.model_name, **kwargs)
            except DistillError:
                raise DistillError(f"{base_error}{offline_hint()}") from base_error
        # An encoder-decoder model (T5, BART) would want decoder inputs: probe its encoder.
        encoder_decoder = getattr(model.config, "is_encoder_decoder", False)
        self._module = model.get_encoder() if encoder_decoder else model
        return model

    def _check_layers(self) -> None:
        n_states = self.n_layers + 1  # the embeddings, then one per layer
        if self.n_layers < 1 or self.width < 1:
            raise DistillError(
                f"{self.model_name}: the config has no num_hidden_layers / hidden_size; "
                "this model cannot be probed"
            )
        if self.layer is not None and not -n_states <= self.layer < n_states:
            raise DistillError(
                f"layer {self.layer} is out of range: {self.model_name} has {n_states} hidden "
                f"states (0 = embeddings ... {self.n_layers} = last layer; or -1 ... -{n_states})"
            )
        if self.last_k is not None and self.last_k > n_states:
            raise DistillError(
                f"last_k {self.last_k} exceeds the {n_states} hidden states of {self.model_name}"
            )


class _EarlyExit(Exception):
    """Carries the wanted hidden state out of a forward pass that need not go further."""

    def __init__(self, hidden) -> None:
        super().__init__("early exit")
        self.hidden = hidden
