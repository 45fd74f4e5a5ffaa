"""Hidden states in the target format (the `hidden` field of version 1), and the request that
asks a teacher for them during annotation (the projection that reduces them to k dimensions is
in `projection.py`).

Arrays are stored as raw little-endian float16 bytes (token masks as uint8 bytes) with their
shapes, so a target file stays a plain msgpack DocBin that any reader can decode without
pickles. See docs/target-format.md and docs/hidden-states.md.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy

from ..errors import DistillError, TargetFormatError
from .alignment import HiddenStates, check_level
from .projection import REDUCTIONS, HiddenProjection, check_dims

HIDDEN_VERSION = 1
STORED_DTYPE = "<f2"


@dataclass
class StoredHidden:
    """The decoded `hidden` field of one doc.

    doc (Optional[numpy.ndarray]): (width,) float32 pooled vector, or None.
    tokens (Optional[numpy.ndarray]): (n_tokens, width) float32 token vectors, or None.
    token_mask (Optional[numpy.ndarray]): (n_tokens,) bool, True where a token has a vector.
    width (int): the stored width (after any projection).
    source (Dict[str, Any]): the teacher's layer, last_k, pooling, width and model.
    projection (Optional[Dict[str, Any]]): method, dims, in_width and fingerprint, or None.
    """

    doc: Optional[numpy.ndarray]
    tokens: Optional[numpy.ndarray]
    token_mask: Optional[numpy.ndarray]
    width: int
    source: Dict[str, Any] = field(default_factory=dict)
    projection: Optional[Dict[str, Any]] = None

    @property
    def signature(self) -> str:
        """What must agree across the docs of one training corpus: teacher settings and projection."""
        proj = self.projection or {}
        return json.dumps(
            [self.source, self.width, proj.get("method"), proj.get("fingerprint")],
            sort_keys=True,
            default=str,
        )


def encode_hidden(
    states: HiddenStates,
    source: Dict[str, Any],
    projection: Optional["HiddenProjection"] = None,
) -> Dict[str, Any]:
    """The `hidden` field of a doc: float16 bytes plus what made them.

    states (HiddenStates): the teacher's states for the doc (doc and/or token level).
    source (Dict[str, Any]): the teacher's hidden settings (layer, last_k, pooling, width, model).
    projection (Optional[HiddenProjection]): applied before storing, when given.
    RETURNS (Dict[str, Any]): the field (see docs/target-format.md).
    """
    doc, tokens = states.doc, states.tokens
    if projection is not None:
        doc = projection.apply(doc) if doc is not None else None
        if tokens is not None:
            tokens = projection.apply(tokens)
            tokens[~numpy.asarray(states.token_mask, dtype=bool)] = 0.0
    width = int((doc if doc is not None else tokens).shape[-1])  # type: ignore[union-attr]
    level = (
        "both" if doc is not None and tokens is not None else "doc" if doc is not None else "token"
    )
    hidden: Dict[str, Any] = {
        "version": HIDDEN_VERSION,
        "level": level,
        "dtype": "float16",
        "width": width,
        "source": dict(source),
        "projection": projection.describe() if projection is not None else None,
        "doc": None,
        "tokens": None,
        "token_mask": None,
        "n_tokens": None,
        "truncated": bool(states.truncated),
    }
    if doc is not None:
        hidden["doc"] = _to_f16_bytes(doc)
    if tokens is not None:
        hidden["tokens"] = _to_f16_bytes(tokens)
        hidden["token_mask"] = numpy.asarray(states.token_mask, dtype="uint8").tobytes()
        hidden["n_tokens"] = int(tokens.shape[0])
    return hidden


def hidden_nbytes(hidden: Optional[Dict[str, Any]]) -> int:
    """Bytes of array data in a `hidden` field (what it adds to a doc, metadata aside)."""
    if not hidden:
        return 0
    return sum(len(hidden[key] or b"") for key in ("doc", "tokens", "token_mask"))


def hidden_field_nbytes(hidden: Optional[Dict[str, Any]]) -> int:
    """Bytes a `hidden` field takes in a target file's user data (msgpack: arrays and metadata)."""
    if not hidden:
        return 0
    import srsly

    return len(srsly.msgpack_dumps(hidden))


