"""The public Python API: one function per command, and the runnable example of docs/api.md."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import spacy_distill

ROOT = Path(__file__).parent.parent
API_DOC = ROOT / "docs" / "api.md"


def test_every_command_has_a_documented_public_function():
    from spacy_distill.cli import app

    commands = {command.name for command in app.registered_commands}
    doc = API_DOC.read_text("utf8")
    documented = dict(re.findall(r"^\| `([\w-]+)` \| `(\w+)\(", doc, flags=re.M))
    assert commands == set(documented), "docs/api.md's table must list every command"
    for command, function in documented.items():
        assert function in spacy_distill.__all__, f"{command}: {function} is not exported"
        assert callable(getattr(spacy_distill, function))
        assert getattr(spacy_distill, function).__doc__, f"{function} has no docstring"


def test_the_package_ships_its_type_hints():
    assert (Path(spacy_distill.__file__).parent / "py.typed").exists()


@pytest.mark.slow
def test_the_api_example_runs_and_the_student_follows_its_teacher(tmp_path):
    code = re.search(r"```python\n(.*?)```", API_DOC.read_text("utf8"), flags=re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train 600 docs, 600 with gold" in result.stdout
    agreement = float(re.search(r"agreement with the teacher: ([0-9.]+)", result.stdout).group(1))
    # The keyword teacher is learnable by a bag of words: a student that did not learn from it
    # (all "ham") agrees on about 0.87 of the dev texts.
    assert agreement > 0.9
    assert (tmp_path / "example.py").exists()
    assert list(tmp_path.glob("*/filter/meta.json")), (
        "the example's export did not write a pipeline"
    )
