"""The documentation site builds with warnings as errors (mkdocs.yml; issue 17, item 8).

A broken link between pages, a page the nav points at that is gone, or a docstring the API
reference cannot parse (e.g. a parameter documented that the signature lacks) fails here, so
CI (which runs the test suite) fails. Skipped when the `docs` extra is not installed.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_docs_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("mkdocs_jupyter")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(warnings or [proc.stderr[-3000:]])
    # the three generated parts are there: a guide page, a notebook, an API page with a docstring
    assert (site / "md" / "index.html").exists()
    assert (site / "notebooks" / "01_sivqlm" / "index.html").exists()
    api = (site / "api" / "qdyn.models" / "index.html").read_text()
    assert "qdyn.models.base.energy_and_forces" in api and "eV" in api
    assert (site / "benchmarks" / "index.html").exists()
