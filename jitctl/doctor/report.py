"""The doctor's report: named checks, each pass, fail, skip or warn, and the runner that
fills it. Its own module so that the checks (jitctl.doctor.checks, jitctl.doctor.audit) import it
and not each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jitctl.errors import ExitCode, JitctlError

if TYPE_CHECKING:
    from jitctl.context import Environment

PASS, FAIL, SKIP, WARN = "pass", "fail", "skip", "warn"  # a warning does not fail the doctor


# A check's answer: the detail of a pass, or (SKIP or WARN, detail) or (SKIP or WARN, detail, fix).
CheckResult = str | tuple[str, str] | tuple[str, str, str]


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str | None = None
    exit_code: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
            "exit_code": self.exit_code,
        }


@dataclass
class Doctor:
    env: Environment
    checks: list[Check] = field(default_factory=list)

    def run(self, name: str, fn: Callable[[], CheckResult], *, needs: tuple[str, ...] = ()) -> bool:
        """Run one check; skipped when a check it needs did not pass. ``fn`` returns the
        detail of a pass, or (SKIP or WARN, detail[, fix])."""
        # a warning is a pass with a caveat: what depends on it still runs
        blocked = [c.name for c in self.checks if c.name in needs and c.status not in (PASS, WARN)]
        if blocked:
            self.checks.append(Check(name, SKIP, f"needs: {', '.join(blocked)}"))
            return False
        try:
            result = fn()
        except JitctlError as exc:
            self.checks.append(Check(name, FAIL, exc.message, exc.hint, int(exc.exit_code)))
            return False
        except Exception as exc:  # a check must never crash the doctor
            self.checks.append(
                Check(name, FAIL, f"{type(exc).__name__}: {exc}", None, int(ExitCode.ERROR))
            )
            return False
        if isinstance(result, str):
            result = (PASS, result)
        self.checks.append(Check(name, *result))
        return True

    @property
    def exit_code(self) -> int:
        for check in self.checks:
            if check.status == FAIL:
                return check.exit_code or int(ExitCode.ERROR)
        return 0
