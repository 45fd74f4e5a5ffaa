"""A teacher made of any Hugging Face model's pooled hidden states and a linear head (a probe)
fitted on the gold examples at hand.

The feature extractor (`HiddenStateExtractor`) runs an encoder (BERT, MiniLM...) or a causal
LLM (Llama, SmolLM2, also from a GGUF file) and pools one layer's hidden states per text. The head
(`ProbeHead`) is a logistic regression on standardised features: multinomial for exclusive
labels, one binary regression per label for multi-label. It is fitted with scikit-learn once,
then saved as plain numpy arrays and JSON, so scoring needs neither scikit-learn nor a refit.

torch, transformers and scikit-learn are imported where they are used, never when this module is
imported.
"""
import hashlib
import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy

from ..errors import DistillError, LabelMismatchError
from ..records import Record, read_records, split_errors
from ..registry import registry
from . import hf_common
from .base import log_softmax

POOLINGS = ("mean", "cls", "last")
DEVICES = ("cpu", "cuda", "auto")
"""The default `max_length` never exceeds this, whatever the tokenizer allows."""

DEFAULT_C = 0.01
"""The default inverse L2 strength. Hidden states have hundreds of dimensions and probes rarely
see more than a few thousand examples: strong regularisation generalises better (SmolLM2 on SST-2
with 2,000 examples: C=0.01 beats C=0.3 by 3 to 4 points of accuracy). Tune it on dev data."""
HEAD_FORMAT = "spacy-distill.probe-head"
HEAD_VERSION = 1
HEAD_META = "head.json"
HEAD_ARRAYS = ("weights", "bias", "mean", "scale")
"""Saved as `<name>.npy`: weights (n_features, n_labels), bias (n_labels,), and the feature
standardisation, mean and scale (n_features,). logits = ((x - mean) / scale) @ weights + bias."""
RESERVED_META = ("format", "version", "labels", "multi_label", "head_hash")
EXTRACTOR_FIELDS = ("model", "gguf_file", "revision", "layer", "last_k", "pooling", "max_length")


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