def decode_hidden(hidden: Any, where: str = "doc", n_tokens: Optional[int] = None) -> StoredHidden:
    """Validate and decode a `hidden` field.

    hidden (Any): the stored field.
    where (str): the location to name in errors (file and doc index).
    n_tokens (Optional[int]): the doc's token count, checked against token-level states.
    RETURNS (StoredHidden): float32 arrays and the metadata.
    """

    def fail(problem: str) -> TargetFormatError:
        return TargetFormatError(f"{where}: field 'hidden': {problem}")

    if not isinstance(hidden, dict):
        raise fail(f"expected a dict, got {type(hidden).__name__}")
    if hidden.get("version") != HIDDEN_VERSION:
        raise fail(
            f"unsupported hidden-state version {hidden.get('version')!r} (this spacy-distill "
            f"reads {HIDDEN_VERSION}); annotate the data again with hidden states"
        )
    if hidden.get("dtype") != "float16":
        raise fail(f"dtype must be 'float16', got {hidden.get('dtype')!r}")
    width = hidden.get("width")
    if not isinstance(width, int) or width < 1:
        raise fail(f"'width' must be a positive integer, got {width!r}")
    doc = tokens = mask = None
    if hidden.get("doc") is not None:
        doc = _from_f16_bytes(hidden["doc"], (width,), fail, "doc")
    if hidden.get("tokens") is not None:
        count = hidden.get("n_tokens")
        if not isinstance(count, int) or count < 0:
            raise fail(f"'n_tokens' must be a non-negative integer, got {count!r}")
        if n_tokens is not None and count != n_tokens:
            raise fail(
                f"holds {count} token vectors but the doc has {n_tokens} tokens; was it "
                "re-tokenized after annotation?"
            )
        tokens = _from_f16_bytes(hidden["tokens"], (count, width), fail, "tokens")
        raw_mask = hidden.get("token_mask")
        if not isinstance(raw_mask, (bytes, bytearray)) or len(raw_mask) != count:
            raise fail(f"'token_mask' must be {count} bytes (one per token)")
        mask = numpy.frombuffer(raw_mask, dtype="uint8").astype(bool)
    if doc is None and tokens is None:
        raise fail("holds neither 'doc' nor 'tokens' vectors")
    return StoredHidden(
        doc=doc,
        tokens=tokens,
        token_mask=mask,
        width=width,
        source=dict(hidden.get("source") or {}),
        projection=dict(hidden["projection"]) if hidden.get("projection") else None,
    )


def _to_f16_bytes(array: numpy.ndarray) -> bytes:
    array = numpy.asarray(array, dtype="float32")
    info = numpy.finfo("float16")
    # float16 overflows to inf past 65504; clip so a few huge activations stay finite.
    return numpy.clip(array, info.min, info.max).astype(STORED_DTYPE).tobytes()


def _from_f16_bytes(raw: Any, shape, fail, name: str) -> numpy.ndarray:
    if not isinstance(raw, (bytes, bytearray)):
        raise fail(f"'{name}' must be bytes (float16), got {type(raw).__name__}")
    expected = int(numpy.prod(shape)) * 2
    if len(raw) != expected:
        raise fail(f"'{name}' has {len(raw)} bytes, expected {expected} for shape {tuple(shape)}")
    array = numpy.frombuffer(raw, dtype=STORED_DTYPE).astype("float32").reshape(shape)
    if not numpy.all(numpy.isfinite(array)):
        raise fail(f"'{name}' holds NaN or inf")
    return array


