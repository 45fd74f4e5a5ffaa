"""The plugin's own registries.

`teachers` lives on spaCy's registry so that config blocks can say
`@teachers = "spacy-distill.SpacyTeacher.v1"`; its entry-point group is `spacy_teachers`.
`text_augmenters` holds text -> texts augmenters for `spacy-distill augment`
(`@text_augmenters = "spacy-distill.Leetspeak.v1"`, group `spacy_text_augmenters`); spaCy's own
`augmenters` registry holds Example augmenters for training, with another signature.
"""
from spacy.util import registry

if not hasattr(registry, "teachers"):
    registry.create("teachers", entry_points=True)

if not hasattr(registry, "text_augmenters"):
    registry.create("text_augmenters", entry_points=True)

teachers = registry.teachers
text_augmenters = registry.text_augmenters

__all__ = ["registry", "teachers", "text_augmenters"]
