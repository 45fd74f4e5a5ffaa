"""Every example config names registered functions with valid arguments."""

from pathlib import Path

import pytest
from spacy.util import load_config

from spacy_distill.registry import registry

EXAMPLES = Path(__file__).parent.parent / "examples"
TEACHER_EXAMPLES = sorted((EXAMPLES / "teachers").glob("*.cfg"))
AUGMENT_EXAMPLES = sorted((EXAMPLES / "augment").glob("*.cfg"))
PLACEHOLDERS = {"paths.model": "some/model", "paths.smollm2": "some/folder"}


def _load(path: Path):
    paths = load_config(path).get("paths", {})
    return load_config(
        path, overrides={k: v for k, v in PLACEHOLDERS.items() if k.split(".")[1] in paths}
    )


def test_every_example_is_checked():
    assert set(EXAMPLES.rglob("*.cfg")) == set(TEACHER_EXAMPLES) | set(AUGMENT_EXAMPLES)
    assert TEACHER_EXAMPLES and AUGMENT_EXAMPLES


@pytest.mark.parametrize("path", TEACHER_EXAMPLES, ids=lambda p: p.name)
def test_example_teacher_configs_validate(path):
    config = _load(path)
    assert "teacher" in config, f"{path}: no [teacher] block"
    # fill() checks every argument against the registered function without building the model
    filled = registry.fill({"teacher": config["teacher"]}, validate=True)
    assert filled["teacher"]["@teachers"] in registry.teachers.get_all()


@pytest.mark.parametrize("path", AUGMENT_EXAMPLES, ids=lambda p: p.name)
def test_example_augment_configs_validate(path):
    config = _load(path)
    assert "augment" in config, f"{path}: no [augment] block"
    filled = registry.fill({"steps": config["augment"]["steps"]}, validate=True)
    for step in filled["steps"].values():
        assert step["@text_augmenters"] in registry.text_augmenters.get_all()
