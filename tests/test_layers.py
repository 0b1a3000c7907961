"""The package's layers import only downwards (import-linter's contract in pyproject.toml), no module-level
function grows past ~80 lines, and the package import pulls in no jax (the CLIs set XLA flags first)."""

import ast
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80
#: config-like functions (a list of settings, not logic)
LONG_ALLOWED = {("config.py", "base_config")}


def _lint(root: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    exe = shutil.which("lint-imports") or "lint-imports"
    return subprocess.run([exe, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_layer_contract_holds():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "jaxrl_reason", tmp_path / "jaxrl_reason")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    flops = tmp_path / "jaxrl_reason" / "models" / "flops.py"
    flops.write_text(flops.read_text() + "\nfrom jaxrl_reason.training import loop  # upward: models -> training\n")
    out = _lint(tmp_path)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout and "jaxrl_reason.models.flops -> jaxrl_reason.training" in out.stdout


def test_no_function_is_longer_than_the_limit():
    long = []
    for path in (ROOT / "jaxrl_reason").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and (path.name, node.name) not in LONG_ALLOWED:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_importing_the_package_imports_no_jax():
    code = "import sys, jaxrl_reason as jr; assert 'jax' not in sys.modules; jr.make; assert 'jax' in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
