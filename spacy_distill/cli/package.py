from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ..errors import DistillError
from ._app import app


@app.command("package")
def package_cli(
    input_dir: Path = typer.Argument(
        ..., help="The exported pipeline (`spacy-distill export`'s output)"
    ),
    output_dir: Path = typer.Argument(
        ..., help="Folder for the package folder {lang}_{name}-{version}"
    ),
    name: Optional[str] = typer.Option(
        None, "--name", help="Package name (default: meta.json's; spaCy prefixes the language)"
    ),
    version: Optional[str] = typer.Option(
        None, "--version", help="Package version (default: meta.json's)"
    ),
    build: str = typer.Option(
        "sdist,wheel",
        "--build",
        help="Comma-separated formats to build: sdist, wheel; none: the folder only",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing package folder"),
):
    """Build a pip-installable package of an exported student that needs spaCy alone: spaCy's
    own `spacy package`, plus a copy of the plugin's run-time components inside the package
    (where spacy-distill is installed, the installed plugin serves them instead)."""
    from ..packaging.package import package_pipeline

    formats = [f.strip() for f in build.split(",") if f.strip() and f.strip() != "none"]
    try:
        result = package_pipeline(
            input_dir, output_dir, name=name, version=version, formats=formats, force=force
        )
    except DistillError as err:
        msg.fail(str(err), exits=1)
    msg.good(
        f"Package folder {result['package']} (runtime of spacy-distill {result['runtime_version']})"
    )
    msg.info(f"Requirements: {', '.join(result['requirements']) or 'none'}")
    for path in result["built"]:
        msg.good(f"Built {path}")
