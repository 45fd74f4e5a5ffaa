"""The plugin's own registries, on spaCy's registry so that config blocks can name them.

`spacy_distill_teachers` holds teachers (`@spacy_distill_teachers = "spacy-distill.SpacyTeacher.v1"`),
`spacy_distill_text_augmenters` text -> texts augmenters for `spacy-distill augment`
(`@spacy_distill_text_augmenters = "spacy-distill.Leetspeak.v1"`; spaCy's own `augmenters`
registry holds Example augmenters for training, with another signature) and
`spacy_distill_selectors` the strategies of `spacy-distill select`
(`@spacy_distill_selectors = "spacy-distill.Uncertainty.v1"`). Their entry-point groups have the
same names.

spaCy's registry is one namespace shared by every plugin, so the registries carry the plugin's
prefix. The bare names of earlier versions, `teachers` and `text_augmenters`, stay as aliases:
the same registry objects, so `@teachers = ...` in an existing config resolves to the same
functions, and a function registered under either name is found under both. Where another
plugin already took a bare name, the alias is left to it (a warning says so) and configs must
use the prefixed name.
"""

import logging
from typing import Tuple

import catalogue
from spacy.util import registry

logger = logging.getLogger(__name__)

PREFIX = "spacy_distill"
TEACHERS = f"{PREFIX}_teachers"
TEXT_AUGMENTERS = f"{PREFIX}_text_augmenters"
SELECTORS = f"{PREFIX}_selectors"
# Prefixed name -> the bare alias kept for configs written for earlier versions (and, for the
# selectors, which came later, the same short form).
ALIASES = {TEACHERS: "teachers", TEXT_AUGMENTERS: "text_augmenters", SELECTORS: "selectors"}


def _create(name: str, alias: str) -> catalogue.Registry:
    """The registry `name` on spaCy's registry (created once; a reimport reuses it), with `alias`
    pointing at it unless another plugin holds that name."""
    if not hasattr(registry, name):
        # catalogue's namespace ("spacy_distill", kind) reads the entry-point group `name`.
        setattr(registry, name, catalogue.create(PREFIX, alias, entry_points=True))
    created = getattr(registry, name)
    existing = getattr(registry, alias, None)
    if existing is None:
        setattr(registry, alias, created)
    elif existing is not created:
        logger.warning(
            "spaCy's registry already has a '%s' registry that is not spacy-distill's (another plugin's): "
            "configs must name spacy-distill's as @%s",
            alias,
            name,
        )
    return created


def block_keys(name: str) -> Tuple[str, str]:
    """The keys by which a config block names registry `name`: `@name` and `@alias`."""
    return f"@{name}", f"@{ALIASES[name]}"


teachers, text_augmenters, selectors = (_create(name, alias) for name, alias in ALIASES.items())

__all__ = [
    "ALIASES",
    "SELECTORS",
    "TEACHERS",
    "TEXT_AUGMENTERS",
    "block_keys",
    "registry",
    "selectors",
    "teachers",
    "text_augmenters",
]
