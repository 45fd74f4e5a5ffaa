"""`spacy-distill package`: an exported student as a pip-installable package that needs spaCy alone.

`spacy package` makes the package, but a student whose pipeline holds the plugin's components
(`semantic_filter`, the static-embedding layers, the empty-doc guard) would then require
`spacy-distill`, which the machine the filter is deployed on may not reach. So this module:

1. runs spaCy's own `package` step to lay out the package folder (its setup.py, meta.json,
   README and data folder, unchanged);
2. copies the plugin's run-time modules (RUNTIME_MODULES: spaCy, thinc and numpy only) into
   the package as the subpackage `spacy_distill_runtime`, which the package's `__init__.py`
   imports, so that `spacy.load` finds the components the config names;
3. drops `spacy-distill` from the package requirements that spaCy derived from the registered
   functions;
4. builds the sdist and wheel with `python -m build`, as `spacy package --build` does.

Where spacy-distill itself is installed, its entry points provide the same names (catalogue
prefers entry points) and the copy registers nothing: importing both would register every
factory twice, which spaCy refuses (E004).
"""

import importlib.util
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import srsly

from ..about import __version__
from ..errors import DistillError
from ..pipeline.meta import write_package_runtime
from .export import check_package_name, check_package_version

logger = logging.getLogger(__name__)

PLUGIN = "spacy-distill"
RUNTIME_PACKAGE = "spacy_distill_runtime"
# The modules a packaged student runs, relative to spacy_distill/. They import spaCy, thinc,
# numpy, srsly and each other only (tests/test_packaging.py checks the closure).
RUNTIME_MODULES = (
    "errors.py",
    "probabilities.py",
    "filter/component.py",
    "filter/record.py",
    "filter/decision.py",
    "filter/escalations.py",
    "filter/settings.py",
    "pipeline/meta.py",
    "pipeline/textcat_lookup.py",
    "ml/batched_ngrams.py",
    "ml/empty_docs.py",
    "ml/pooled_classifier.py",
    "ml/static_embeddings.py",
    "vectors/subwords.py",
    "vectors/table.py",
    "vectors/vocabulary.py",
)
# Importing these registers every name an exported pipeline can refer to.
REGISTERING_MODULES = (
    "filter.component",
    "ml.empty_docs",
    "ml.pooled_classifier",
    "ml.static_embeddings",
)

RUNTIME_INIT = '''"""The run time of a spacy-distill student: the plugin's components, copied from
spacy-distill {version} by `spacy-distill package`, so that this package needs spaCy alone.

Where spacy-distill is installed, its entry points provide the same names and this copy
registers nothing (spaCy refuses a factory registered twice).
"""
import importlib.util

SPACY_DISTILL_VERSION = "{version}"
USES_INSTALLED_PLUGIN = importlib.util.find_spec("spacy_distill") is not None

if not USES_INSTALLED_PLUGIN:
{imports}
'''
SETUP_PACKAGES = "packages=[model_name],"
BUILD_FORMATS = ("sdist", "wheel")


def write_runtime(package_dir: Union[str, Path]) -> Path:
    """Copy the run-time modules into `package_dir/spacy_distill_runtime` (replacing it).
    RETURNS (Path): the runtime folder."""
    source = Path(__file__).parent.parent  # the spacy_distill package
    target = Path(package_dir) / RUNTIME_PACKAGE
    if target.exists():
        shutil.rmtree(target)
    for module in RUNTIME_MODULES:
        destination = target / module
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / module, destination)
    for folder in sorted({p.parent for p in target.rglob("*.py")} - {target}):
        (folder / "__init__.py").touch()
    imports = "\n".join(
        "    from .{} import {}  # noqa: F401  (registers its names)".format(*m.rsplit(".", 1))
        for m in REGISTERING_MODULES
    )
    (target / "__init__.py").write_text(
        RUNTIME_INIT.format(version=__version__, imports=imports), encoding="utf8"
    )
    return target


def runtime_packages() -> List[str]:
    """The dotted (sub)package names of the copied runtime, for setup.py."""
    folders = {str(Path(m).parent) for m in RUNTIME_MODULES} - {"."}
    return [RUNTIME_PACKAGE] + [f"{RUNTIME_PACKAGE}.{f.replace('/', '.')}" for f in sorted(folders)]


