"""The probe's head: a logistic regression on standardised features (multinomial for exclusive
labels, one binary regression per label for multi-label). It is fitted with scikit-learn once,
then saved as plain numpy arrays and JSON, so scoring needs neither scikit-learn nor a refit.

scikit-learn is imported where a head is fitted, never when this module is imported.
"""

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy

from ..errors import DistillError, LabelMismatchError

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