class HiddenRequest:
    """What `annotate --hidden` asks of a teacher, and the state of one run: the settings, the
    projection (loaded, or made on the first batch and saved) and byte counts.

    level (str): "doc", "token" or "both".
    dims (Optional[int]): reduce to this many dims (None: keep the teacher's width).
    reduction (str): "random" or "pca".
    projection_path (Optional[Union[str, Path]]): where the projection is read from (if it
        exists) or saved to (if it does not).
    layer, last_k, pooling: the teacher's hidden settings (None: its defaults).
    seed (int): the random projection's seed.
    """

    def __init__(
        self,
        level: str,
        *,
        dims: Optional[int] = None,
        reduction: str = "random",
        projection_path: Optional[Union[str, Path]] = None,
        layer: Optional[int] = None,
        last_k: Optional[int] = None,
        pooling: Optional[str] = None,
        seed: int = 0,
    ) -> None:
        self.level = check_level(level)
        if reduction not in REDUCTIONS:
            raise DistillError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if dims is not None and (not isinstance(dims, int) or dims < 1):
            raise DistillError(f"dims must be a positive integer, got {dims!r}")
        self.dims = dims
        self.reduction = reduction
        self.projection_path = Path(projection_path) if projection_path is not None else None
        self.layer, self.last_k, self.pooling = layer, last_k, pooling
        self.seed = seed
        self.projection: Optional[HiddenProjection] = None
        self.source: Dict[str, Any] = {}
        self.n_docs = 0
        self.n_bytes = 0
        self.n_array_bytes = 0
        self.n_truncated = 0
        self.saved_projection: Optional[Path] = None

    def prepare(self, teacher: Any, output_path: Optional[Union[str, Path]] = None) -> None:
        """Check the teacher can give hidden states and resolve its settings (before any work).

        teacher: the teacher (it needs `hidden_states` and `hidden_settings`).
        output_path (Optional[Union[str, Path]]): the target file; with `dims` and no
            projection path, the projection is saved next to it as
            `<name>.hidden-projection.npz`.
        """
        from .extract import require_hidden_teacher

        teacher = require_hidden_teacher(teacher)
        if self.dims is not None and self.projection_path is None and output_path is not None:
            output_path = Path(output_path)
            self.projection_path = output_path.with_name(
                output_path.stem + ".hidden-projection.npz"
            )
        self.source = dict(
            teacher.hidden_settings(layer=self.layer, last_k=self.last_k, pooling=self.pooling)
        )
        width = int(self.source["width"])
        if self.projection_path is not None and self.projection_path.exists():
            self.projection = HiddenProjection.from_disk(self.projection_path)
            if self.projection.in_width != width:
                raise DistillError(
                    f"{self.projection_path}: the projection maps {self.projection.in_width} dims, "
                    f"but the teacher's hidden states have {width}; give another projection_path"
                )
            if self.dims is not None and self.dims != self.projection.dims:
                raise DistillError(
                    f"{self.projection_path}: the projection gives {self.projection.dims} dims, but "
                    f"dims is {self.dims}; drop dims or give another projection_path"
                )
            if self.projection.method != self.reduction and self.dims is not None:
                raise DistillError(
                    f"{self.projection_path}: a {self.projection.method} projection, but "
                    f"reduction is {self.reduction!r}"
                )
        elif self.dims is not None:
            check_dims(width, self.dims)
            if self.reduction == "random":
                self._set_projection(HiddenProjection.random(width, self.dims, self.seed))

    def fields(
        self, teacher: Any, texts: Sequence[str], docs: Sequence[Any]
    ) -> List[Dict[str, Any]]:
        """The `hidden` fields of a batch of texts (their docs give the spaCy tokens)."""
        states = teacher.hidden_states(
            list(texts),
            list(docs),
            level=self.level,
            layer=self.source.get("layer"),
            last_k=self.source.get("last_k"),
            pooling=self.source.get("pooling"),
        )
        if len(states) != len(texts):
            raise DistillError(
                f"teacher {teacher.teacher_id} returned {len(states)} hidden "
                f"states for {len(texts)} texts"
            )
        if self.dims is not None and self.projection is None:
            # PCA is fitted once, on the first batch (doc vectors and covered token vectors).
            rows = [s.doc[None, :] for s in states if s.doc is not None]
            rows += [s.tokens[s.token_mask] for s in states if s.tokens is not None]
            self._set_projection(HiddenProjection.fit_pca(numpy.concatenate(rows), self.dims))
        fields = []
        for state, doc in zip(states, docs):
            if state.tokens is not None and state.tokens.shape[0] != len(doc):
                raise DistillError(
                    f"teacher {teacher.teacher_id} gave "
                    f"{state.tokens.shape[0]} token vectors for a doc of {len(doc)} tokens"
                )
            hidden = encode_hidden(state, self.source, self.projection)
            self.n_docs += 1
            self.n_bytes += hidden_field_nbytes(hidden)
            self.n_array_bytes += hidden_nbytes(hidden)
            self.n_truncated += bool(state.truncated)
            fields.append(hidden)
        return fields

    @property
    def bytes_per_doc(self) -> float:
        """What the `hidden` field adds to a doc on average (msgpack bytes, metadata included)."""
        return self.n_bytes / self.n_docs if self.n_docs else 0.0

    @property
    def array_bytes_per_doc(self) -> float:
        """The float16 arrays and masks alone, per doc."""
        return self.n_array_bytes / self.n_docs if self.n_docs else 0.0

    def _set_projection(self, projection: HiddenProjection) -> None:
        self.projection = projection
        if self.projection_path is not None:
            self.saved_projection = projection.to_disk(self.projection_path)