def package_pipeline(
    input_dir: Union[str, Path],
    output_dir: Union[str, Path],
    *,
    name: Optional[str] = None,
    version: Optional[str] = None,
    formats: Sequence[str] = BUILD_FORMATS,
    force: bool = False,
) -> Dict[str, Any]:
    """Build an installable package of an exported pipeline that needs spaCy alone.

    input_dir (Union[str, Path]): the exported pipeline (`spacy-distill export`'s output).
    output_dir (Union[str, Path]): where the package folder `{lang}_{name}-{version}` goes
        (made if missing).
    name, version (Optional[str]): override meta.json's (spaCy prefixes the name with the
        language).
    formats (Sequence[str]): any of "sdist", "wheel"; empty: the package folder only.
    force (bool): replace an existing package folder.
    RETURNS (Dict[str, Any]): the package folder, the built files, the requirements and the
        runtime's version.
    """
    from spacy.cli.package import TEMPLATE_INIT, package

    input_dir, output_dir = Path(input_dir), Path(output_dir)
    unknown = [f for f in formats if f not in BUILD_FORMATS]
    if unknown:
        raise DistillError(f"formats {unknown}: expected any of {list(BUILD_FORMATS)}")
    for required in ("config.cfg", "meta.json"):
        if not (input_dir / required).is_file():
            raise DistillError(
                f"{input_dir}: not a saved pipeline (no {required}); pass an exported student"
            )
    meta = srsly.read_json(input_dir / "meta.json")
    name = name or meta.get("name")
    version = version or meta.get("version")
    if not name:
        raise DistillError(f"{input_dir / 'meta.json'}: no name; pass name")
    if not version:
        raise DistillError(f"{input_dir / 'meta.json'}: no version; pass version")
    # Checked before spaCy's package step, which exits on a name it refuses, and before the
    # package folder `{name}-{version}` is made: a version such as "../x" would leave output_dir.
    check_package_name(name)
    check_package_version(version)
    model_name = name if str(name).startswith(f"{meta['lang']}_") else f"{meta['lang']}_{name}"
    main_path = output_dir / f"{model_name}-{version}"
    package_path = main_path / model_name
    if package_path.exists() and not force:
        raise DistillError(
            f"{package_path}: the package folder exists; remove it or pass force=True"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        package(
            input_dir,
            output_dir,
            name=name,
            version=version,
            create_sdist=False,
            create_wheel=False,
            force=force,
            silent=True,
        )
    except SystemExit as err:  # spaCy's package step exits on its own checks
        raise DistillError(f"{input_dir}: spaCy's package step failed (exit {err.code})") from err
    write_runtime(package_path)
    (package_path / "__init__.py").write_text(
        TEMPLATE_INIT.format(
            imports=f"from . import {RUNTIME_PACKAGE}  # noqa: F401  (the plugin's components)"
        ),
        encoding="utf8",
    )
    setup_py = main_path / "setup.py"
    setup = setup_py.read_text(encoding="utf8")
    if SETUP_PACKAGES not in setup:
        raise DistillError(
            f"{setup_py}: spaCy's package template changed ({SETUP_PACKAGES!r} not found); "
            "spacy-distill cannot add its runtime to the package"
        )
    subpackages = " + ".join(f"[model_name + '.{p}']" for p in runtime_packages())
    setup_py.write_text(
        setup.replace(SETUP_PACKAGES, f"packages=[model_name] + {subpackages},"), encoding="utf8"
    )
    package_meta = srsly.read_json(main_path / "meta.json")
    requirements = [
        r for r in package_meta.get("requirements", []) if _requirement_name(r) != PLUGIN
    ]
    if not any(_requirement_name(r) == "spacy" for r in requirements):
        # spaCy 3.8's template no longer requires spaCy itself; the runtime does
        requirements.insert(
            0, f"spacy{package_meta.get('spacy_version') or f'>={_spacy_version()}'}"
        )
    package_meta["requirements"] = requirements
    # Which plugin the copied run time came from, beside the distillation card.
    write_package_runtime(package_meta, __version__, RUNTIME_PACKAGE)
    srsly.write_json(main_path / "meta.json", package_meta)
    built = [_build(main_path, fmt) for fmt in formats]
    return {
        "package": str(main_path),
        "name": model_name,
        "version": version,
        "built": [str(p) for p in built],
        "requirements": requirements,
        "runtime_version": __version__,
    }


def _spacy_version() -> str:
    import spacy

    return spacy.__version__


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _build(main_path: Path, fmt: str) -> Path:
    """Build one format with `python -m build`, without an isolated environment where
    setuptools is at hand (no index needed), and RETURN the file it made."""
    if importlib.util.find_spec("build") is None:
        raise DistillError(
            f"building a {fmt} needs the `build` package: pip install build (or spacy-distill[package])"
        )
    dist = main_path / "dist"
    before = set(dist.glob("*")) if dist.exists() else set()
    command = [sys.executable, "-m", "build", ".", f"--{fmt}"]
    if (
        importlib.util.find_spec("setuptools") is not None
        and importlib.util.find_spec("wheel") is not None
    ):
        command.append("--no-isolation")
    logger.info("building the %s of %s", fmt, main_path.name)
    result = subprocess.run(command, cwd=main_path, capture_output=True, text=True)
    if result.returncode != 0:
        raise DistillError(
            f"{main_path}: building the {fmt} failed:\n{(result.stdout + result.stderr)[-2000:]}"
        )
    made = sorted(set(dist.glob("*.whl" if fmt == "wheel" else "*.tar.gz")) - before)
    if not made:  # rebuilt with the same name: the newest file of that kind
        made = sorted(
            dist.glob("*.whl" if fmt == "wheel" else "*.tar.gz"), key=lambda p: p.stat().st_mtime
        )[-1:]
    return made[-1]
