"""Training a student: the distillation losses, the target corpus reader, the scorer, temperature
calibration and the student configs (the sections per architecture part and their composition)."""

from .student_config import (
    ARCHITECTURES,
    DEFAULT_VECTOR_ARCH,
    FACTORIES,
    HIDDEN_LEVELS,
    HIDDEN_LOSSES,
    HIDDEN_PROJECTORS,
    SUBWORD_ARCHITECTURES,
    VECTOR_ARCHITECTURES,
    choose_architecture,
    make_student_config,
    resolve_label_trust,
)

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_VECTOR_ARCH",
    "FACTORIES",
    "HIDDEN_LEVELS",
    "HIDDEN_LOSSES",
    "HIDDEN_PROJECTORS",
    "SUBWORD_ARCHITECTURES",
    "VECTOR_ARCHITECTURES",
    "choose_architecture",
    "make_student_config",
    "resolve_label_trust",
]
