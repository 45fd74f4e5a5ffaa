"""The `spacy_distill` section of a pipeline's meta.json: the one module that knows its layout.

Every function takes the meta dict itself (`nlp.meta`, or a meta.json read with srsly), so the
same reader serves a loaded pipeline, a copy being exported and a package's meta.json. The
section holds, each written by one step and read by the others:

* `thresholds` (label -> decision threshold) and `threshold_tuning` (how they were chosen), by
  `tune`;
* `actions` (label -> filter action) and `default_action`, the filter they were tuned for;
* `cascade` (`margin`: the band of doubtful docs, with how it was chosen), by `tune`;
* `calibration` (the fitted temperature, `total_temperature` over repeated fits), by `tune`;
* `card` (the distillation card), by `export`;
* `runtime` (the plugin version and runtime package it needs), by `package`.

Readers return copies and an empty value when a field was never written; writers replace one
field and leave the rest of the section as it was.
"""

from typing import Any, Dict, MutableMapping, Optional

META_KEY = "spacy_distill"

Meta = MutableMapping[str, Any]


def _section(meta: Meta) -> Dict[str, Any]:
    return dict(meta.get(META_KEY) or {})


def _write(meta: Meta, **fields: Any) -> None:
    section = _section(meta)
    section.update(fields)
    meta[META_KEY] = section


def stored_thresholds(meta: Meta) -> Dict[str, float]:
    """The tuned decision thresholds, label -> threshold (empty: never tuned)."""
    return dict(_section(meta).get("thresholds") or {})


def write_thresholds(meta: Meta, thresholds: Dict[str, float], tuning: Dict[str, Any]) -> None:
    """Store decision thresholds and the record of how they were tuned (`threshold_tuning`)."""
    _write(meta, thresholds=dict(thresholds), threshold_tuning=dict(tuning))


def stored_actions(meta: Meta) -> Optional[Dict[str, str]]:
    """The filter actions (label -> action) the thresholds were tuned for; None: none stored."""
    section = _section(meta)
    return None if "actions" not in section else dict(section["actions"] or {})


def stored_default_action(meta: Meta) -> Optional[str]:
    """The filter's default action stored with the actions; None: none stored."""
    return _section(meta).get("default_action") or None


def write_actions(meta: Meta, actions: Dict[str, str], default_action: str) -> None:
    """Store the filter actions and default action the thresholds were tuned for."""
    _write(meta, actions=dict(actions), default_action=default_action)


def stored_cascade(meta: Meta) -> Dict[str, Any]:
    """The cascade band: margin, objective, value, data and the dev summary (empty: none tuned)."""
    return dict(_section(meta).get("cascade") or {})


def stored_escalation_margin(meta: Meta) -> float:
    """The cascade band's margin (0.0, escalation off, when none was tuned)."""
    return float(stored_cascade(meta).get("margin") or 0.0)


def write_cascade(
    meta: Meta, margin: float, *, objective: str, value: float, data: str, dev: Dict[str, Any]
) -> None:
    """Store the cascade band's margin and how it was chosen (`dev`: its summary on the data)."""
    _write(
        meta,
        cascade={
            "margin": margin,
            "objective": objective,
            "value": value,
            "data": data,
            "dev": dev,
        },
    )


def stored_calibration(meta: Meta) -> Dict[str, Any]:
    """The last temperature calibration (empty: never calibrated)."""
    return dict(_section(meta).get("calibration") or {})


def write_calibration(meta: Meta, record: Dict[str, Any]) -> None:
    """Store a temperature calibration's record (see `spacy_distill.training.calibration.calibrate`)."""
    _write(meta, calibration=dict(record))


def stored_card(meta: Meta) -> Dict[str, Any]:
    """The distillation card `export` wrote (empty: not exported)."""
    return dict(_section(meta).get("card") or {})


def write_card(meta: Meta, card: Dict[str, Any]) -> None:
    """Store the distillation card."""
    _write(meta, card=card)


def write_package_runtime(meta: Meta, version: str, package: str) -> None:
    """Store which plugin version and runtime package a packaged pipeline needs."""
    _write(meta, runtime={"version": version, "package": package})


__all__ = [
    "META_KEY",
    "stored_actions",
    "stored_calibration",
    "stored_card",
    "stored_cascade",
    "stored_default_action",
    "stored_escalation_margin",
    "stored_thresholds",
    "write_actions",
    "write_calibration",
    "write_card",
    "write_cascade",
    "write_package_runtime",
    "write_thresholds",
]
