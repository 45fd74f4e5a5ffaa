"""The plugin's own distributions: `python -m build` makes an sdist and a wheel of this checkout,
each installs in a fresh venv from the package index without torch, and `spacy-distill --help`
runs from it."""

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from spacy_distill.about import __version__

REPO = Path(__file__).parent.parent


@pytest.mark.slow
def test_sdist_and_wheel_install_without_torch_and_run_the_cli(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, (build.stdout + build.stderr)[-3000:]
    (sdist,) = dist.glob(f"spacy_distill-{__version__}.tar.gz")
    (wheel,) = dist.glob(f"spacy_distill-{__version__}-py3-none-any.whl")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    tracked = subprocess.run(
        ["git", "ls-files", "spacy_distill"], cwd=REPO, capture_output=True, text=True, check=True
    )
    missing = [f for f in tracked.stdout.split() if f.endswith(".py") and f not in names]
    assert not missing and {"README.md", "setup.cfg", "pyproject.toml"} <= names, missing
    import zipfile

    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    suites = [f for f in tracked.stdout.split() if f.startswith("spacy_distill/audit/suites/")]
    assert suites and set(suites) <= in_wheel, suites  # the audit's default suites ship
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, cli = str(venv / "bin" / "python"), str(venv / "bin" / "spacy-distill")
    for artifact, flags in ((sdist, []), (wheel, ["--force-reinstall", "--no-deps"])):
        install = subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--no-cache-dir", *flags, str(artifact)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert install.returncode == 0, (install.stdout + install.stderr)[-3000:]
        freeze = subprocess.run(
            [python, "-m", "pip", "freeze"], capture_output=True, text=True, check=True
        ).stdout.lower()
        assert (
            f"spacy-distill @ file://{artifact}".lower() in freeze
            or f"spacy_distill @ file://{artifact}".lower() in freeze
        ), freeze
        assert "torch" not in freeze and "transformers" not in freeze, freeze
        helped = subprocess.run([cli, "--help"], capture_output=True, text=True, timeout=300)
        assert (
            helped.returncode == 0 and "annotate" in helped.stdout and "package" in helped.stdout
        ), helped.stderr[-2000:]
        imported = subprocess.run(
            [
                python,
                "-c",
                "import sys, spacy_distill; print(spacy_distill.__version__, 'torch' in sys.modules)",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert imported.stdout.split() == [__version__, "False"], imported.stderr[-2000:]
