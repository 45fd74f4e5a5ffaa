"""`spacy-distill package`: a student's package carries the plugin's run time, so that it needs spaCy
alone. The copied modules import nothing outside themselves; without the plugin the copy runs the
exported filter with the same cats and verdicts; with the plugin installed the copy stays unused
(no factory registered twice); the built wheel holds the copy and requires spaCy, not
spacy-distill; bad input fails before anything is built. (tests/test_project_spam_filter.py
installs such a wheel alone in a fresh venv.)"""

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import spacy

from spacy_distill.errors import DistillError
from spacy_distill.packaging.export import export_pipeline
from spacy_distill.packaging.package import (
    RUNTIME_MODULES,
    RUNTIME_PACKAGE,
    package_pipeline,
    write_runtime,
)
from spacy_distill.training.student_config import make_student_config
from spacy_distill.vectors import build_word_vectors

from .conftest import train_config_in_process
from .test_students import _invoke
from .test_word_vectors import FeatureTeacher, polarity_target_file

SOURCE = Path(__file__).parent.parent / "spacy_distill"
TEXTS = [
    "wonderful film",
    "terribble plot",
    "",
    "   ",
    "zzzz qqqq",
    "good good bad",
    "soooo gooood",
]
# Third-party packages the run time may import: spaCy and what spaCy itself requires.
RUNTIME_DEPENDENCIES = {"spacy", "thinc", "numpy", "srsly", "murmurhash", "catalogue"}
# Imported inside functions that a packaged student never calls without them (word-vector
# fitting; the cascade teacher, which names the plugin in its error).
LAZY_ONLY = {"scipy", "spacy_distill"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A subword student with a filter, exported: every plugin name a package can refer to."""
    root = tmp_path_factory.mktemp("packaging")
    train = polarity_target_file(root / "train.spacy", n=48, seed=0)
    vectors = root / "word_vectors"
    build_word_vectors(
        FeatureTeacher(), [train], vectors, dims=16, show_progress=False, subword_buckets=256
    )
    config = make_student_config(train, arch="static-subword", vectors=vectors, max_steps=10)
    nlp, _ = train_config_in_process(config, train, steps=10)
    nlp.meta["name"], nlp.meta["version"] = "polarity_filter", "0.2.0"
    nlp.to_disk(root / "student")
    export_pipeline(
        root / "student",
        root / "exported",
        add_filter=True,
        actions={"negative": "block"},
        check_texts=TEXTS,
    )
    here = spacy.load(root / "exported")
    expected = [(doc.cats, doc._.verdict) for doc in here.pipe(TEXTS)]
    return {"root": root, "path": root / "exported", "expected": expected}


def _imports(path: Path):
    """(module, level, top-level name, inside a function) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf8"))
    functions = [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    nested = {id(child) for f in functions for child in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, 0, alias.name.split(".")[0], id(node) in nested
        elif isinstance(node, ast.ImportFrom):
            yield (
                node.module or "",
                node.level,
                (node.module or "").split(".")[0],
                id(node) in nested,
            )


def test_the_runtime_modules_import_only_each_other_spacy_and_the_standard_library():
    modules = {m[: -len(".py")].replace("/", ".") for m in RUNTIME_MODULES}
    for module_file in RUNTIME_MODULES:
        package = module_file.split("/")[:-1]
        for name, level, top, lazy in _imports(SOURCE / module_file):
            if level:
                base = package[: len(package) - (level - 1)]
                target = ".".join(base + ([name] if name else []))
                assert target in modules or any(m.startswith(target + ".") for m in modules), (
                    module_file,
                    name,
                )
            elif top not in sys.stdlib_module_names:
                assert top in RUNTIME_DEPENDENCIES or (top in LAZY_ONLY and lazy), (
                    module_file,
                    name,
                )


RUN_WITHOUT_PLUGIN = """
import json, sys
# No plugin, no torch: as in a venv that holds spaCy alone. This venv's entry points still name
# the plugin, so they are switched off too.
for blocked in ("spacy_distill", "torch", "transformers", "spacy_transformers"):
    sys.modules[blocked] = None
import catalogue
catalogue.Registry.get_entry_point = lambda self, name, default=None: default
catalogue.Registry.get_entry_points = lambda self: {}
sys.path.insert(0, sys.argv[1])
import fake_model
import spacy
from spacy.util import registry
nlp = spacy.load(sys.argv[2])
texts = json.loads(sys.argv[3])
print(json.dumps({
    "uses_plugin": fake_model.spacy_distill_runtime.USES_INSTALLED_PLUGIN,
    "factory_module": registry.factories.get("semantic_filter").__module__,
    "results": [(doc.cats, doc._.verdict) for doc in nlp.pipe(texts)],
    "plugin_modules": [m for m in sys.modules if m.startswith("spacy_distill") and sys.modules[m] is not None],
}))
"""


def test_the_copied_runtime_runs_the_exported_filter_without_the_plugin(exported, tmp_path):
    (tmp_path / "fake_model").mkdir()
    (tmp_path / "fake_model" / "__init__.py").write_text(f"from . import {RUNTIME_PACKAGE}\n")
    runtime = write_runtime(tmp_path / "fake_model")
    assert sorted(
        str(p.relative_to(runtime)) for p in runtime.rglob("*.py") if p.name != "__init__.py"
    ) == sorted(RUNTIME_MODULES)
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_WITHOUT_PLUGIN,
            str(tmp_path),
            str(exported["path"]),
            json.dumps(TEXTS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["uses_plugin"] is False and result["plugin_modules"] == []
    assert result["factory_module"] == f"fake_model.{RUNTIME_PACKAGE}.filter.component"
    for (cats, verdict), (expected_cats, expected_verdict) in zip(
        result["results"], exported["expected"]
    ):
        assert verdict == expected_verdict and cats == pytest.approx(expected_cats, abs=1e-7)


LOAD_WITH_PLUGIN = """
import json, sys
sys.path.insert(0, sys.argv[1])
import spacy, spacy_distill  # the plugin first, then the package: nothing registered twice
nlp = __import__(sys.argv[2]).load()
texts = json.loads(sys.argv[3])
runtime = sys.modules[sys.argv[2] + ".spacy_distill_runtime"]
print(json.dumps({"uses_plugin": runtime.USES_INSTALLED_PLUGIN, "version": runtime.SPACY_DISTILL_VERSION,
                  "results": [(doc.cats, doc._.verdict) for doc in nlp.pipe(texts)]}))
"""


def test_package_builds_a_wheel_that_carries_the_runtime_and_requires_spacy_alone(
    exported, tmp_path
):
    result = package_pipeline(exported["path"], tmp_path / "packages", formats=["wheel"])
    assert result["name"] == "en_polarity_filter" and result["version"] == "0.2.0"
    assert [r.split(">")[0] for r in result["requirements"]] == ["spacy"]
    (wheel,) = result["built"]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read("en_polarity_filter-0.2.0.dist-info/METADATA").decode()
        init = archive.read("en_polarity_filter/__init__.py").decode()
    for module in RUNTIME_MODULES:
        assert f"en_polarity_filter/{RUNTIME_PACKAGE}/{module}" in names
    assert f"en_polarity_filter/{RUNTIME_PACKAGE}/__init__.py" in names
    assert any(n.endswith("textcat/model") for n in names)
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist")]
    assert len(requires) == 1 and "spacy" in requires[0] and "distill" not in requires[0]
    assert f"from . import {RUNTIME_PACKAGE}" in init
    meta = json.loads((Path(result["package"]) / "meta.json").read_text())
    assert meta["spacy_distill"]["runtime"]["version"] == result["runtime_version"]
    assert "card" in meta["spacy_distill"]  # export's card is kept
    # Beside an installed plugin, the package loads through the plugin's names, the same results.
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_WITH_PLUGIN,
            result["package"],
            "en_polarity_filter",
            json.dumps(TEXTS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert loaded["uses_plugin"] is True and loaded["version"] == result["runtime_version"]
    for (cats, verdict), (expected_cats, expected_verdict) in zip(
        loaded["results"], exported["expected"]
    ):
        assert verdict == expected_verdict and cats == pytest.approx(expected_cats, abs=1e-7)


def test_bad_package_input_fails_before_anything_is_built(exported, tmp_path):
    with pytest.raises(DistillError, match="not a saved pipeline"):
        package_pipeline(tmp_path, tmp_path / "out", formats=[])
    with pytest.raises(DistillError, match="not a package name spaCy accepts"):
        package_pipeline(exported["path"], tmp_path / "out", name="my-filter", formats=[])
    with pytest.raises(DistillError, match="expected any of"):
        package_pipeline(exported["path"], tmp_path / "out", formats=["egg"])
    package_pipeline(exported["path"], tmp_path / "out", name="first", formats=[])
    with pytest.raises(DistillError, match="exists"):
        package_pipeline(exported["path"], tmp_path / "out", name="first", formats=[])
    assert not list((tmp_path / "out").rglob("*.whl"))
    result, output = _invoke("package", tmp_path / "nowhere", tmp_path / "out")
    assert result.exit_code == 1 and "nowhere: not a saved pipeline" in output
    result, output = _invoke(
        "package",
        exported["path"],
        tmp_path / "out",
        "--name",
        "first",
        "--build",
        "none",
        "--force",
    )
    assert result.exit_code == 0 and "Requirements: spacy" in output
