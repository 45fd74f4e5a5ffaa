"""Fitting a probe head on gold examples, and checking that a saved head fits the extractor and
data it is loaded with (the head records both when it is fitted)."""

import warnings
from collections import Counter
from pathlib import Path
from typing import List, Optional, Sequence, Union

from ..data.files import file_sha256
from ..data.records import Record, read_records, split_errors
from ..errors import DistillError, LabelMismatchError
from ..hf.extractor import HiddenStateExtractor
from .probe_head import ProbeHead

EXTRACTOR_FIELDS = ("model", "gguf_file", "revision", "layer", "last_k", "pooling", "max_length")
"""The extractor settings a saved head must have been fitted with."""


def fit_probe_head(
    extractor: HiddenStateExtractor,
    path: Path,
    labels: Optional[Sequence[str]],
    *,
    multi_label: bool,
    regularization: float,
) -> ProbeHead:
    """Fit a head on the extractor's features of the gold records in `path`.

    extractor (HiddenStateExtractor): the feature extractor.
    path (Path): JSONL/CSV records with gold labels.
    labels (Optional[Sequence[str]]): the label order; None: the sorted gold labels.
    multi_label (bool): one binary logistic regression per label.
    regularization (float): C of the logistic regression.
    RETURNS (ProbeHead): the head; its meta records the extractor and the data.
    """
    records = read_gold(path, multi_label)
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
    if not multi_label:
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
    features = extractor.features([record.text for record in records])
    head = ProbeHead.fit(
        features, gold, labels, multi_label=multi_label, regularization=regularization
    )
    head.meta.update(
        {
            "extractor": extractor.settings,
            "extractor_fingerprint": extractor.fingerprint,
            "n_features": extractor.width,
            "train_data": {
                "path": str(path),
                "sha256": _file_sha256(path),
                "bytes": path.stat().st_size,
                "n_examples": len(records),
                "label_counts": dict(sorted(Counter(label for g in gold for label in g).items())),
            },
        }
    )
    return head


def check_probe_head(
    head: ProbeHead,
    path: Path,
    extractor: HiddenStateExtractor,
    *,
    train_data: Optional[Union[str, Path]],
    labels: Optional[Sequence[str]],
    multi_label: bool,
    regularization: float,
) -> None:
    """Refuse a saved head (read from `path`) fitted with other extractor settings, width,
    kind, labels, regularization or training data; warn when only the model files differ."""
    meta = head.meta
    fix = (
        f"use the settings it was fitted with, or delete {path} (or point head elsewhere) to refit"
    )
    saved = meta.get("extractor") or {}
    current = extractor.settings
    for name in EXTRACTOR_FIELDS:
        if saved.get(name) != current[name]:
            raise DistillError(
                f"{path}: the probe head was fitted on features with {name} = "
                f"{saved.get(name)!r}, but the extractor has {name} = {current[name]!r}; {fix}"
            )
    if head.n_features != extractor.width:
        raise DistillError(
            f"{path}: the probe head takes {head.n_features} features, but "
            f"{extractor.model_name} gives hidden_size {extractor.width}; {fix}"
        )
    if head.multi_label != multi_label:
        raise DistillError(
            f"{path}: the probe head has multi_label = {head.multi_label}, but the "
            f"teacher was asked for multi_label = {multi_label}; {fix}"
        )
    if labels is not None and tuple(labels) != head.labels:
        raise LabelMismatchError(
            f"{path}: the probe head has labels {list(head.labels)}, but labels = "
            f"{list(labels)} was asked for; {fix}"
        )
    if meta.get("regularization") not in (None, regularization):
        raise DistillError(
            f"{path}: the probe head was fitted with regularization = "
            f"{meta.get('regularization')!r}, but the teacher has {regularization!r}; "
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
    if fitted and fitted != extractor.fingerprint:
        # Same settings, other files (sizes or times): often a copied model, sometimes new
        # weights. A hard failure would break every moved project, so say it and go on.
        warnings.warn(
            f"{path}: the model files of {extractor.model_name} differ (names, sizes "
            "or modification times) from those the probe head was fitted with; if the "
            "weights changed, refit the head",
            stacklevel=3,
        )


def read_gold(path: Path, multi_label: bool) -> List[Record]:
    """The records of `path` that have gold labels (exactly one each when exclusive); records
    without are left out, with a warning."""
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
    return file_sha256(path)
