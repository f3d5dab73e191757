"""A role's session policy file: the scope-down JSON that STS applies to every session.

Loaded when the policy is, so a broken file is a policy error with its location, never a
surprise at 4am when STS refuses the request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jitctl.config.tomlcheck import at
from jitctl.errors import PolicyError
from jitctl.policy.schema import expect_str

SESSION_POLICY_MAX_CHARS = 2048  # what STS accepts for the packed policy text


def load_session_policy(value: Any, source: Path, where: str) -> tuple[str, Path]:
    """The minified JSON text (as STS takes it) and the resolved path."""
    rel = expect_str(value, where, "session_policy")
    path = Path(rel).expanduser()
    if not path.is_absolute():
        path = source.parent / path
    try:
        found = path.is_file()
    except OSError as exc:  # e.g. a name too long to look up
        raise PolicyError(
            f"{at(where, 'session_policy')}: session_policy: {rel[:200]}: {exc.strerror}"
        ) from None
    if not found:
        raise PolicyError(
            f"{at(where, 'session_policy')}: session_policy: {path} does not exist or is not a file"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(
            f"{at(where, 'session_policy')}: session_policy: cannot read {path}: {exc.strerror}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(
            f"{at(where, 'session_policy')}: session_policy: {path} is not UTF-8"
        ) from exc
    except json.JSONDecodeError as exc:
        raise PolicyError(
            f"{at(where, 'session_policy')}: session_policy: {path} is not valid JSON: {exc.msg} "
            f"(line {exc.lineno}, column {exc.colno})"
        ) from exc
    if not isinstance(doc, dict) or not doc.get("Statement"):
        raise PolicyError(
            f"{at(where, 'session_policy')}: session_policy: {path} is not an IAM policy: "
            'it needs a "Statement"'
        )
    text = json.dumps(doc, separators=(",", ":"))
    if len(text) > SESSION_POLICY_MAX_CHARS:
        raise PolicyError(
            f"{at(where, 'session_policy')}: session_policy: {path} is {len(text)} characters minified; STS accepts at "
            f"most {SESSION_POLICY_MAX_CHARS}",
            "use wildcards or fewer statements, or narrow the role's own policies instead",
        )
    return text, path
