"""The decision a pipeline ships: one place that reads it, for `evaluate`, `tune` and `export`.

A pipeline with a `semantic_filter` decides with that component's settings (thresholds, actions,
default action, band); a pipeline without one with what `tune` stored in `meta.json`
(read through `spacy_distill.pipeline.meta`), which is what
`export --filter` writes into the filter. Reports built from this rule therefore describe the
verdicts the exported filter gives.
"""

from dataclasses import dataclass
from typing import Dict, Optional

from spacy.language import Language

from ..pipeline.meta import (
    META_KEY,
    stored_actions,
    stored_default_action,
    stored_escalation_margin,
    stored_thresholds,
)
from .decision import ALLOW, DecisionRule

FILTER_FACTORY = "semantic_filter"


@dataclass(frozen=True)
class ShippedDecision:
    """rule (DecisionRule): thresholds and actions; escalation_margin (float): the band;
    source (str): "semantic_filter '<name>'" or "meta.json"."""

    rule: DecisionRule
    escalation_margin: float
    source: str


def find_filter(nlp: Language) -> Optional[str]:
    """The name of the pipeline's `semantic_filter`, if it has one."""
    names = [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory == FILTER_FACTORY]
    return names[0] if names else None


def stored_settings(nlp: Language) -> Dict[str, object]:
    """What `tune` stored: thresholds, actions, default_action and the band's margin."""
    return {
        "thresholds": stored_thresholds(nlp.meta),
        "actions": stored_actions(nlp.meta) or {},
        "default_action": stored_default_action(nlp.meta) or ALLOW,
        "escalation_margin": stored_escalation_margin(nlp.meta),
    }


def shipped_decision(nlp: Language, labels, exclusive: bool) -> ShippedDecision:
    """The rule the pipeline's verdicts follow (see the module docstring)."""
    name = find_filter(nlp)
    if name is not None:
        component = nlp.get_pipe(name)
        return ShippedDecision(
            component.rule, component.escalation_margin, f"semantic_filter '{name}'"
        )
    stored = stored_settings(nlp)
    thresholds = {k: v for k, v in stored["thresholds"].items() if k in labels}  # type: ignore[union-attr]
    actions = {k: v for k, v in stored["actions"].items() if k in labels}  # type: ignore[union-attr]
    rule = DecisionRule(labels, exclusive, thresholds, actions, str(stored["default_action"]))
    return ShippedDecision(rule, float(stored["escalation_margin"]), "meta.json")  # type: ignore[arg-type]


__all__ = ["ShippedDecision", "find_filter", "shipped_decision", "stored_settings", "META_KEY"]
