"""Moved to `spacy_distill.hf.loading`; these names stay importable from here for the modules that
still import them from the old place."""
from ..hf.loading import (  # noqa: F401
    ALLOW_PICKLE_ENV,
    DEVICES,
    DTYPES,
    MAX_LENGTH_CAP,
    PICKLED_WEIGHTS_FILES,
    SAFE_WEIGHTS_FILES,
    check_device,
    fingerprint_of,
    load_model,
    load_tokenizer,
    offline_hint,
    pickle_allowed,
    require_transformers,
    resolve_device,
    resolve_dtype,
    resolve_max_length,
    split_gguf_path,
    weights_kwargs,
)
