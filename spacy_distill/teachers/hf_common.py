"""Loading Hugging Face models for teachers, shared by every transformers-based teacher.

torch and transformers are imported inside the functions: `import spacy_distill` and a
packaged student never load them.
"""
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

from ..errors import DistillError

DTYPES = ("auto", "float32", "float16", "bfloat16")
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


def load_model(
    auto_class: str,
    name: str,
    *,
    gguf_file: Optional[str] = None,
    revision: Optional[str] = None,
    dtype: str = "auto",
    device: str = "cpu",
    **kwargs: Any,
):
    """Load `transformers.<auto_class>.from_pretrained(name)` in eval mode on a device.

    auto_class (str): e.g. "AutoModelForSequenceClassification", "AutoModelForCausalLM", "AutoModel".
    name (str): a hub name or a local path (a GGUF file's folder when gguf_file is given).
    gguf_file (Optional[str]): the GGUF file name inside `name` (transformers dequantizes it).
    revision (Optional[str]): a hub revision.
    dtype (str): "auto" (float32 on CPU), "float32", "float16" or "bfloat16".
    device (str): "cpu", "cuda", "cuda:N" or "auto".
    RETURNS: the model, in eval mode.
    """
    torch, transformers = require_transformers()
    cls = getattr(transformers, auto_class)
    load_kwargs: Dict[str, Any] = {"revision": revision, "torch_dtype": resolve_dtype(dtype), **kwargs}
    if gguf_file:
        load_kwargs["gguf_file"] = gguf_file
    try:
        model = cls.from_pretrained(name, **load_kwargs)
    except (OSError, ValueError) as err:
        raise DistillError(f"{name}: cannot load {auto_class} ({err})") from err
    model.to(resolve_device(device))
    model.eval()
    return model


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
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        for file_path in files:
            stat = file_path.stat()
            digest.update(f"{file_path.name}:{stat.st_size}:{int(stat.st_mtime)}".encode("utf8"))
    return digest.hexdigest()


def offline_hint() -> str:
    """A note for errors: weights are never downloaded at run time in offline setups."""
    return "" if os.environ.get("HF_HUB_OFFLINE") != "1" else " (HF_HUB_OFFLINE=1: only local files are used)"


def resolve_max_length(model, tokenizer, max_length: Optional[int], model_name: str, *, minimum: int = 1) -> int:
    """The input length in tokens: the one asked for, checked against the model's positions,
    or (None) the tokenizer's model_max_length capped at MAX_LENGTH_CAP and the positions."""
    positions = getattr(model.config, "max_position_embeddings", None)
    if max_length is None:
        limit = getattr(tokenizer, "model_max_length", None) or MAX_LENGTH_CAP
        candidates = [limit, MAX_LENGTH_CAP] + ([positions] if positions else [])
        return int(min(candidates))
    if not isinstance(max_length, int) or max_length < minimum:
        raise DistillError(f"max_length must be an integer of {minimum} or more, got {max_length!r}")
    if positions and max_length > positions:
        raise DistillError(
            f"max_length {max_length} exceeds the {positions} positions of {model_name} "
            "(max_position_embeddings); lower max_length"
        )
    return max_length
