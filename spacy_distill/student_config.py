"""Kept for imports of `spacy_distill.student_config`; the module is now
`spacy_distill.training.student_config` (the config sections: `spacy_distill.training.config_templates`)."""
from .training.student_config import (  # noqa: F401
    ARCHITECTURES,
    DEFAULT_CNN_WIDTH,
    DEFAULT_HIDDEN_WIDTH,
    DEFAULT_SUBWORD_WIDTH,
    DEFAULT_VECTOR_ARCH,
    DEFAULT_VECTOR_REASON,
    FACTORIES,
    HIDDEN_LEVELS,
    HIDDEN_LOSSES,
    HIDDEN_PROJECTORS,
    SMALL_DATA_DOCS_PER_LABEL,
    SUBWORD_ARCHITECTURES,
    VECTOR_ARCHITECTURES,
    choose_architecture,
    make_student_config,
    resolve_label_trust,
)
