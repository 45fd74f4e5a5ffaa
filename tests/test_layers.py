"""The package's layers, read from the import statements of every module (function-level imports
included): a lower layer never imports a higher one, and only the command line prints."""

import ast
from pathlib import Path

import pytest

import spacy_distill

PACKAGE = Path(spacy_distill.__file__).parent

# A package -> the packages of spacy_distill it must never import (directly or in a function).
FORBIDDEN = {
    "data": {
        "teachers",
        "annotation",
        "training",
        "evaluation",
        "filter",
        "packaging",
        "augment",
        "backends",
        "vectors",
        "hf",
        "select",
        "active",
        "audit",
        "cli",
    },
    "hf": {
        "teachers",
        "annotation",
        "training",
        "evaluation",
        "filter",
        "packaging",
        "augment",
        "backends",
        "vectors",
        "select",
        "active",
        "audit",
        "cli",
    },
    "hidden": {
        "teachers",
        "annotation",
        "training",
        "evaluation",
        "filter",
        "packaging",
        "augment",
        "backends",
        "select",
        "active",
        "audit",
        "cli",
    },
    "teachers": {
        "annotation",
        "training",
        "evaluation",
        "filter",
        "packaging",
        "augment",
        "backends",
        "select",
        "active",
        "audit",
        "cli",
    },
    "augment": {
        "annotation",
        "training",
        "evaluation",
        "filter",
        "packaging",
        "backends",
        "select",
        "active",
        "audit",
        "cli",
    },
    # The filter's cascade loads its teacher (a function-level import, only where spacy-distill
    # is installed: the packaged runtime never reaches it), so filter may import teachers.
    "filter": {
        "annotation",
        "training",
        "evaluation",
        "packaging",
        "augment",
        "backends",
        "select",
        "active",
        "audit",
        "cli",
    },
    # Selection reads pools and scores them with a student; the rounds loop (`active`), which
    # annotates and trains, sits above it.
    "select": {
        "teachers",
        "training",
        "evaluation",
        "filter",
        "packaging",
        "augment",
        "backends",
        "active",
        "audit",
        "cli",
    },
}
ANY_LIBRARY_MODULE = {"cli"}


def _imports(path: Path, root: Path = PACKAGE.parent):
    """(line, imported module) for every spacy_distill import in the file under `root`."""
    module = ".".join(path.relative_to(root).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    for node in ast.walk(ast.parse(path.read_text("utf8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for name in targets:
            if name.startswith("spacy_distill."):
                yield node.lineno, name


def _layer(module: str) -> str:
    return module.split(".")[1]


def _library_files():
    # __main__.py is the command line's entry point (`python -m spacy_distill`).
    return sorted(
        p
        for p in PACKAGE.rglob("*.py")
        if _layer(".".join(p.relative_to(PACKAGE.parent).parts)) != "cli"
        and p.name != "__main__.py"
    )


@pytest.mark.parametrize("path", _library_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_no_higher_layer(path):
    layer = _layer(".".join(path.relative_to(PACKAGE.parent).parts))
    forbidden = FORBIDDEN.get(layer, set()) | ANY_LIBRARY_MODULE
    wrong = [f"line {line}: {name}" for line, name in _imports(path) if _layer(name) in forbidden]
    assert not wrong, f"{path.relative_to(PACKAGE)} ({layer}) imports a higher layer: {wrong}"


@pytest.mark.parametrize("path", _library_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_code_does_not_print(path):
    if path.name == "cost_worker.py":
        return  # a subprocess that answers its parent on stdout
    calls = [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text("utf8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    ]
    assert not calls, (
        f"{path.relative_to(PACKAGE)} prints on line(s) {calls}: return or log instead"
    )


def test_the_layer_rules_can_fail(tmp_path):
    """The reader sees a function-level relative import of a higher layer."""
    fake = tmp_path / "spacy_distill" / "data" / "probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from ..teachers.base import TeacherBase\n", encoding="utf8")
    assert [name for _, name in _imports(fake, tmp_path)] == ["spacy_distill.teachers.base"]
