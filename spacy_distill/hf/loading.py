"""Loading Hugging Face models and tokenizers, shared by the transformers-based teachers, the
probe's feature extractor and the model-based augmenters.

torch and transformers are imported inside the functions: `import spacy_distill` and a
packaged student never load them.

Weights are loaded from safetensors only. Pickled weights (`pytorch_model.bin`) can run code
when they are loaded, so they are refused unless the caller opts in (`allow_pickle=True`, or
the environment variable SPACY_DISTILL_ALLOW_PICKLE=1, which reaches every teacher, augmenter
and Ray worker without a config change). GGUF files are parsed, not unpickled: always allowed.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

from ..errors import DistillError

DTYPES = ("auto", "float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda", "auto")
ALLOW_PICKLE_ENV = "SPACY_DISTILL_ALLOW_PICKLE"
# transformers' file names (transformers.utils.*WEIGHTS*_NAME), spelled out so that checking a
# folder does not import transformers.
SAFE_WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# Default input length: encoders rarely have more positions, and longer inputs cost quadratically.
MAX_LENGTH_CAP = 512


def require_transformers():
    """Import torch and transformers, or fail with the install command."""
    try:
        import torch
        import transformers
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise DistillError(
            "This teacher needs torch and transformers: pip install 'spacy-distill[transformers]' "
            "(install torch first, with the build that fits your machine)"
        ) from err
    return torch, transformers


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; anything else is passed through."""
    torch, _ = require_transformers()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DistillError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    return device


def check_device(device: str) -> None:
    """Refuse a device name that is none of DEVICES nor 'cuda:N', before a model is loaded."""
    if device not in DEVICES and not str(device).startswith("cuda:"):
        raise DistillError(f"device must be one of {DEVICES} or 'cuda:N', got {device!r}")


def resolve_dtype(dtype: str):
    """A torch dtype from its name ('auto' keeps float32 on CPU: half precision is slow there)."""
    torch, _ = require_transformers()
    if dtype not in DTYPES:
        raise DistillError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return torch.float32 if dtype == "auto" else getattr(torch, dtype)


def load_tokenizer(name: str, *, gguf_file: Optional[str] = None, revision: Optional[str] = None):
    """The tokenizer of a hub name or local path (offline when HF_HUB_OFFLINE is set)."""
    _, transformers = require_transformers()
    kwargs: Dict[str, Any] = {"revision": revision}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        return transformers.AutoTokenizer.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as err:
        raise DistillError(f"{name}: cannot load a tokenizer ({err})") from err


def pickle_allowed(allow_pickle: Optional[bool] = None) -> bool:
    """Whether pickled weights may be loaded: `allow_pickle` if given, else the environment
    variable SPACY_DISTILL_ALLOW_PICKLE (1/true/yes)."""
    if allow_pickle is not None:
        return bool(allow_pickle)
    return os.environ.get(ALLOW_PICKLE_ENV, "").strip().lower() in ("1", "true", "yes")


# How to get past a refusal, for the messages.
_PICKLE_OPT_IN = (
    f"if you trust the model, allow pickled weights with `allow_pickle=True` or the environment "
    f"variable {ALLOW_PICKLE_ENV}=1, or convert them once to safetensors "
    "(`model.save_pretrained(folder, safe_serialization=True)`)"
)


def weights_kwargs(
    name: str, *, gguf_file: Optional[str] = None, allow_pickle: Optional[bool] = None
) -> Dict[str, Any]:
    """`from_pretrained` arguments that load safetensors weights, and pickled ones only if allowed.

    name (str): a hub name or a local model folder.
    gguf_file (Optional[str]): a GGUF file in `name` (not a pickle: nothing to check).
    allow_pickle (Optional[bool]): see `pickle_allowed`.
    RETURNS (Dict[str, Any]): e.g. {"use_safetensors": True}.
    RAISES (DistillError): a local folder has pickled weights only and they are not allowed.
    """
    if gguf_file:
        return {}
    allowed = pickle_allowed(allow_pickle)
    folder = Path(name)
    if folder.is_dir():
        present = {path.name for path in folder.iterdir()}
        if present.intersection(SAFE_WEIGHTS_FILES):
            return {"use_safetensors": True}
        pickled = [file for file in PICKLED_WEIGHTS_FILES if file in present]
        if pickled and not allowed:
            raise DistillError(
                f"{folder / pickled[0]}: the model's weights are pickled (there is no model.safetensors) "
                f"and loading a pickle can run code, so they are not loaded: {_PICKLE_OPT_IN}"
            )
        return {"use_safetensors": False} if pickled else {}
    # A hub name: transformers picks the files. Without the opt-in it may take safetensors only.
    return {} if allowed else {"use_safetensors": True}


