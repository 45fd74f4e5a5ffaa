"""Every example teacher config names registered functions with valid arguments."""
from pathlib import Path

import pytest
from spacy.util import load_config

from spacy_distill.registry import registry

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").rglob("*.cfg"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_teacher_configs_validate(path):
    overrides = {"paths.model": "some/model", "paths.smollm2": "some/folder"}
    config = load_config(path, overrides={k: v for k, v in overrides.items() if k.split(".")[1] in load_config(path).get("paths", {})})
    assert "teacher" in config, f"{path}: no [teacher] block"
    # fill() checks every argument against the registered function without building the model
    filled = registry.fill({"teacher": config["teacher"]}, validate=True)
    assert filled["teacher"]["@teachers"] in registry.teachers.get_all()
