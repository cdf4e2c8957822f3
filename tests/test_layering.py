"""The layering contract in pyproject.toml holds, and it catches an import that runs back up a layer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("bandit", "proxy", "policies", "loadtest")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path, so its packages are the ones analysed.
    environ = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _add_import(module: Path, statement: str) -> None:
    source = module.read_text()
    module.write_text(
        source.replace(
            "from __future__ import annotations\n", f"from __future__ import annotations\n\n{statement}\n", 1
        )
    )


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "broken"),
    [
        ("bandit/core/models.py", "import proxy.snapshot", "Layers"),
        ("proxy/headers.py", "import litestar", "The proxy imports no web framework"),
        ("bandit/api/system.py", "import proxy.health", "Only the composition root"),
        ("policies/thompson.py", "import bandit.core.models", "policies is maths only"),
        ("bandit/store/keys.py", "import bandit.store.counters", "No cycle"),
    ],
)
def test_an_import_against_the_layering_breaks_a_contract(tree: Path, module: str, statement: str, broken: str) -> None:
    _add_import(tree / module, statement)
    result = _lint(tree)
    assert result.returncode != 0
    broken_lines = [line for line in result.stdout.splitlines() if "BROKEN" in line]
    assert any(line.startswith(broken) for line in broken_lines), result.stdout
