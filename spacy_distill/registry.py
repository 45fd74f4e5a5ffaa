"""The plugin's own registries.

`teachers` lives on spaCy's registry so that config blocks can say
`@teachers = "spacy-distill.SpacyTeacher.v1"`; its entry-point group is `spacy_teachers`.
"""
from spacy.util import registry

if not hasattr(registry, "teachers"):
    registry.create("teachers", entry_points=True)

teachers = registry.teachers

__all__ = ["registry", "teachers"]