def load_model(
    auto_class: str,
    name: str,
    *,
    gguf_file: Optional[str] = None,
    revision: Optional[str] = None,
    dtype: str = "auto",
    device: str = "cpu",
    allow_pickle: Optional[bool] = None,
    **kwargs: Any,
):
    """Load `transformers.<auto_class>.from_pretrained(name)` in eval mode on a device, from
    safetensors weights (pickled ones only with the opt-in: see `weights_kwargs`).

    auto_class (str): e.g. "AutoModelForSequenceClassification", "AutoModelForCausalLM", "AutoModel".
    name (str): a hub name or a local path (a GGUF file's folder when gguf_file is given).
    gguf_file (Optional[str]): the GGUF file name inside `name` (transformers dequantizes it).
    revision (Optional[str]): a hub revision.
    dtype (str): "auto" (float32 on CPU), "float32", "float16" or "bfloat16".
    device (str): "cpu", "cuda", "cuda:N" or "auto".
    allow_pickle (Optional[bool]): load pickled weights (`pytorch_model.bin`) when there are
        no safetensors; None: the environment variable SPACY_DISTILL_ALLOW_PICKLE decides.
    RETURNS: the model, in eval mode.
    """
    torch, transformers = require_transformers()
    cls = getattr(transformers, auto_class)
    weights = weights_kwargs(name, gguf_file=gguf_file, allow_pickle=allow_pickle)
    load_kwargs: Dict[str, Any] = {
        "revision": revision,
        "torch_dtype": resolve_dtype(dtype),
        **weights,
        **kwargs,
    }
    if gguf_file:
        load_kwargs["gguf_file"] = gguf_file
    try:
        model = cls.from_pretrained(name, **load_kwargs)
    except (OSError, ValueError) as err:
        # A hub model without safetensors fails here: say why pickles were not tried.
        hub_safetensors_only = weights.get("use_safetensors") and not Path(name).is_dir()
        hint = (
            f"; only safetensors weights were looked for: {_PICKLE_OPT_IN}"
            if hub_safetensors_only
            else ""
        )
        raise DistillError(f"{name}: cannot load {auto_class} ({err}){hint}") from err
    model.to(resolve_device(device))
    model.eval()
    return model


def load_model_and_tokenizer(
    auto_class: str,
    name: str,
    *,
    gguf_file: Optional[str] = None,
    revision: Optional[str] = None,
    **kwargs: Any,
) -> Tuple[Any, Any]:
    """`load_model` and `load_tokenizer` of one model, with `offline_hint` added to a failure.

    auto_class, name, gguf_file, revision: as for `load_model`.
    kwargs: the rest of `load_model`'s arguments (dtype, device, allow_pickle, ...).
    RETURNS (Tuple[Any, Any]): the model (in eval mode) and its tokenizer.
    RAISES (DistillError): either cannot be loaded.
    """
    try:
        tokenizer = load_tokenizer(name, gguf_file=gguf_file, revision=revision)
        model = load_model(auto_class, name, gguf_file=gguf_file, revision=revision, **kwargs)
    except DistillError as err:
        raise DistillError(f"{err}{offline_hint()}") from err
    return model, tokenizer


def load_causal_lm(
    model: str, *, gguf_file: Optional[str] = None, **kwargs: Any
) -> Tuple[Any, Any, str, Optional[str]]:
    """A causal LM and its tokenizer from a hub name, a local folder or a path to a .gguf file.

    model (str): the name or path (a .gguf path is split by `split_gguf_path`).
    gguf_file (Optional[str]): a GGUF file inside `model`.
    kwargs: as for `load_model_and_tokenizer` (revision, dtype, device, allow_pickle).
    RETURNS (Tuple[Any, Any, str, Optional[str]]): the model, its tokenizer, and the model's
        name and GGUF file once a .gguf path is split.
    """
    name, gguf_file = split_gguf_path(model, gguf_file)
    lm, tokenizer = load_model_and_tokenizer(
        "AutoModelForCausalLM", name, gguf_file=gguf_file, **kwargs
    )
    return lm, tokenizer, name, gguf_file


def split_gguf_path(name: str, gguf_file: Optional[str]) -> Tuple[str, Optional[str]]:
    """Accept a path to a .gguf file as `name`: return (its folder, its file name)."""
    if gguf_file is None and name.endswith(".gguf") and Path(name).is_file():
        return str(Path(name).parent), Path(name).name
    return name, gguf_file


def fingerprint_of(parts: Iterable[Any], model_files: Optional[str] = None) -> str:
    """sha256 over settings (JSON) and, for a local model folder or file, its files' names,
    sizes and modification times (hashing gigabytes of weights on every run would cost more
    than the hash is worth; a changed file changes its size or time)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(list(parts), sort_keys=True, default=str).encode("utf8"))
    if model_files:
        path = Path(model_files)
        files = (
            [path]
            if path.is_file()
            else sorted(p for p in path.rglob("*") if p.is_file())
            if path.is_dir()
            else []
        )
        for file_path in files:
            stat = file_path.stat()
            digest.update(f"{file_path.name}:{stat.st_size}:{int(stat.st_mtime)}".encode("utf8"))
    return digest.hexdigest()


def offline_hint() -> str:
    """A note for errors: weights are never downloaded at run time in offline setups."""
    return (
        ""
        if os.environ.get("HF_HUB_OFFLINE") != "1"
        else " (HF_HUB_OFFLINE=1: only local files are used)"
    )


def resolve_max_length(
    model, tokenizer, max_length: Optional[int], model_name: str, *, minimum: int = 1
) -> int:
    """The input length in tokens: the one asked for, checked against the model's positions,
    or (None) the tokenizer's model_max_length capped at MAX_LENGTH_CAP and the positions."""
    positions = getattr(model.config, "max_position_embeddings", None)
    if max_length is None:
        limit = getattr(tokenizer, "model_max_length", None) or MAX_LENGTH_CAP
        candidates = [limit, MAX_LENGTH_CAP] + ([positions] if positions else [])
        return int(min(candidates))
    if not isinstance(max_length, int) or max_length < minimum:
        raise DistillError(
            f"max_length must be an integer of {minimum} or more, got {max_length!r}"
        )
    if positions and max_length > positions:
        raise DistillError(
            f"max_length {max_length} exceeds the {positions} positions of {model_name} "
            "(max_position_embeddings); lower max_length"
        )
    return max_length


def truncation_stats(n_scored: int, n_truncated: int, max_length: int) -> Dict[str, Any]:
    """A teacher's counters of texts scored and texts cut to `max_length`, for `stats()`."""
    return {
        "n_scored": n_scored,
        "n_truncated": n_truncated,
        "truncated_share": n_truncated / n_scored if n_scored else 0.0,
        "max_length": max_length,
    }
