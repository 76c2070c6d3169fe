"""The import contract (pyproject.toml, [tool.importlinter]): layers only point down."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(source_root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                          cwd=source_root, env=env, capture_output=True, text=True, timeout=300)


def test_the_code_keeps_the_layer_contract():
    result = _lint(REPO / "src")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The same check on a copy where the data layer imports the CLI: it must fail and name the import."""
    copy = tmp_path / "src"
    shutil.copytree(REPO / "src" / "visrep", copy / "visrep", ignore=shutil.ignore_patterns("__pycache__"))
    folders = copy / "visrep" / "data" / "folders.py"
    folders.write_text(folders.read_text() + "\nimport visrep.cli  # noqa: E402  (deliberately upward)\n")
    result = _lint(copy)
    assert result.returncode != 0
    assert "visrep.data is not allowed to import visrep.cli" in result.stdout