class HiddenStateExtractor:
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
        if not isinstance(batch_size, int) or batch_size < 1:
            raise DistillError(f"batch_size must be a positive integer, got {batch_size!r}")
        if device not in DEVICES and not str(device).startswith("cuda:"):
            raise DistillError(f"device must be one of {DEVICES} or 'cuda:N', got {device!r}")
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
        self.model_name, self.gguf_file = hf_common.split_gguf_path(str(model), gguf_file)
        self.revision = revision
        self.pooling = pooling
        self.last_k = last_k
        self.layer: Optional[int] = None if last_k is not None else layer
        self.dtype = dtype
        self.batch_size = batch_size
        self.tokenizer = hf_common.load_tokenizer(
            self.model_name, gguf_file=self.gguf_file, revision=revision
        )
        self.model = self._load_model(device)
        self.device = str(self.model.device)
        config = self.model.config
        self.n_layers = int(getattr(config, "num_hidden_layers", 0) or 0)
        self.width = int(getattr(config, "hidden_size", 0) or getattr(config, "d_model", 0))
        self._check_layers()
        self.max_length = hf_common.resolve_max_length(self.model, self.tokenizer, max_length, self.model_name, minimum=1)
        self.pad_token_id = self._pad_token_id()
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
    def fingerprint(self) -> str:
        """sha256 of the settings, the width, the resolved hub commit, the dtype and, for a local
        model, its files' names, sizes and times."""
        if self._fingerprint is None:
            local = Path(self.model_name).exists()
            files = (
                str(Path(self.model_name) / self.gguf_file) if local and self.gguf_file
                else self.model_name if local else None
            )
            self._fingerprint = hf_common.fingerprint_of(
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
        torch, _ = hf_common.require_transformers()
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

    def hidden_settings(
        self, *, layer: Optional[int] = None, last_k: Optional[int] = None, pooling: Optional[str] = None
    ) -> Dict[str, Any]:
        """The hidden-state settings `hidden_states` uses; None takes the extractor's own layer
        (or last_k) and pooling.

        RETURNS (Dict[str, Any]): layer, last_k, pooling, width and model.
        """
        from ..hidden.extract import resolve_hidden_spec

        spec = resolve_hidden_spec(
            layer, last_k, pooling, default_layer=-1 if self.layer is None else self.layer,
            default_last_k=self.last_k, default_pooling=self.pooling, n_states=self.n_layers + 1,
        )
        model = f"{self.model_name}/{self.gguf_file}" if self.gguf_file else self.model_name
        return {**spec, "width": self.width, "model": model}

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
        """Hidden states per text (pooled) and/or per spaCy token of `docs` (aligned by
        character offsets); the same layer and pooling as `features` unless given.

        texts (Sequence[str]): the texts.
        docs (Optional[Sequence[Doc]]): their spaCy docs (needed for token-level states).
        level (str): "doc", "token" or "both".
        RETURNS (List[HiddenStates]): one per text.
        """
        from ..hidden.extract import hf_hidden_states

        spec = self.hidden_settings(layer=layer, last_k=last_k, pooling=pooling)
        return hf_hidden_states(
            self._module, self.tokenizer, texts, docs, level=level, layer=spec["layer"],
            last_k=spec["last_k"], pooling=spec["pooling"], max_length=self.max_length,
            batch_size=self.batch_size, pad_token_id=self.pad_token_id, model_name=self.model_name,
        )

    def _forward(self, batch: List[List[int]], early_exit: bool = True) -> numpy.ndarray:
        torch, _ = hf_common.require_transformers()
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
        torch, _ = hf_common.require_transformers()
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
        torch, _ = hf_common.require_transformers()
        stacks = [
            module for module in self._module.modules()
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
            gguf_file=self.gguf_file, revision=self.revision, dtype=self.dtype, device=device,
            # False leaves it to the environment (SPACY_DISTILL_ALLOW_PICKLE).
            allow_pickle=True if self.allow_pickle else None,
        )
        try:
            model = hf_common.load_model("AutoModel", self.model_name, **kwargs)
        except DistillError as base_error:
            try:
                model = hf_common.load_model("AutoModelForCausalLM", self.model_name, **kwargs)
            except DistillError:
                raise DistillError(f"{base_error}{hf_common.offline_hint()}") from base_error
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

    def _pad_token_id(self) -> int:
        # Padding sits after the real tokens and is masked out, so its id only has to exist:
        # causal LMs often ship without a pad token.
        tokenizer = self.tokenizer
        for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
            if token_id is not None:
                return int(token_id)
        return 0


class _EarlyExit(Exception):
    """Carries the wanted hidden state out of a forward pass that need not go further."""

    def __init__(self, hidden) -> None:
        super().__init__("early exit")
        self.hidden = hidden


class ProbeHead:
    """A linear head on standardised features: logits = ((x - mean) / scale) @ weights + bias.

    Build one with `ProbeHead.fit` (scikit-learn, at fitting time only) or `ProbeHead.from_disk`.
    """

    def __init__(
        self,
        labels: Sequence[str],
        multi_label: bool,
        arrays: Dict[str, numpy.ndarray],
        meta: Optional[Dict[str, Any]] = None,
    ) -> None:
        """
        labels (Sequence[str]): the labels, in column order.
        multi_label (bool): one binary regression per label (True) or one multinomial (False).
        arrays (Dict[str, numpy.ndarray]): weights, bias, mean and scale.
        meta (Optional[Dict[str, Any]]): what the head was fitted with (extractor, data, C).
        """
        self.labels = tuple(labels)
        self.multi_label = bool(multi_label)
        self.arrays = {name: numpy.asarray(arrays[name], dtype="float64") for name in HEAD_ARRAYS}
        self.meta = dict(meta or {})
        n_features, n_labels = self.arrays["weights"].shape
        if n_labels != len(self.labels) or self.arrays["bias"].shape != (n_labels,):
            raise DistillError(
                f"probe head: weights {self.arrays['weights'].shape} and bias "
                f"{self.arrays['bias'].shape} do not fit {len(self.labels)} labels"
            )
        for name in ("mean", "scale"):
            if self.arrays[name].shape != (n_features,):
                raise DistillError(
                    f"probe head: {name} has shape {self.arrays[name].shape}, "
                    f"expected ({n_features},)"
                )

    @property
    def n_features(self) -> int:
        return int(self.arrays["weights"].shape[0])

    @property
    def hash(self) -> str:
        """sha256 of the labels, the kind and the arrays: what decides the head's outputs."""
        digest = hashlib.sha256()
        digest.update(json.dumps([list(self.labels), self.multi_label]).encode("utf8"))
        for name in HEAD_ARRAYS:
            array = numpy.ascontiguousarray(self.arrays[name])
            digest.update(f"{name}:{array.shape}:{array.dtype.str}".encode("utf8"))
            digest.update(array.tobytes())
        return digest.hexdigest()

    def logits(self, features: numpy.ndarray) -> numpy.ndarray:
        """features (numpy.ndarray): (n, n_features).
        RETURNS (numpy.ndarray): (n, n_labels) float64.
        """
        x = (numpy.asarray(features, dtype="float64") - self.arrays["mean"]) / self.arrays["scale"]
        return x @ self.arrays["weights"] + self.arrays["bias"]

    @classmethod
    def fit(
        cls,
        features: numpy.ndarray,
        gold: Sequence[Tuple[str, ...]],
        labels: Sequence[str],
        *,
        multi_label: bool = False,
        regularization: float = DEFAULT_C,
        max_iter: int = 1000,
    ) -> "ProbeHead":
        """Fit the head with scikit-learn's LogisticRegression on standardised features.

        features (numpy.ndarray): (n, n_features).
        gold (Sequence[Tuple[str, ...]]): each example's gold labels (exactly one if exclusive).
        labels (Sequence[str]): the labels, in column order; every one must occur in `gold`.
        multi_label (bool): one binary regression per label instead of one multinomial.
        regularization (float): C, the inverse L2 strength (smaller: stronger regularisation).
        max_iter (int): the solver's iteration limit.
        RETURNS (ProbeHead): the fitted head (meta holds the train accuracy).
        """
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise DistillError(
                "Fitting a probe head needs scikit-learn: pip install 'spacy-distill[probe]' "
                "(scoring with a saved head does not)"
            ) from err
        if not regularization > 0:
            raise DistillError(f"regularization (C) must be positive, got {regularization!r}")
        x = numpy.asarray(features, dtype="float64")
        labels = tuple(labels)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-8] = 1.0  # constant features carry nothing; keep them finite
        z = (x - mean) / scale
        columns = {label: i for i, label in enumerate(labels)}
        if multi_label:
            y = numpy.zeros((len(gold), len(labels)), dtype="int64")
            for row, example in enumerate(gold):
                y[row, [columns[label] for label in example]] = 1
            weights = numpy.zeros((x.shape[1], len(labels)))
            bias = numpy.zeros(len(labels))
            for j, label in enumerate(labels):
                positives = int(y[:, j].sum())
                if positives in (0, len(gold)):
                    raise LabelMismatchError(
                        f"label {label!r} is {'on' if positives else 'off'} in every training "
                        "example: a binary probe needs examples with and without it"
                    )
                model = LogisticRegression(C=regularization, max_iter=max_iter)
                model.fit(z, y[:, j])
                weights[:, j] = model.coef_[0]
                bias[j] = model.intercept_[0]
            predicted = (z @ weights + bias) > 0
            accuracy = float((predicted == y.astype(bool)).all(axis=1).mean())
        else:
            y = numpy.asarray([columns[example[0]] for example in gold])
            model = LogisticRegression(C=regularization, max_iter=max_iter)
            model.fit(z, y)
            if len(labels) == 2:
                # A binary fit has one weight vector for class 1; class 0's logit is 0.
                weights = numpy.concatenate([numpy.zeros((x.shape[1], 1)), model.coef_.T], axis=1)
                bias = numpy.asarray([0.0, model.intercept_[0]])
            else:
                weights, bias = model.coef_.T.copy(), model.intercept_.copy()
            accuracy = float(((z @ weights + bias).argmax(axis=1) == y).mean())
        arrays = {"weights": weights, "bias": bias, "mean": mean, "scale": scale}
        meta = {"regularization": float(regularization), "train_accuracy": accuracy}
        return cls(labels, multi_label, arrays, meta)

    def to_disk(self, path: Union[str, Path]) -> None:
        """Write the arrays as `<name>.npy` and the labels and meta as `head.json` to a folder."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name in HEAD_ARRAYS:
            numpy.save(path / f"{name}.npy", self.arrays[name], allow_pickle=False)
        meta = {
            "format": HEAD_FORMAT,
            "version": HEAD_VERSION,
            "labels": list(self.labels),
            "multi_label": self.multi_label,
            "head_hash": self.hash,
            **{k: v for k, v in self.meta.items() if k not in RESERVED_META},
        }
        text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
        (path / HEAD_META).write_text(text, encoding="utf8")

    @classmethod
    def from_disk(cls, path: Union[str, Path]) -> "ProbeHead":
        """Read a head that `to_disk` wrote (numpy and JSON only)."""
        path = Path(path)
        meta_path = path / HEAD_META
        if not meta_path.is_file():
            raise DistillError(f"{path}: not a probe head folder (no {HEAD_META})")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf8"))
        except json.JSONDecodeError as err:
            raise DistillError(
                f"{meta_path}: invalid JSON ({err.msg} at line {err.lineno})"
            ) from err
        if meta.get("format") != HEAD_FORMAT or meta.get("version") != HEAD_VERSION:
            raise DistillError(
                f"{meta_path}: format {meta.get('format')!r} version {meta.get('version')!r}; "
                f"this version reads {HEAD_FORMAT!r} version {HEAD_VERSION}"
            )
        arrays = {}
        for name in HEAD_ARRAYS:
            file_path = path / f"{name}.npy"
            if not file_path.is_file():
                raise DistillError(f"{path}: the probe head lacks {file_path.name}; refit it")
            arrays[name] = numpy.load(file_path, allow_pickle=False)
        head = cls(meta["labels"], meta["multi_label"], arrays, meta)
        if meta.get("head_hash") not in (None, head.hash):
            raise DistillError(
                f"{path}: the arrays do not match head_hash in {HEAD_META} (edited or partly "
                "copied?); refit the head"
            )
        return head


class HFProbeTeacher:
    """Scores texts with a linear probe on a Hugging Face model's pooled hidden states.

    The head is read from `head` when that folder exists; otherwise it is fitted on the gold
    labels of `train_data` and, if `head` is given, saved there. A saved head records the
    extractor settings and the training data's sha256, and refuses to load with others.
    Exclusive heads give log-probabilities (log-softmax of the logits), multi-label heads logits.
    """

    def __init__(
        self,
        extractor: HiddenStateExtractor,
        *,
        head: Optional[Union[str, Path]] = None,
        train_data: Optional[Union[str, Path]] = None,
        labels: Optional[Sequence[str]] = None,
        multi_label: bool = False,
        regularization: float = DEFAULT_C,
        teacher_id: Optional[str] = None,
    ) -> None:
        """
        extractor (HiddenStateExtractor): the feature extractor.
        head (Optional[Union[str, Path]]): a head folder: read if it exists, else written after
            fitting.
        train_data (Optional[Union[str, Path]]): JSONL/CSV records with gold labels to fit the
            head on when `head` does not exist yet.
        labels (Optional[Sequence[str]]): the label order; None: the sorted gold labels.
        multi_label (bool): one binary logistic regression per label.
        regularization (float): C of the logistic regression (inverse L2 strength; smaller is
            stronger). Tune it on dev data.
        teacher_id (Optional[str]): a readable id; defaults to "hf-probe:<model>/<layer>/<pooling>".
        """
        self.extractor = extractor
        self.batch_size = extractor.batch_size
        self.multi_label = bool(multi_label)
        self.exclusive = not self.multi_label
        self.regularization = float(regularization)
        head_path = Path(head) if head is not None else None
        if head_path is not None and (head_path / HEAD_META).exists():
            self.head = ProbeHead.from_disk(head_path)
            self._check_head(head_path, train_data, labels)
        elif train_data is not None:
            self.head = self._fit(Path(train_data), labels)
            if head_path is not None:
                self.head.to_disk(head_path)
        elif head_path is not None:
            raise DistillError(
                f"{head_path}: no probe head there (no {HEAD_META}); give train_data to fit one"
            )
        else:
            raise DistillError("HFProbeTeacher needs a saved head or train_data to fit one")
        self.labels: Tuple[str, ...] = self.head.labels
        where = extractor.gguf_file and f"{extractor.model_name}/{extractor.gguf_file}"
        layer = f"last{extractor.last_k}" if extractor.last_k else f"layer{extractor.layer}"
        self.teacher_id = teacher_id or (
            f"hf-probe:{where or extractor.model_name}"
            + (f"@{extractor.revision}" if extractor.revision else "")
            + f"/{layer}/{extractor.pooling}"
        )

    @property
    def fingerprint(self) -> str:
        """sha256 of the extractor's fingerprint and the head's hash."""
        return hashlib.sha256(f"{self.extractor.fingerprint}:{self.head.hash}".encode()).hexdigest()

    def features(self, texts: Sequence[str]) -> numpy.ndarray:
        """Pooled hidden states, (len(texts), width) float32: `HiddenStateExtractor.features`."""
        return self.extractor.features(texts)

    def hidden_settings(self, **kwargs: Any) -> Dict[str, Any]:
        """`HiddenStateExtractor.hidden_settings` of the extractor."""
        return self.extractor.hidden_settings(**kwargs)

    def hidden_states(self, texts: Sequence[str], docs: Optional[Sequence[Any]] = None, **kwargs: Any) -> List[Any]:
        """`HiddenStateExtractor.hidden_states` of the extractor: the states the probe reads."""
        return self.extractor.hidden_states(texts, docs, **kwargs)

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        """Teacher scores for texts: log-probabilities (exclusive) or logits (multi-label).

        texts (Sequence[str]): the texts.
        RETURNS (numpy.ndarray): shape (len(texts), len(self.labels)), float32.
        """
        texts = list(texts)
        if not texts:
            return numpy.zeros((0, len(self.labels)), dtype="float32")
        logits = self.head.logits(self.features(texts))
        scores = logits if self.multi_label else log_softmax(logits)
        return scores.astype("float32")

    def stats(self) -> Dict[str, Any]:
        """Counters since the teacher was built: texts scored and texts truncated."""
        n_scored, n_truncated = self.extractor.n_scored, self.extractor.n_truncated
        return {
            "n_scored": n_scored,
            "n_truncated": n_truncated,
            "truncated_share": n_truncated / n_scored if n_scored else 0.0,
            "max_length": self.extractor.max_length,
        }

    def _fit(self, path: Path, labels: Optional[Sequence[str]]) -> ProbeHead:
        records = _read_gold(path, self.multi_label)
        gold = [record.labels or () for record in records]
        seen = sorted({label for example in gold for label in example})
        if labels is None:
            labels = seen
        labels = tuple(labels)
        if len(set(labels)) != len(labels):
            raise LabelMismatchError(f"labels {list(labels)} names a label more than once")
        unknown = sorted(set(seen) - set(labels))
        if unknown:
            first = next(r for r in records if set(r.labels or ()) & set(unknown))
            raise LabelMismatchError(
                f"{first.source}:{first.line}: gold label(s) {unknown} are not in labels "
                f"{list(labels)}; add them to labels or drop those records"
            )
        if not self.multi_label:
            missing = sorted(set(labels) - set(seen))
            if missing:
                raise LabelMismatchError(
                    f"{path}: label(s) {missing} have no gold example; a probe cannot learn a "
                    "class it never sees"
                )
            if len(labels) < 2:
                raise LabelMismatchError(
                    f"{path}: the gold has one label only ({labels[0]!r}); an exclusive probe "
                    "needs two labels or more"
                )
        features = self.extractor.features([record.text for record in records])
        head = ProbeHead.fit(
            features, gold, labels, multi_label=self.multi_label, regularization=self.regularization
        )
        head.meta.update(
            {
                "extractor": self.extractor.settings,
                "extractor_fingerprint": self.extractor.fingerprint,
                "n_features": self.extractor.width,
                "train_data": {
                    "path": str(path),
                    "sha256": _file_sha256(path),
                    "bytes": path.stat().st_size,
                    "n_examples": len(records),
                    "label_counts": dict(sorted(Counter(l for g in gold for l in g).items())),
                },
            }
        )
        return head

    def _check_head(
        self, path: Path, train_data: Optional[Union[str, Path]], labels: Optional[Sequence[str]]
    ) -> None:
        meta = self.head.meta
        fix = (
            f"use the settings it was fitted with, or delete {path} (or point head elsewhere) "
            "to refit"
        )
        saved = meta.get("extractor") or {}
        current = self.extractor.settings
        for name in EXTRACTOR_FIELDS:
            if saved.get(name) != current[name]:
                raise DistillError(
                    f"{path}: the probe head was fitted on features with {name} = "
                    f"{saved.get(name)!r}, but the extractor has {name} = {current[name]!r}; {fix}"
                )
        if self.head.n_features != self.extractor.width:
            raise DistillError(
                f"{path}: the probe head takes {self.head.n_features} features, but "
                f"{self.extractor.model_name} gives hidden_size {self.extractor.width}; {fix}"
            )
        if self.head.multi_label != self.multi_label:
            raise DistillError(
                f"{path}: the probe head has multi_label = {self.head.multi_label}, but the "
                f"teacher was asked for multi_label = {self.multi_label}; {fix}"
            )
        if labels is not None and tuple(labels) != self.head.labels:
            raise LabelMismatchError(
                f"{path}: the probe head has labels {list(self.head.labels)}, but labels = "
                f"{list(labels)} was asked for; {fix}"
            )
        if meta.get("regularization") not in (None, self.regularization):
            raise DistillError(
                f"{path}: the probe head was fitted with regularization = "
                f"{meta.get('regularization')!r}, but the teacher has {self.regularization!r}; "
                f"{fix}"
            )
        if train_data is not None:
            data = meta.get("train_data") or {}
            sha = _file_sha256(Path(train_data))
            if data.get("sha256") != sha:
                raise DistillError(
                    f"{path}: the probe head was fitted on train_data {data.get('path')!r} "
                    f"(sha256 {str(data.get('sha256'))[:12]}..., "
                    f"{data.get('n_examples')} examples), "
                    f"but {train_data} differs (sha256 {sha[:12]}...); {fix}"
                )
        fitted = meta.get("extractor_fingerprint")
        if fitted and fitted != self.extractor.fingerprint:
            # Same settings, other files (sizes or times): often a copied model, sometimes new
            # weights. A hard failure would break every moved project, so say it and go on.
            warnings.warn(
                f"{path}: the model files of {self.extractor.model_name} differ (names, sizes "
                "or modification times) from those the probe head was fitted with; if the "
                "weights changed, refit the head",
                stacklevel=3,
            )


def _read_gold(path: Path, multi_label: bool) -> List[Record]:
    records, errors = split_errors(read_records(path))
    if errors:
        shown = "; ".join(str(error) for error in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise DistillError(f"train_data has malformed records: {shown}{more}")
    labelled = [record for record in records if record.labels is not None]
    if not labelled:
        raise DistillError(
            f"{path}: no record has a gold label ('label' or 'labels') to fit the probe on"
        )
    if len(labelled) < len(records):
        warnings.warn(
            f"{path}: {len(records) - len(labelled)} record(s) without gold labels are left out "
            "of fitting the probe",
            stacklevel=3,
        )
    if not multi_label:
        for record in labelled:
            if len(record.labels or ()) != 1:
                raise LabelMismatchError(
                    f"{record.source}:{record.line}: {len(record.labels or ())} gold labels "
                    f"{list(record.labels or ())}; an exclusive probe needs exactly one "
                    "(set multi_label = true for multi-label data)"
                )
    return labelled


def _file_sha256(path: Path) -> str:
    if not path.is_file():
        raise DistillError(f"{path}: train_data not found")
    digest = hashlib.sha256()
    with path.open("rb") as file_:
        for block in iter(lambda: file_.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@registry.teachers("spacy-distill.HFProbeTeacher.v1")
def configure_hf_probe_teacher(
    model: str,
    gguf_file: Optional[str] = None,
    revision: Optional[str] = None,
    layer: int = -1,
    last_k: Optional[int] = None,
    pooling: str = "mean",
    head: Optional[str] = None,
    train_data: Optional[str] = None,
    labels: Optional[List[str]] = None,
    multi_label: bool = False,
    regularization: float = DEFAULT_C,
    max_length: Optional[int] = None,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 32,
    allow_pickle: bool = False,
) -> HFProbeTeacher:
    """A linear probe on a Hugging Face model's pooled hidden states, fitted on gold examples.

    model (str): a hub name, a local model directory, a GGUF file's folder or a .gguf path.
    gguf_file (Optional[str]): the GGUF file inside `model`.
    revision (Optional[str]): a hub revision.
    layer (int): the hidden state to probe (0: embeddings, -1: last layer, negative from the end).
    last_k (Optional[int]): average the last k layers instead (leave layer at -1).
    pooling (str): "mean" (real tokens), "cls" (first token) or "last" (last real token, for
        causal LMs).
    head (Optional[str]): the head folder: loaded if it exists, else written after fitting.
    train_data (Optional[str]): JSONL/CSV with gold labels, to fit the head when it does not exist.
    labels (Optional[List[str]]): the label order; None: the sorted gold labels.
    multi_label (bool): one binary logistic regression per label instead of a multinomial one.
    regularization (float): C of the logistic regression (inverse L2 strength; smaller is
        stronger). Tune it on dev data.
    max_length (Optional[int]): tokens per text; None: the tokenizer's limit, at most 512.
    device (str): "cpu", "cuda", "cuda:N" or "auto".
    dtype (str): "auto" (float32), "float32", "float16" or "bfloat16".
    batch_size (int): texts per forward pass.
    allow_pickle (bool): load pickled weights (`pytorch_model.bin`, which can run code when
        loaded) when the model has no safetensors; only for a model you trust.
    RETURNS (HFProbeTeacher): the teacher.
    """
    extractor = HiddenStateExtractor(
        model,
        gguf_file=gguf_file,
        revision=revision,
        layer=layer,
        last_k=last_k,
        pooling=pooling,
        max_length=max_length,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        allow_pickle=allow_pickle,
    )
    return HFProbeTeacher(
        extractor,
        head=head,
        train_data=train_data,
        labels=labels,
        multi_label=multi_label,
        regularization=regularization,
    )
