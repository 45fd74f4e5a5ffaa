"""spacy-distill: distil a large teacher into a small, fast spaCy text classifier.

Importing the package registers its components, losses, readers, scorers and teachers; it
imports neither torch nor transformers (teachers that need them import them when they run).
Every `spacy-distill` command is a function here that the command line calls (docs/api.md).
"""

from . import (
    augment,  # noqa: F401  (registers the text augmenters)
    teachers,  # noqa: F401  (registers the teachers; the registry: registry.teachers)
)
from .about import __version__
from .active.report import write_report as write_active_report
from .active.rounds import run_rounds
from .annotation.annotate import annotate, convert
from .annotation.escalations import escalations_to_targets
from .augment.config import load_augment_config
from .augment.run import augment_file
from .data.records import read_records
from .data.shards import merge_target_files
from .data.targets import TeacherTarget, get_target, read_targets, set_target, write_targets
from .errors import DistillError
from .evaluation.evaluate import evaluate
from .evaluation.trust import label_trust, teacher_quality
from .evaluation.tune_student import tune_student
from .filter import DecisionRule, SemanticFilter
from .filter.escalations import EscalationLog, read_escalations
from .hidden import HiddenProjection, HiddenRequest, HiddenStates
from .ml import (
    empty_docs,  # noqa: F401  (registers the empty-doc guard callback)
    static_embeddings,  # noqa: F401  (registers spacy-distill.StaticEmbeddings.v1)
)
from .packaging.export import export_pipeline
from .packaging.package import package_pipeline
from .pipeline import distill_hidden  # noqa: F401  (registers distill_hidden, its projector and loss)
from .pipeline.distill_textcat import DistillMultiLabelTextCategorizer, DistillTextCategorizer
from .select import select_pool  # (also registers the selectors)
from .select.inherit import inherit_targets
from .teachers import SpacyTeacher, Teacher, TeacherBase
from .teachers.loading import lazy_teacher, load_teacher
from .training import corpus, losses, scoring  # noqa: F401  (registers the reader, losses, scorer)
from .training.calibration import calibrate
from .training.losses import SoftTargetLoss, SoftTargets
from .training.student_config import make_student_config
from .vectors.build import build_word_vectors, build_word_vectors_from_token_states

__all__ = [
    "__version__",
    # one function per command (docs/api.md)
    "annotate",
    "augment_file",
    "build_word_vectors",
    "build_word_vectors_from_token_states",
    "calibrate",
    "convert",
    "escalations_to_targets",
    "evaluate",
    "export_pipeline",
    "inherit_targets",
    "label_trust",
    "lazy_teacher",
    "load_augment_config",
    "load_teacher",
    "make_student_config",
    "merge_target_files",
    "package_pipeline",
    "read_escalations",
    "read_records",
    "run_rounds",
    "select_pool",
    "teacher_quality",
    "tune_student",
    "write_active_report",
    # components, losses, targets, teachers, the filter
    "DecisionRule",
    "DistillError",
    "EscalationLog",
    "DistillMultiLabelTextCategorizer",
    "DistillTextCategorizer",
    "HiddenProjection",
    "HiddenRequest",
    "HiddenStates",
    "SemanticFilter",
    "SoftTargetLoss",
    "SoftTargets",
    "SpacyTeacher",
    "Teacher",
    "TeacherBase",
    "TeacherTarget",
    "get_target",
    "read_targets",
    "set_target",
    "write_targets",
]
