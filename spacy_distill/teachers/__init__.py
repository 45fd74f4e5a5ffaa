"""Teachers: models that score texts. Each kind has its own module and a registered builder.

Every module here imports torch, transformers or httpx only when one of its teachers is
built, so importing them (and `spacy_distill`) stays light.
"""

from ..hf.extractor import HiddenStateExtractor
from ..teacher_protocol import Teacher, TeacherBase, as_capable
from . import ensemble, hf_classifier, hf_probe, hf_prompt, openai_server  # noqa: F401  (registration)
from .base import LabelMapping
from .ensemble import EnsembleTeacher
from .hf_classifier import HFClassifierTeacher
from .hf_probe import HFProbeTeacher
from .hf_prompt import HFPromptTeacher
from .loading import load_teacher
from .openai_server import OpenAITeacher
from .spacy_teacher import SpacyTeacher

__all__ = [
    "LabelMapping",
    "Teacher",
    "TeacherBase",
    "as_capable",
    "SpacyTeacher",
    "HFClassifierTeacher",
    "HFProbeTeacher",
    "HFPromptTeacher",
    "HiddenStateExtractor",
    "OpenAITeacher",
    "EnsembleTeacher",
    "load_teacher",
]
