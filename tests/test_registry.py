"""Every decorated name is also an entry point, so installed pipelines find them without an import."""

import configparser
import importlib
import subprocess
import sys
from pathlib import Path

from spacy.language import Language
from spacy.util import registry

import spacy_distill  # noqa: F401

SETUP_CFG = Path(__file__).parent.parent / "setup.cfg"
GROUPS = {
    "spacy_factories": None,
    "thinc_losses": registry.losses,
    "spacy_readers": registry.readers,
    "spacy_scorers": registry.scorers,
    # The plugin's own registries read the group of their own (prefixed) name.
    registry.spacy_distill_teachers.entry_point_namespace: registry.spacy_distill_teachers,
    "spacy_callbacks": registry.callbacks,
    "spacy_architectures": registry.architectures,
    registry.spacy_distill_text_augmenters.entry_point_namespace: registry.spacy_distill_text_augmenters,
    registry.spacy_distill_selectors.entry_point_namespace: registry.spacy_distill_selectors,
    "spacy_misc": registry.misc,
}
OUR_FACTORIES = {
    "distill_textcat",
    "distill_textcat_multilabel",
    "distill_hidden",
    "semantic_filter",
}


def _python(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (nothing of this process registered)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def _entry_points():
    parser = configparser.ConfigParser()
    parser.optionxform = str
    parser.read(SETUP_CFG)
    section = parser["options.entry_points"]
    result = {}
    for group in section:
        lines = [line.strip() for line in section[group].strip().splitlines() if line.strip()]
        result[group] = dict(line.split(" = ", 1) for line in lines)
    return result


def test_every_decorated_name_is_an_entry_point():
    entry_points = _entry_points()
    factories = {
        name
        for name in Language.factories
        if name.startswith("distill_") or name == "semantic_filter"
    }
    assert set(entry_points["spacy_factories"]) == factories == OUR_FACTORIES
    for group, reg in GROUPS.items():
        if reg is None:
            continue
        ours = {name for name in reg.get_all() if name.startswith("spacy-distill.")}
        assert set(entry_points.get(group, {})) == ours, group


def test_entry_points_point_at_the_registered_objects():
    for group, points in _entry_points().items():
        if group == "console_scripts":
            continue
        for name, target in points.items():
            module_name, attr = target.split(":")
            obj = getattr(importlib.import_module(module_name), attr)
            if group == "spacy_factories":
                assert Language.get_factory_meta(name).factory == name
            else:
                assert GROUPS[group].get(name) is obj, (group, name)


def test_import_loads_neither_torch_nor_transformers_beyond_spacy():
    code = (
        "import sys; import spacy; before = set(sys.modules); import spacy_distill; "
        "new = [m for m in set(sys.modules) - before if m.split('.')[0] in ('torch', "
        "'transformers', 'spacy_transformers')]; "
        "print(new); assert not new"
    )
    result = _python(code)
    assert result.returncode == 0, result.stdout + result.stderr


def test_installed_entry_points_resolve_without_importing_the_plugin():
    """A fresh interpreter finds the factory through the installed entry points alone."""
    code = (
        "import spacy; nlp = spacy.blank('en'); nlp.add_pipe('distill_textcat'); nlp.add_pipe('semantic_filter'); "
        "registry_ok = spacy.util.registry.callbacks.get('spacy-distill.guard_empty_docs.v1'); "
        "from spacy.util import registry; registry.losses.get('spacy-distill.SoftTargetLoss.v1'); "
        "registry.spacy_distill_teachers.get('spacy-distill.SpacyTeacher.v1') if "
        "hasattr(registry, 'spacy_distill_teachers') else None; print('ok')"
    )
    result = _python(code)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_the_prefixed_registries_are_primary_and_the_bare_names_alias_them():
    from spacy_distill.registry import ALIASES, TEACHERS, TEXT_AUGMENTERS, block_keys

    assert ALIASES == {
        "spacy_distill_teachers": "teachers",
        "spacy_distill_text_augmenters": "text_augmenters",
        "spacy_distill_selectors": "selectors",
    }
    for name, alias in ALIASES.items():
        assert getattr(registry, alias) is getattr(registry, name)
        assert getattr(registry, name).entry_point_namespace == name
    assert block_keys(TEXT_AUGMENTERS) == ("@spacy_distill_text_augmenters", "@text_augmenters")
    teacher = "spacy-distill.SpacyTeacher.v1"
    configure = importlib.import_module(
        "spacy_distill.teachers.spacy_teacher"
    ).configure_spacy_teacher
    assert registry.get(TEACHERS, teacher) is registry.get("teachers", teacher) is configure
    # Both spellings build the same augmenter from a config block.
    from thinc.api import Config

    from spacy_distill.augment.noise import CaseNoise

    text = "\n".join(
        f'[{key[1:]}]\n{key} = "spacy-distill.CaseNoise.v1"' for key in block_keys(TEXT_AUGMENTERS)
    )
    built = registry.resolve(Config().from_str(text))
    assert isinstance(built["spacy_distill_text_augmenters"], CaseNoise) and isinstance(
        built["text_augmenters"], CaseNoise
    )
    # A function registered under the alias is found under the prefixed name, and the other way round.
    registry.teachers("test.AliasTeacher.v1", func=len)
    registry.spacy_distill_text_augmenters("test.PrefixedAugmenter.v1", func=len)
    try:
        assert registry.get(TEACHERS, "test.AliasTeacher.v1") is len
        assert registry.get("text_augmenters", "test.PrefixedAugmenter.v1") is len
    finally:
        from catalogue import _remove

        _remove((*registry.teachers.namespace, "test.AliasTeacher.v1"))
        _remove((*registry.text_augmenters.namespace, "test.PrefixedAugmenter.v1"))


def test_a_bare_name_another_plugin_holds_is_left_to_it():
    code = (
        "import catalogue; from spacy.util import registry; "
        "other = catalogue.create('other_plugin', 'teachers'); registry.teachers = other; "
        "import spacy_distill; "
        "assert registry.teachers is other and registry.spacy_distill_teachers is not other; "
        "assert registry.text_augmenters is registry.spacy_distill_text_augmenters; print('ok')"
    )
    result = _python(code)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
    assert "configs must name spacy-distill's as @spacy_distill_teachers" in result.stderr
