"""The fixed projection that reduces a teacher's hidden states to k dimensions before they are
stored: a seeded random projection or PCA, saved as one `.npz` so that every annotate run uses
the same space."""

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy

from ..errors import DistillError
from ..vectors.reduce import principal_components

REDUCTIONS = ("random", "pca")
PROJECTION_FORMAT = "spacy-distill.hidden-projection"
PROJECTION_VERSION = 1


class HiddenProjection:
    """A fixed linear map from the teacher's width to k dims: y = (x - mean) @ matrix.

    Made once (a seeded Gaussian random projection, or PCA fitted on the first states of an
    annotate run) and saved, so that every later annotate run stores states in the same space;
    each doc records the projection's fingerprint and training refuses to mix two.
    """

    def __init__(
        self,
        method: str,
        matrix: numpy.ndarray,
        mean: numpy.ndarray,
        meta: Optional[Dict[str, Any]] = None,
    ) -> None:
        if method not in REDUCTIONS:
            raise DistillError(f"hidden reduction must be one of {REDUCTIONS}, got {method!r}")
        self.method = method
        self.matrix = numpy.ascontiguousarray(matrix, dtype="float32")
        self.mean = numpy.ascontiguousarray(mean, dtype="float32")
        if self.matrix.ndim != 2 or self.mean.shape != (self.matrix.shape[0],):
            raise DistillError(
                f"hidden projection: matrix {self.matrix.shape} and mean {self.mean.shape} do not fit"
            )
        self.meta = dict(meta or {})

    @property
    def in_width(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def dims(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def fingerprint(self) -> str:
        """sha256 of the method and the arrays."""
        digest = hashlib.sha256(f"{self.method}:{self.matrix.shape}".encode("utf8"))
        digest.update(self.matrix.tobytes())
        digest.update(self.mean.tobytes())
        return digest.hexdigest()

    def describe(self) -> Dict[str, Any]:
        return {
            "method": self.method,
            "dims": self.dims,
            "in_width": self.in_width,
            "fingerprint": self.fingerprint,
        }

    def apply(self, x: numpy.ndarray) -> numpy.ndarray:
        x = numpy.asarray(x, dtype="float32")
        if x.shape[-1] != self.in_width:
            raise DistillError(
                f"hidden projection ({self.method}, fingerprint {self.fingerprint[:12]}) maps "
                f"{self.in_width} dims, but the teacher's states have {x.shape[-1]}: it was made "
                "for another teacher or layer; give another projection_path"
            )
        return ((x - self.mean) @ self.matrix).astype("float32")

    @classmethod
    def random(cls, in_width: int, dims: int, seed: int = 0) -> "HiddenProjection":
        """A Gaussian random projection scaled by 1/sqrt(k) (Johnson-Lindenstrauss): distances
        and dot products are kept in expectation."""
        check_dims(in_width, dims)
        rng = numpy.random.default_rng(seed)
        matrix = rng.standard_normal((in_width, dims)) / numpy.sqrt(dims)
        return cls("random", matrix, numpy.zeros(in_width), {"seed": int(seed)})

    @classmethod
    def fit_pca(cls, vectors: numpy.ndarray, dims: int) -> "HiddenProjection":
        """PCA: the top `dims` principal directions of `vectors` (n, in_width), n >= dims."""
        x = numpy.asarray(vectors, dtype="float64")
        if x.ndim != 2:
            raise DistillError(f"PCA needs a 2-d array of vectors, got shape {x.shape}")
        check_dims(x.shape[1], dims)
        if x.shape[0] < dims:
            raise DistillError(
                f"PCA to {dims} dims needs at least {dims} vectors to fit on, got {x.shape[0]}; "
                "annotate more texts, lower dims or use reduction='random'"
            )
        mean, components, explained = principal_components(x, dims)
        return cls(
            "pca",
            components.T,
            mean,
            {"n_fitted": int(x.shape[0]), "explained_variance": explained},
        )

    def to_disk(self, path: Union[str, Path]) -> Path:
        """Save as one `.npz` (arrays plus JSON metadata; loads without pickle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": PROJECTION_FORMAT,
            "version": PROJECTION_VERSION,
            "method": self.method,
            "fingerprint": self.fingerprint,
            **{
                k: v
                for k, v in self.meta.items()
                if k not in ("format", "version", "method", "fingerprint")
            },
        }
        with path.open("wb") as file_:
            numpy.savez(
                file_, matrix=self.matrix, mean=self.mean, meta=numpy.asarray(json.dumps(meta))
            )
        return path

    @classmethod
    def from_disk(cls, path: Union[str, Path]) -> "HiddenProjection":
        path = Path(path)
        if not path.is_file():
            raise DistillError(f"{path}: hidden projection not found")
        try:
            with numpy.load(path, allow_pickle=False) as data:
                matrix, mean, meta = data["matrix"], data["mean"], json.loads(str(data["meta"]))
        except (OSError, ValueError, KeyError) as err:
            raise DistillError(f"{path}: not a hidden projection file ({err})") from err
        if meta.get("format") != PROJECTION_FORMAT or meta.get("version") != PROJECTION_VERSION:
            raise DistillError(
                f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}; this "
                f"version reads {PROJECTION_FORMAT!r} version {PROJECTION_VERSION}"
            )
        projection = cls(meta["method"], matrix, mean, meta)
        if meta.get("fingerprint") != projection.fingerprint:
            raise DistillError(f"{path}: the arrays do not match the stored fingerprint (edited?)")
        return projection


def check_dims(in_width: int, dims: int) -> None:
    """A DistillError unless `dims` is an int in [1, in_width]."""
    if not isinstance(dims, int) or not 1 <= dims <= in_width:
        raise DistillError(
            f"dims must be between 1 and the teacher's width ({in_width}), got {dims!r}"
        )
