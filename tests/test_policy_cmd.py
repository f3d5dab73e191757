"""`jitctl policy validate` and `jitctl policy explain`: the installed CLI, and jitctl.policy.explain."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from jitctl.errors import UsageError
from jitctl.policy.explain import explain, validate
from jitctl.policy.load import check_policy, load_policy
from jitctl.timeutil import parse_duration
from tests.conftest import clean_env

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"
RAW = tomllib.loads((POLICIES / "prod.toml").read_text(encoding="utf-8"))
SESSION_DOC = json.loads((POLICIES / "session-policies" / "readonly.json").read_text())
ARN = "arn:aws:iam::123456789012:role/app"


def jitctl_exe() -> str:
    local = Path(sys.executable).with_name("jitctl")
    exe = str(local) if local.exists() else shutil.which("jitctl")
    assert exe, "jitctl is not installed (pip install -e .)"
    return exe


def run(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [jitctl_exe(), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(XDG_CONFIG_HOME=str(cwd / ".no-config"), NO_COLOR="1", **env),
        timeout=60,
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def line_of(path: Path, text: str) -> int:
    return path.read_text().splitlines().index(text) + 1


ROLE = (
    f'[roles.{{name}}]\narn = "{ARN}"\n{{body}}\n[roles.{{name}}.approval]\napprovers = [{{who}}]\n'
)


def role(name: str, body: str = "", who: str = '"a@example.com"') -> str:
    return ROLE.format(name=name, body=body, who=who)


@pytest.fixture
def broken(tmp_path) -> Path:
    """A directory of two files, each with its own mistake."""
    write(tmp_path / "set" / "a.toml", "version = 1\n" + role("app", 'max_duraton = "2h"'))
    write(tmp_path / "set" / "b.toml", "version = 1\n" + role("web", 'max_duration = "20h"'))
    return tmp_path / "set"


# --- validate: the CLI ------------------------------------------------------------------------


def test_shipped_policies_validate():
    out = run("policy", "validate", "policies")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ""
    files = sorted(POLICIES.glob("*.toml"))
    assert f"{len(files)} file{'s' * (len(files) != 1)}, {len(RAW['roles'])} roles" in out.stderr
    assert out.stderr.strip().endswith(": ok")


def test_every_error_of_every_file_is_reported_with_file_and_line(broken):
    out = run("policy", "validate", "set", cwd=broken.parent)
    assert out.returncode == 2
    a = line_of(broken / "a.toml", 'max_duraton = "2h"')  # the keys' own lines
    b = line_of(broken / "b.toml", 'max_duration = "20h"')
    assert out.stdout.splitlines() == [
        f"set/a.toml:{a}: role 'app': unknown key 'max_duraton'; did you mean 'max_duration'?",
        f"set/b.toml:{b}: role 'web': max_duration must be between 15m "
        "and 12h (STS session limits), got '20h'",
    ]
    assert "2 errors" in out.stderr


def test_errors_in_several_roles_groups_and_top_level_keys_of_one_file(tmp_path):
    path = write(
        tmp_path / "p.toml",
        'version = 1\nrolez = 1\n[groups]\nops = ["not an email"]\n'
        + role("one", 'max_duraton = "1h"')
        + role("two", who='"group:ops"')
        + role("three", who='"group:nope"'),
    )
    result = check_policy(path)
    messages = [str(e) for e in result.errors]
    assert len(messages) == 4, messages  # group:ops is not "missing": its own error says why
    assert "unknown key 'rolez'; did you mean 'roles'?" in messages[0]
    assert "groups.ops: 'not an email' is neither" in messages[1]
    assert "role 'one': unknown key 'max_duraton'" in messages[2]
    assert "role 'three': approval: approvers: group 'nope' does not exist" in messages[3]
    assert result.role_names == ("one", "two", "three") and result.policy is None
    with pytest.raises(UsageError, match="rolez"):  # load_policy: still the first one
        load_policy(path)


def test_json_output(broken):
    out = run("policy", "validate", "--json", "set", cwd=broken.parent)
    assert out.returncode == 2
    doc = json.loads(out.stdout)
    assert doc["ok"] is False
    assert doc["files"] == ["set/a.toml", "set/b.toml"]
    assert doc["roles"] == ["app", "web"]
    assert [(e["file"], e["line"]) for e in doc["errors"]] == [
        ("set/a.toml", line_of(broken / "a.toml", 'max_duraton = "2h"')),
        ("set/b.toml", line_of(broken / "b.toml", 'max_duration = "20h"')),
    ]
    assert doc["errors"][0]["message"].startswith("role 'app': unknown key 'max_duraton'")

    out = run("policy", "validate", "--json", "policies/prod.toml")
    assert out.returncode == 0
    doc = json.loads(out.stdout)
    assert doc == {
        "ok": True,
        "files": ["policies/prod.toml"],
        "roles": list(RAW["roles"]),
        "session_policies": ["policies/" + RAW["roles"]["prod-readonly"]["session_policy"]],
        "errors": [],
        "skipped": [],
        "over_chaining_limit": ["prod-readonly"],  # 2h: more than a role session can issue
        "warnings": [],  # no broker configured: who assumes the roles is not known here
    }


def test_one_file_of_a_set_is_checked_with_its_siblings(tmp_path):
    """Read with its siblings (its group is there); the report is of the file named."""
    write(tmp_path / "pol" / "groups.toml", 'version = 1\n[groups]\nops = ["x@example.com"]\n')
    roles = write(tmp_path / "pol" / "roles.toml", "version = 1\n" + role("app", who='"group:ops"'))
    out = run("policy", "validate", str(roles))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 file, 1 role: ok" in out.stderr


def test_missing_path_and_the_configured_default(tmp_path):
    out = run("policy", "validate", "nope.toml", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stdout == "nope.toml: policy file or directory does not exist\n"
    out = run("policy", "validate", JITCTL_POLICY=str(POLICIES))
    assert out.returncode == 0 and out.stderr.strip().endswith("ok")
    out = run("policy", "validate", cwd=tmp_path)  # nothing configured
    assert out.returncode == 2 and "no policy configured" in out.stderr


def test_session_policy_json_is_checked_as_part_of_its_policy(tmp_path):
    write(tmp_path / "pol" / "sp" / "ro.json", '{"Statement": [}')
    write(
        tmp_path / "pol" / "p.toml", "version = 1\n" + role("app", 'session_policy = "sp/ro.json"')
    )
    write(tmp_path / "pol" / "trust.json", "{}")
    out = run("policy", "validate", "pol/sp/ro.json", "pol/trust.json", cwd=tmp_path)
    assert out.returncode == 2
    assert re.fullmatch(r"pol/p\.toml:4: role 'app': session_policy: \S+ro\.json is not valid JSON.*\n", out.stdout)  # fmt: skip
    assert "pol/trust.json: not a policy file nor referenced by one; skipped" in out.stderr


# --- the pre-commit hook ----------------------------------------------------------------------


def hooks() -> list[dict[str, str]]:
    """A tiny reader for the flat list of mappings in .pre-commit-hooks.yaml (no yaml package)."""
    items: list[dict[str, str]] = []
    for raw in (REPO / ".pre-commit-hooks.yaml").read_text().splitlines():
        line = re.sub(r"\s+#.*$", "", raw)
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("- "):
            items.append({})
            line = line[2:]
        key, _, value = line.strip().partition(":")
        items[-1][key.strip()] = value.strip()
    return items


def test_pre_commit_hook_definition():
    (hook,) = hooks()
    try:
        import yaml  # only to cross-check the tiny reader, when installed anyway
    except ImportError:
        pass
    else:
        (doc,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
        assert {k: str(v).lower() if isinstance(v, bool) else v for k, v in doc.items()} == hook
    assert hook["id"] == "jitctl-policy-validate"
    assert hook["language"] == "python" and hook["pass_filenames"] == "true"
    files = re.compile(hook["files"])
    assert files.search("policies/prod.toml") and files.search("policies/session-policies/x.json")
    assert not files.search("pyproject.toml") and not files.search("tests/policies.toml")
    # what pre-commit runs: the entry, then the matching changed files
    out = subprocess.run(
        [*shlex.split(hook["entry"]), "policies/prod.toml"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean_env(PATH=str(Path(jitctl_exe()).parent)),
    )
    assert out.returncode == 0, out.stdout + out.stderr


# --- explain ----------------------------------------------------------------------------------


def test_explain_prod_readonly():
    raw = RAW["roles"]["prod-readonly"]
    doc = explain(load_policy(POLICIES), "prod-readonly")
    assert doc["arn"] == raw["arn"]
    fast = doc["fast_track"]
    assert fast["escalation_policies"] == raw["on_call"]["escalation_policies"] == ["PEP1234"]
    assert fast["max_escalation_level"] == raw["on_call"]["max_escalation_level"] == 1
    assert doc["approval"]["approvers"] == raw["approval"]["approvers"] == ["group:sre"]
    sre = sorted(m.lower() for m in RAW["groups"]["sre"])
    assert doc["approval"]["everyone"] == sre == doc["approval"]["groups"]["group:sre"]
    assert doc["approval"]["min_approvals"] == raw["approval"]["min_approvals"]
    assert doc["limits"]["max_duration_seconds"] == 7200
    assert doc["limits"]["max_duration_seconds"] == parse_duration(raw["max_duration"]).seconds
    assert doc["limits"]["sts_min_duration"] == "15m"
    json_denies = [
        a for s in SESSION_DOC["Statement"] if s["Effect"] == "Deny" for a in s["Action"]
    ]
    assert doc["session_policy"]["denies"] == json_denies
    assert "secretsmanager:GetSecretValue" in doc["session_policy"]["denies"]
    effects = [s["effect"] for s in doc["session_policy"]["statements"]]
    assert effects == [s["Effect"] for s in SESSION_DOC["Statement"]]

    out = run("policy", "explain", "prod-readonly", JITCTL_POLICY="policies")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for fact in ("PEP1234", "level 1", "group:sre", *sre, "secretsmanager:GetSecretValue", "2h"):
        assert fact in text
    assert "trust policy" in text and "maps to a person" in text


def test_explain_prod_admin_is_never_fast_tracked():
    doc = explain(load_policy(POLICIES), "prod-admin")
    assert doc["fast_track"] is None
    assert doc["approval"]["min_approvals"] == RAW["roles"]["prod-admin"]["approval"]["min_approvals"] == 2  # fmt: skip
    assert doc["session_policy"]["path"] is None and "unreduced" in doc["session_policy"]["summary"]
    out = run("policy", "explain", "prod-admin", "--policy", "policies")
    text = " ".join(out.stdout.split())
    assert out.returncode == 0 and "never" in text and "2 approvals" in text
    assert "unreduced" in text


def test_explain_as_an_approver_and_a_stranger():
    approver = RAW["groups"]["sre"][0]
    out = run(
        "policy", "explain", "prod-readonly", "--as", approver, "--json", JITCTL_POLICY="policies"
    )
    assert out.returncode == 0, out.stderr
    who = json.loads(out.stdout)["as"]
    assert who["is_approver"] is True and who["person"] == approver.lower()
    assert who["note"] == "a requester can never approve their own request"
    assert who["other_approvers"] == len(RAW["groups"]["sre"]) - 1

    out = run("policy", "explain", "prod-readonly", "--as", "mallory@example.com", JITCTL_POLICY="policies")  # fmt: skip
    text = " ".join(out.stdout.split())
    assert out.returncode == 0 and "not an approver for prod-readonly" in text
    assert "can never approve their own request" in text

    ci_arn, ci = next(iter(RAW["identities"].items()))
    who = explain(load_policy(POLICIES), "prod-admin", ci_arn)["as"]
    assert who["person"] == ci and who["is_approver"] is False


def test_explain_as_the_approver_who_leaves_too_few_others(tmp_path):
    path = write(
        tmp_path / "p.toml",
        "version = 1\n"
        + role("pair", who='"a@example.com", "b@example.com"')
        + "min_approvals = 2\n",
    )
    who = explain(load_policy(path), "pair", "A@example.com")["as"]
    assert who["is_approver"] and who["other_approvers"] == 1 and who["can_be_approved"] is False
    out = run("policy", "explain", "pair", "--as", "a@example.com", "--policy", str(path))
    assert "only the fast track would work" in " ".join(out.stdout.split())


def test_explain_unknown_role():
    out = run("policy", "explain", "prod-readonli", JITCTL_POLICY="policies")
    assert out.returncode == 2 and out.stdout == ""
    assert "unknown role 'prod-readonli'; did you mean 'prod-readonly'?" in out.stderr
    with pytest.raises(UsageError, match="did you mean 'prod-admin'"):
        explain(load_policy(POLICIES), "prod-admn")


def test_explain_shows_text_from_files_literally(tmp_path):
    path = write(
        tmp_path / "p.toml",
        'version = 1\n[roles.app]\ndescription = "[bold red]x[/] \\u001b[31mred"\n'
        f'arn = "{ARN}"\n[roles.app.approval]\napprovers = ["a@example.com"]\n',
    )
    out = run("policy", "explain", "app", "--policy", str(path))
    assert out.returncode == 0, out.stderr
    assert "[bold red]x[/] red" in out.stdout and "\x1b" not in out.stdout


def test_validate_in_process(broken):
    result = validate([broken / "a.toml"])  # a file of a set: read with it, reported alone
    assert not result.ok and len(result.errors) == 1
    assert result.errors[0].file == str(broken / "a.toml") and result.errors[0].line == 4
    assert len(validate([broken]).errors) == 2  # the set: both files' errors


def test_validate_a_file_reports_that_file_not_its_neighbours(tmp_path):
    """Issue 21 item 17: `policy validate FILE` reported errors in every .toml beside it. The
    file is still read with its set (its group comes from groups.toml), but only its own
    findings count."""
    write(tmp_path / "groups.toml", 'version = 1\n[groups]\nsre = ["bob@example.com"]\n')
    good = write(
        tmp_path / "app.toml",
        f"""
        version = 1
        [roles.app]
        arn = "{ARN}"
        [roles.app.approval]
        approvers = ["group:sre"]
        """,
    )
    broken = write(
        tmp_path / "broken.toml",
        f"""
        version = 1
        [roles.other]
        arn = "{ARN}"
        max_duration = "forever"
        [roles.other.approval]
        approvers = ["group:sre"]
        """,
    )
    out = run("policy", "validate", str(good), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["errors"] == [] and [Path(f).name for f in doc["files"]] == ["app.toml"]
    bad = run("policy", "validate", str(broken), cwd=tmp_path)
    assert bad.returncode == 2 and "broken.toml" in bad.stdout and "max_duration" in bad.stdout
    whole = run("policy", "validate", str(tmp_path), cwd=tmp_path)
    assert whole.returncode == 2 and "broken.toml" in whole.stdout
