"""Every decorated name is also an entry point, so installed pipelines find them without an import."""
import configparser
import importlib
import subprocess
import sys
from pathlib import Path

import spacy
from spacy.language import Language
from spacy.util import registry

import spacy_distill  # noqa: F401

SETUP_CFG = Path(__file__).parent.parent / "setup.cfg"
GROUPS = {
    "spacy_factories": None,
    "thinc_losses": registry.losses,
    "spacy_readers": registry.readers,
    "spacy_scorers": registry.scorers,
    "spacy_teachers": registry.teachers,
    "spacy_callbacks": registry.callbacks,
    "spacy_architectures": registry.architectures,
    "spacy_text_augmenters": registry.text_augmenters,
    "spacy_misc": registry.misc,
}
OUR_FACTORIES = {"distill_textcat", "distill_textcat_multilabel", "distill_hidden", "semantic_filter"}


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
    factories = {name for name in Language.factories if name.startswith("distill_") or name == "semantic_filter"}
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
        "new = [m for m in set(sys.modules) - before if m.split('.')[0] in ('torch', 'transformers', 'spacy_transformers')]; "
        "print(new); assert not new"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_installed_entry_points_resolve_without_importing_the_plugin():
    """A fresh interpreter finds the factory through the installed entry points alone."""
    code = (
        "import spacy; nlp = spacy.blank('en'); nlp.add_pipe('distill_textcat'); nlp.add_pipe('semantic_filter'); "
        "registry_ok = spacy.util.registry.callbacks.get('spacy-distill.guard_empty_docs.v1'); "
        "from spacy.util import registry; registry.losses.get('spacy-distill.SoftTargetLoss.v1'); "
        "registry.teachers.get('spacy-distill.SpacyTeacher.v1') if hasattr(registry, 'teachers') else None; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
