"""Teachers: models that score texts. Each kind has its own module and a registered builder."""
from .base import LabelMapping, Teacher
from .loading import load_teacher
from .spacy_teacher import SpacyTeacher

__all__ = ["LabelMapping", "Teacher", "SpacyTeacher", "load_teacher"]
