"""jitctl runs on what pyproject.toml declares: a package that only the test extras bring in
(click comes with moto's Flask; typer 0.28 vendors its own as typer._click) must not be
imported by jitctl/ at run time."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import jitctl

# Installed here only through the test extras, never a dependency of jitctl itself.
TEST_ONLY = ("click", "flask", "moto", "pytest")


def _modules() -> list[str]:
    found = pkgutil.walk_packages(jitctl.__path__, "jitctl.")
    # not the demo (it runs moto's server, from the demo extra), nor __main__ (it runs jitctl)
    return sorted(
        m.name
        for m in found
        if not m.name.startswith("jitctl.demo") and m.name != "jitctl.__main__"
    )


def test_jitctl_imports_and_runs_without_the_test_only_packages(tmp_path) -> None:
    """Every module imports, and a command runs, with those packages made unimportable."""
    code = (
        "import importlib, sys\n"
        f"for name in {TEST_ONLY!r}: sys.modules[name] = None\n"
        f"for module in {_modules()!r}: importlib.import_module(module)\n"
        "from jitctl.cli.main import run\n"
        "sys.exit(run(['whoami', '--help']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Usage: jitctl whoami" in done.stdout
