"""The filter runtime: verdicts from a student's `doc.cats`, and the cascade to a teacher."""

from .component import SemanticFilter, make_semantic_filter
from .decision import Decision, DecisionRule

__all__ = ["Decision", "DecisionRule", "SemanticFilter", "make_semantic_filter"]
