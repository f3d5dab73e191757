"""scripts/mutate names its equivalent mutants and its tests by id and path: when the code
moves, a stale name would silently turn a named equivalent back into a survivor (or a target's
test into nothing), so the names are checked against the tree here, in every run."""

from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _mutate() -> ModuleType:
    loader = SourceFileLoader("jitctl_mutate", str(ROOT / "scripts" / "mutate"))
    spec = importlib.util.spec_from_loader("jitctl_mutate", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["jitctl_mutate"] = module  # its dataclasses look their module up there
    loader.exec_module(module)
    return module


def test_every_named_equivalent_mutant_is_one_the_script_makes():
    mutate = _mutate()
    made = {
        m.id for path, (names, _) in mutate.TARGETS.items() for m in mutate.mutants(path, names)
    }
    stale = sorted(set(mutate.EQUIVALENT) - made)
    assert not stale, f"EQUIVALENT names mutants that no longer exist (lines moved?): {stale}"


def test_every_target_and_its_tests_exist():
    mutate = _mutate()
    missing = [
        test
        for path, (_, tests) in mutate.TARGETS.items()
        for test in (path, *tests)
        if not (ROOT / test.split("::")[0]).exists()
    ]
    assert not missing, f"scripts/mutate names files that are not there: {missing}"
