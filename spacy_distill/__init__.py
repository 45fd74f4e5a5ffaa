"""spacy-distill: distil a large teacher into a small, fast spaCy text classifier.

Importing the package registers its components, losses, readers, scorers and teachers; it
imports neither torch nor transformers (teachers that need them import them when they run).
"""
from . import augment, corpus, losses, scoring  # noqa: F401  (registration; augment: the text augmenters)
from .ml import empty_docs  # noqa: F401  (registers the empty-doc guard callback)
from .ml import static_embeddings  # noqa: F401  (registers spacy-distill.StaticEmbeddings.v1)
from .pipeline import distill_hidden  # noqa: F401  (registers distill_hidden, its projector and loss)
from .hidden import HiddenProjection, HiddenRequest, HiddenStates
from .about import __version__
from .filter import DecisionRule, SemanticFilter
from .losses import SoftTargetLoss, SoftTargets
from .pipeline.distill_textcat import DistillMultiLabelTextCategorizer, DistillTextCategorizer
from . import teachers  # the package (the registry: spacy_distill.registry.teachers)
from .targets import TeacherTarget, get_target, read_targets, set_target, write_targets
from .teachers import SpacyTeacher, Teacher, load_teacher

__all__ = [
    "__version__",
    "SoftTargetLoss",
    "SoftTargets",
    "DistillTextCategorizer",
    "DistillMultiLabelTextCategorizer",
    "DecisionRule",
    "SemanticFilter",
    "HiddenProjection",
    "HiddenRequest",
    "HiddenStates",
    "TeacherTarget",
    "get_target",
    "set_target",
    "read_targets",
    "write_targets",
    "Teacher",
    "SpacyTeacher",
    "load_teacher",
    "teachers",
]
