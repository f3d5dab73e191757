"""`jitctl policy diff`: each kind of access change as a before/after policy pair committed to a
real git repository made here, run through the CLI in-process (and as the installed command),
and the wildcard comparisons it stands on (jitctl.policy.patterns, jitctl.policy.scope)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from jitctl.cli.main import run
from jitctl.context import Environment
from jitctl.policy.patterns import covers, overlaps
from jitctl.policy.scope import grants, uncovered
from tests.conftest import clean_env
from tests.test_policy_cmd import jitctl_exe

ARN = "arn:aws:iam::123456789012:role/{}"
SRE = '["bob@example.com", "dave@example.com"]'


def role(
    name: str, approval: str = 'approvers = ["group:sre"]', extra: str = "", **tables: str
) -> str:
    """One [roles.NAME] table with an approval table and any other sub-tables."""
    text = f'[roles.{name}]\narn = "{ARN.format(name)}"\n{extra}\n'
    text += f"[roles.{name}.approval]\n{approval}\n"
    for table, body in tables.items():
        text += f"[roles.{name}.{table}]\n{body}\n"
    return text


def policy(*roles: str, groups: str = f"sre = {SRE}", top: str = "") -> str:
    return f"version = 1\n{top}\n[groups]\n{groups}\n" + "\n".join(roles)


def statement(action, resource, effect: str = "Allow", **more) -> dict:
    return {"Effect": effect, "Action": action, "Resource": resource, **more}


def session_doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


class PolicyRepo:
    """A git repository with the policy in policies/, and a commit per version."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.policies = root / "policies"
        self.policies.mkdir(parents=True)
        self.git("init", "-q")
        self.git("config", "user.email", "test@example.com")
        self.git("config", "user.name", "test")

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.root), *args], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            path = self.policies / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), encoding="utf-8")

    def commit(self, files: dict[str, str], message: str = "policy") -> str:
        self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def env(self) -> dict[str, str]:
        """No config file, no AWS, no token: what a CI job has, plus the policy's path."""
        return {
            "JITCTL_POLICY": str(self.policies),
            "XDG_CONFIG_HOME": str(self.root / "no-config"),
            "HOME": str(self.root / "home"),
            "NO_COLOR": "1",
            "PATH": os.environ["PATH"],
        }

    def diff(self, *args: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        env = Environment(environ=environ or self.env(), stdout=out, stderr=err)
        with contextlib.redirect_stderr(err):  # the one error handler writes to sys.stderr
            code = run(["policy", "diff", *args], env=env)
        return code, out.getvalue(), err.getvalue()

    def changes(self, base: dict[str, str], head: dict[str, str]) -> dict:
        """The --json document from committing ``base`` and then writing ``head`` (the
        working tree, uncommitted: the default HEAD side)."""
        self.commit(base)
        self.write(head)
        code, out, err = self.diff("--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def repo(tmp_path) -> PolicyRepo:
    return PolicyRepo(tmp_path / "repo")


def only(doc: dict, what: str, role_name: str | None = "prod") -> dict:
    found = [c for c in doc["changes"] if c["what"] == what and c["role"] == role_name]
    assert len(found) == 1, doc["changes"]
    return found[0]


# --- looks small, widens a lot ---------------------------------------------------------------


def test_a_new_member_of_a_group_three_prod_roles_use_is_reported_for_each(repo):
    roles = [role(n) for n in ("prod-db", "prod-web", "prod-admin")]
    roles.append(role("staging", 'approvers = ["carol@example.com"]'))
    before = policy(*roles)
    after = policy(
        *roles, groups='sre = ["bob@example.com", "dave@example.com", "eve@example.com"]'
    )
    doc = repo.changes({"prod.toml": before}, {"prod.toml": after})
    assert doc["widens"] is True
    assert {c["role"] for c in doc["changes"]} == {"prod-db", "prod-web", "prod-admin"}
    for change in doc["changes"]:
        assert change["what"] == "approval.approvers" and change["widens"] is True
        assert change["people"] == ["eve@example.com", "group:sre"]  # who, and through what
        assert change["gained"] == ["eve@example.com"] and change["lost"] == []
        assert change["via"] == ["group:sre"]
        assert change["before"] == ["bob@example.com", "dave@example.com"]


def test_raising_max_escalation_level_widens_and_lowering_it_does_not(repo):
    track = 'escalation_policies = ["PEP1"]\nmax_escalation_level = {}'
    one = policy(role("prod", on_call=track.format(1)))
    three = policy(role("prod", on_call=track.format(3)))
    change = only(
        repo.changes({"prod.toml": one}, {"prod.toml": three}), "on_call.max_escalation_level"
    )
    assert (change["before"], change["after"], change["widens"]) == (1, 3, True)
    back = only(
        repo.changes({"prod.toml": three}, {"prod.toml": one}), "on_call.max_escalation_level"
    )
    assert back["widens"] is False


def test_dropping_max_escalation_level_means_any_level_and_widens(repo):
    capped = policy(
        role("prod", on_call='escalation_policies = ["PEP1"]\nmax_escalation_level = 2')
    )
    any_level = policy(role("prod", on_call='escalation_policies = ["PEP1"]'))
    change = only(
        repo.changes({"p.toml": capped}, {"p.toml": any_level}), "on_call.max_escalation_level"
    )
    assert (change["after"], change["widens"]) == ("any", True)


def test_a_resource_from_one_bucket_to_every_bucket_widens(repo):
    base = {
        "prod.toml": policy(role("prod", extra='session_policy = "sp/ro.json"')),
        "sp/ro.json": session_doc(statement("s3:GetObject", "arn:aws:s3:::logs/*")),
    }
    doc = repo.changes(
        base, {"sp/ro.json": session_doc(statement("s3:GetObject", "arn:aws:s3:::*"))}
    )
    change = only(doc, "session_policy.allow")
    assert change["widens"] is True
    assert change["gained"] == ["s3:GetObject on arn:aws:s3:::*"]
    assert change["before"] == ["s3:GetObject on arn:aws:s3:::logs/*"]


def test_a_narrower_resource_is_reported_as_not_widening(repo):
    base = {
        "prod.toml": policy(role("prod", extra='session_policy = "sp/ro.json"')),
        "sp/ro.json": session_doc(statement("s3:GetObject", "arn:aws:s3:::*")),
    }
    doc = repo.changes(
        base, {"sp/ro.json": session_doc(statement("s3:GetObject", "arn:aws:s3:::logs/*"))}
    )
    change = only(doc, "session_policy.allow")
    assert change["widens"] is False and doc["widens"] is False
    assert change["lost"] == ["s3:GetObject on arn:aws:s3:::*"]


def test_lowering_min_approvals_widens_and_raising_it_does_not(repo):
    two = policy(role("prod", 'approvers = ["group:sre"]\nmin_approvals = 2'))
    one = policy(role("prod", 'approvers = ["group:sre"]\nmin_approvals = 1'))
    change = only(repo.changes({"p.toml": two}, {"p.toml": one}), "approval.min_approvals")
    assert (change["before"], change["after"], change["widens"]) == (2, 1, True)
    assert (
        only(repo.changes({"p.toml": one}, {"p.toml": two}), "approval.min_approvals")["widens"]
        is False
    )


def test_adding_a_schedule_to_the_on_call_track_widens_naming_the_schedule(repo):
    before = policy(role("prod", on_call='escalation_policies = ["PEP1"]'))
    after = policy(role("prod", on_call='escalation_policies = ["PEP1"]\nschedules = ["PSCHED2"]'))
    change = only(repo.changes({"p.toml": before}, {"p.toml": after}), "on_call")
    assert change["widens"] is True
    assert change["people"] == ["schedule:PSCHED2"]
    assert change["after"] == ["oncall:PEP1", "schedule:PSCHED2"]


# --- every other key ------------------------------------------------------------------------


def test_roles_added_widen_and_roles_removed_do_not(repo):
    one = policy(role("prod"))
    two = policy(role("prod"), role("prod-admin", on_call='schedules = ["PS1"]'))
    added = only(repo.changes({"p.toml": one}, {"p.toml": two}), "role", "prod-admin")
    assert added["widens"] is True and added["after"] == ARN.format("prod-admin")
    assert added["people"] == ["bob@example.com", "dave@example.com", "group:sre", "schedule:PS1"]
    removed = only(repo.changes({"p.toml": two}, {"p.toml": one}), "role", "prod-admin")
    assert removed["widens"] is False and removed["after"] is None


def test_approver_entries_on_call_and_people_and_their_removal(repo):
    before = policy(role("prod", 'approvers = ["group:sre"]'))
    after = policy(role("prod", 'approvers = ["group:sre", "oncall:PEPSEC", "carol@example.com"]'))
    change = only(repo.changes({"p.toml": before}, {"p.toml": after}), "approval.approvers")
    assert change["widens"] is True
    assert change["people"] == ["carol@example.com", "oncall:PEPSEC"]
    assert change["via"] == []  # named directly, not through a group
    back = only(repo.changes({"p.toml": after}, {"p.toml": before}), "approval.approvers")
    assert back["widens"] is False and back["lost"] == ["carol@example.com", "oncall:PEPSEC"]


def test_the_same_people_written_another_way_is_no_change(repo):
    before = policy(role("prod", 'approvers = ["group:sre"]'))
    after = policy(role("prod", 'approvers = ["Dave@Example.com", "bob@example.com"]'))
    doc = repo.changes({"p.toml": before}, {"p.toml": after})
    assert doc["changes"] == [] and doc["widens"] is False


def test_incident_track_services_and_end_with_incident(repo):
    before = policy(role("prod", incident='services = ["PSVC1"]\nend_with_incident = true'))
    after = policy(
        role("prod", incident='services = ["PSVC1", "PSVC2"]\nend_with_incident = false')
    )
    doc = repo.changes({"p.toml": before}, {"p.toml": after})
    assert only(doc, "incident")["people"] == ["incident:PSVC2"]
    assert only(doc, "incident")["widens"] is True
    ends = only(doc, "incident.end_with_incident")
    assert (ends["before"], ends["after"], ends["widens"]) == (True, False, True)


def test_break_glass_added_lengthened_and_removed(repo):
    none = policy(role("prod", extra='max_duration = "2h"'))
    short = policy(role("prod", extra='max_duration = "2h"', break_glass='max_duration = "30m"'))
    longer = policy(role("prod", extra='max_duration = "2h"', break_glass='max_duration = "1h"'))
    added = only(repo.changes({"p.toml": none}, {"p.toml": short}), "break_glass")
    assert (added["before"], added["after"], added["widens"]) == ("not allowed", "30m", True)
    assert (
        only(repo.changes({"p.toml": short}, {"p.toml": longer}), "break_glass")["widens"] is True
    )
    removed = only(repo.changes({"p.toml": longer}, {"p.toml": none}), "break_glass")
    assert removed["widens"] is False


def test_max_duration_up_widens_and_down_does_not(repo):
    one = policy(role("prod", extra='max_duration = "1h"'))
    four = policy(role("prod", extra='max_duration = "4h"'))
    up = only(repo.changes({"p.toml": one}, {"p.toml": four}), "max_duration")
    assert (up["before"], up["after"], up["widens"]) == ("1h", "4h", True)
    assert only(repo.changes({"p.toml": four}, {"p.toml": one}), "max_duration")["widens"] is False


def test_a_changed_role_arn_widens(repo):
    before = policy(role("prod"))
    after = before.replace(ARN.format("prod"), ARN.format("admin"))
    assert only(repo.changes({"p.toml": before}, {"p.toml": after}), "arn")["widens"] is True


def test_request_ttl_is_reported_but_is_not_access(repo):
    before = policy(role("prod", 'approvers = ["group:sre"]\nrequest_ttl = "30m"'))
    after = policy(role("prod", 'approvers = ["group:sre"]\nrequest_ttl = "2h"'))
    change = only(repo.changes({"p.toml": before}, {"p.toml": after}), "approval.request_ttl")
    assert (change["before"], change["after"], change["widens"]) == ("30m", "2h", False)


def test_identities_a_new_mapping_widens_naming_the_person(repo):
    ci = '[identities]\n"arn:aws:iam::123456789012:user/ci-bot" = "ci-bot@example.com"\n'
    bot = '"arn:aws:iam::123456789012:user/deploy" = "bob@example.com"\n'
    doc = repo.changes(
        {"p.toml": policy(role("prod"), top=ci)}, {"p.toml": policy(role("prod"), top=ci + bot)}
    )
    change = only(doc, "identities", None)
    assert change["widens"] is True and change["people"] == ["bob@example.com"]


@pytest.mark.parametrize(
    ("before", "after", "widens"),
    [
        ([], ["arn:aws:iam::123456789012:role/okta-*"], True),
        (
            ["arn:aws:iam::123456789012:role/okta-*"],
            ["arn:aws:iam::123456789012:role/okta-eng"],
            False,
        ),
        (
            ["arn:aws:iam::123456789012:role/okta-eng"],
            ["arn:aws:iam::123456789012:role/okta-*"],
            True,
        ),
        (
            ["arn:aws:iam::123456789012:role/okta-[ab]"],
            ["arn:aws:iam::123456789012:role/okta-?"],
            True,
        ),
        (  # a class is one of its letters: okta-b is one of the roles trusted already
            ["arn:aws:iam::123456789012:role/okta-[ab]"],
            ["arn:aws:iam::123456789012:role/okta-b"],
            False,
        ),
    ],
)
def test_session_name_roles_widen_by_what_the_globs_match(repo, before, after, widens):
    def top(globs: list[str]) -> str:
        return f"[identities]\nsession_name_roles = {json.dumps(globs)}\n"

    doc = repo.changes(
        {"p.toml": policy(role("prod"), top=top(before))},
        {"p.toml": policy(role("prod"), top=top(after))},
    )
    assert only(doc, "identities.session_name_roles", None)["widens"] is widens


# --- session policies: what they allow, not how they are written ---------------------------


def _session_change(repo, before: str | None, after: str | None) -> dict:
    """The session_policy.* changes from ``before`` to ``after`` (None: no session policy)."""

    def files(doc: str | None) -> dict[str, str]:
        extra = 'session_policy = "sp.json"' if doc is not None else ""
        out = {"p.toml": policy(role("prod", extra=extra))}
        return out | ({"sp.json": doc} if doc is not None else {})

    return repo.changes(files(before), files(after))


@pytest.mark.parametrize(
    ("before", "after", "widens"),
    [
        (statement("s3:GetObject", "*"), statement("s3:*", "*"), True),
        (statement("s3:*", "*"), statement(["s3:GetObject", "s3:ListBucket"], "*"), False),
        (statement("s3:Get*", "*"), statement("*", "*"), True),
        (statement("ec2:Describe*", "*"), statement("EC2:DescribeInstances", "*"), False),
        (
            statement("s3:GetObject", "arn:aws:s3:::a/*"),
            statement("s3:GetObject", "arn:aws:s3:::a/b/*"),
            False,
        ),
        (
            statement("s3:GetObject", "arn:aws:s3:::a/x"),
            statement("s3:GetObject", "arn:aws:s3:::a/?"),
            True,
        ),
    ],
)
def test_session_policy_actions_and_resources_by_what_they_match(repo, before, after, widens):
    doc = _session_change(repo, session_doc(before), session_doc(after))
    assert only(doc, "session_policy.allow")["widens"] is widens


def test_the_same_session_policy_written_another_way_is_no_change(repo):
    before = session_doc(
        statement("s3:GetObject", "arn:aws:s3:::a/*"), statement("s3:ListBucket", "*")
    )
    after = session_doc(
        {"Resource": "*", "Action": ["s3:listbucket"], "Effect": "Allow"},
        statement(["s3:GetObject"], ["arn:aws:s3:::a/*"]),
    )
    assert _session_change(repo, before, after)["changes"] == []


def test_removing_the_session_policy_widens_and_adding_one_does_not(repo):
    doc = session_doc(statement("s3:GetObject", "*"))
    removed = only(_session_change(repo, doc, None), "session_policy.allow")
    assert removed["widens"] is True
    assert removed["after"] == ["(no session policy: the role's own permissions)"]
    assert only(_session_change(repo, None, doc), "session_policy.allow")["widens"] is False


def test_a_deny_removed_widens_and_a_deny_added_does_not(repo):
    allow = statement("s3:*", "*")
    deny = statement("s3:DeleteObject", "*", effect="Deny")
    removed = _session_change(repo, session_doc(allow, deny), session_doc(allow))
    assert only(removed, "session_policy.deny")["widens"] is True
    added = _session_change(repo, session_doc(allow), session_doc(allow, deny))
    assert only(added, "session_policy.deny")["widens"] is False and added["widens"] is False


def test_a_dropped_condition_widens(repo):
    cond = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
    doc = _session_change(
        repo,
        session_doc(statement("s3:*", "*", Condition=cond)),
        session_doc(statement("s3:*", "*")),
    )
    assert only(doc, "session_policy.allow")["widens"] is True


def test_not_action_is_compared_by_what_it_leaves_out(repo):
    def not_action(*actions: str) -> str:
        return session_doc({"Effect": "Allow", "NotAction": list(actions), "Resource": "*"})

    fewer_out = _session_change(repo, not_action("iam:*", "s3:Delete*"), not_action("iam:*"))
    assert only(fewer_out, "session_policy.allow")["widens"] is True
    more_out = _session_change(repo, not_action("iam:*"), not_action("iam:*", "s3:*"))
    assert only(more_out, "session_policy.allow")["widens"] is False
    to_listed = _session_change(
        repo, not_action("iam:*"), session_doc(statement("iam:PassRole", "*"))
    )
    assert only(to_listed, "session_policy.allow")["widens"] is True
    safe_listed = _session_change(
        repo, not_action("iam:*"), session_doc(statement("s3:GetObject", "*"))
    )
    assert only(safe_listed, "session_policy.allow")["widens"] is False


@pytest.mark.parametrize(
    ("wide", "narrow", "expected"),
    [
        ("*", "anything:at/all", True),
        ("arn:aws:s3:::*", "arn:aws:s3:::logs/*", True),
        ("arn:aws:s3:::logs/*", "arn:aws:s3:::*", False),
        ("s3:Get*", "s3:GetObject?", True),
        ("s3:GetObject?", "s3:Get*", False),
        ("a?c", "a*c", False),
        ("a*", "a?*", True),
    ],
)
def test_covers(wide, narrow, expected):
    assert covers(wide, narrow) is expected


def test_covers_reads_classes_as_one_character():
    assert not covers("*]", "[a]", classes=True)  # "[a]" matches "a", which "*]" does not
    assert covers("role/?", "role/[bc]", classes=True)
    assert not covers("role/ab", "role/a[bc]", classes=True)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("s3:*", "s3:Delete*", True),
        ("s3:Get*", "s3:Put*", False),
        ("a?c", "*c", True),
        ("ab", "a", False),
    ],
)
def test_overlaps(first, second, expected):
    assert overlaps(first, second) is expected


def test_uncovered_keeps_a_condition_apart():
    plain = grants(session_doc(statement("s3:*", "*")), "Allow")
    guarded = grants(
        session_doc(
            statement("s3:*", "*", Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})
        ),
        "Allow",
    )
    assert uncovered(guarded, plain) == ()
    assert uncovered(plain, guarded) == plain


# --- versions: revisions, paths, errors -----------------------------------------------------


def test_fail_on_widen_exits_3_only_when_something_widens(repo):
    narrow = policy(role("prod", 'approvers = ["group:sre"]\nmin_approvals = 2'))
    wide = policy(role("prod", 'approvers = ["group:sre"]\nmin_approvals = 1'))
    first = repo.commit({"p.toml": narrow})
    second = repo.commit({"p.toml": wide})
    assert repo.diff(first, second)[0] == 0
    code, out, err = repo.diff(first, second, "--fail-on-widen")
    assert code == 3 and "min_approvals" in out, err
    assert repo.diff(second, first, "--fail-on-widen")[0] == 0


def test_a_revision_that_cannot_be_read_is_exit_2(repo):
    repo.commit({"p.toml": policy(role("prod"))})
    code, out, err = repo.diff("no-such-branch")
    assert code == 2 and out == ""
    assert "'no-such-branch' is neither a path that exists nor a revision" in err
    assert "Traceback" not in err


def test_a_revision_without_the_policy_is_exit_2(repo):
    first = repo.commit({}, "nothing yet")
    repo.commit({"p.toml": policy(role("prod"))})
    code, _, err = repo.diff(first)
    assert code == 2 and f"{first}:policies: the policy does not exist at that revision" in err


def test_an_invalid_policy_at_a_revision_names_the_revision_not_a_copy(repo):
    bad = repo.commit({"p.toml": policy(role("prod", extra='max_duraton = "2h"'))})
    repo.commit({"p.toml": policy(role("prod"))})
    code, _, err = repo.diff(bad)
    assert code == 2 and f"{bad}:policies/p.toml" in err and "max_duration" in err
    assert "jitctl-policy-" not in err  # the temporary copy is nobody's business


def test_invalid_utf8_at_a_revision_is_exit_2_naming_it(repo):
    repo.commit({"p.toml": policy(role("prod"))})
    (repo.policies / "p.toml").write_bytes(policy(role("prod")).encode() + b"# \xff\xfe\n")
    bad = repo.commit({})
    repo.commit({"p.toml": policy(role("prod"))})
    code, out, err = repo.diff(bad)
    assert code == 2 and out == ""
    assert f"{bad}:policies/p.toml: not valid TOML: not UTF-8" in err


def test_without_git_a_revision_is_exit_2_and_paths_still_work(repo, monkeypatch):
    first = repo.commit({"p.toml": policy(role("prod"))})
    monkeypatch.setenv("PATH", str(repo.root / "no-bin"))
    code, _, err = repo.diff(first)
    assert code == 2 and "git is not installed" in err and "give both versions as paths" in err
    assert repo.diff(str(repo.policies), str(repo.policies))[0] == 0


def test_a_single_policy_file_and_its_session_policy_at_a_revision(repo):
    p = policy(role("prod", extra='session_policy = "sp/ro.json"'))
    narrow = repo.commit({"p.toml": p, "sp/ro.json": session_doc(statement("s3:GetObject", "*"))})
    repo.write({"sp/ro.json": session_doc(statement("s3:*", "*"))})
    environ = repo.env() | {"JITCTL_POLICY": str(repo.policies / "p.toml")}
    code, out, err = repo.diff(narrow, "--json", environ=environ)
    assert code == 0, err
    assert only(json.loads(out), "session_policy.allow")["gained"] == ["s3:* on *"]


def test_an_unknown_format_is_one_line_and_exit_2(repo):
    repo.commit({"p.toml": policy(role("prod"))})
    code, out, err = repo.diff("--format", "html")
    assert (code, out) == (2, "")
    assert err == "jitctl: --format 'html' is not one of text, markdown\n"


def test_a_symbolic_link_in_a_revisions_policy_is_exit_2(repo):
    """git keeps a link's target, not a file: what it points at is no revision's content."""
    (repo.root / "elsewhere.toml").write_text(policy(role("prod")))
    repo.commit({"p.toml": policy(role("prod"))})
    (repo.policies / "linked.toml").symlink_to(repo.root / "elsewhere.toml")
    linked = repo.commit({})
    code, _, err = repo.diff(linked)
    assert code == 2 and f"{linked}:policies/linked.toml: not a regular file" in err


def test_a_revision_is_never_read_as_an_option(repo):
    repo.commit({"p.toml": policy(role("prod"))})
    victim = repo.root / "written-by-git"
    code, _, err = repo.diff("--", f"--output={victim}")
    assert code == 2 and not victim.exists(), err


def test_session_policies_come_from_the_revision_not_the_disk(repo):
    p = policy(role("prod", extra='session_policy = "sp.json"'))
    narrow = repo.commit({"p.toml": p, "sp.json": session_doc(statement("s3:GetObject", "*"))})
    wide = repo.commit({"sp.json": session_doc(statement("s3:*", "*"))})
    code, out, err = repo.diff(narrow, wide, "--json")
    assert code == 0, err
    assert only(json.loads(out), "session_policy.allow")["widens"] is True


def test_two_paths_need_no_config_no_git_and_an_existing_path_wins(tmp_path, monkeypatch):
    for name, n in (("HEAD", 2), ("b", 1)):
        (tmp_path / name).mkdir()
        text = policy(role("prod", f'approvers = ["group:sre"]\nmin_approvals = {n}'))
        (tmp_path / name / "p.toml").write_text(text)
    monkeypatch.chdir(tmp_path)  # "HEAD" names the directory here: a path, not a revision
    out, err = io.StringIO(), io.StringIO()
    env = Environment(environ={"XDG_CONFIG_HOME": str(tmp_path / "none")}, stdout=out, stderr=err)
    code = run(["policy", "diff", "HEAD", "b", "--fail-on-widen"], env=env)
    assert code == 3, err.getvalue()
    assert "approval.min_approvals  widens" in out.getvalue()


def test_a_path_that_is_also_a_revision_is_compared_as_a_path_with_a_warning(repo, monkeypatch):
    """A pull request can add a directory named like the base branch: CI must hear of it."""
    narrow = policy(role("prod", 'approvers = ["group:sre"]\nmin_approvals = 2'))
    wide = policy(role("prod", 'approvers = ["group:sre"]\nmin_approvals = 1'))
    repo.commit({"p.toml": narrow})
    repo.commit({"p.toml": wide})
    (repo.root / "HEAD~1").mkdir()
    (repo.root / "HEAD~1" / "p.toml").write_text(wide)  # the planted "base"
    monkeypatch.chdir(repo.root)
    code, out, err = repo.diff("HEAD~1", "HEAD")
    assert code == 0 and "no change in access" in out
    assert "'HEAD~1' is a path here and also a git revision; comparing the path" in err
    monkeypatch.chdir(repo.policies)
    code, out, _ = repo.diff("HEAD~1", "HEAD", "--fail-on-widen")
    assert code == 3 and "min_approvals" in out  # elsewhere, HEAD~1 is the revision


def test_broker_mode_reads_the_same_files_and_asks_no_broker(repo):
    """A client config names a broker; the diff is of files and never calls it."""
    repo.commit({"p.toml": policy(role("prod"))})
    repo.write({"p.toml": policy(role("prod", extra='max_duration = "3h"'))})
    config = repo.root / "config.toml"
    config.write_text(
        f'policy = "{repo.policies}"\n[broker]\nurl = "http://127.0.0.1:9"\nserver_id = "jitctl-test"\n'
    )
    environ = {k: v for k, v in repo.env().items() if k != "JITCTL_POLICY"}
    code, out, err = repo.diff("--json", environ=environ | {"JITCTL_CONFIG": str(config)})
    assert code == 0, err
    assert only(json.loads(out), "max_duration")["after"] == "3h"


# --- output ---------------------------------------------------------------------------------

HOSTILE_EMAIL = "x|y*`_z`@example.com"
HOSTILE_ARN = "arn:aws:s3:::a|b<b>c`d\x1b]8;;https://evil.example/\x07"


def test_markdown_escapes_what_policy_files_say(repo):
    sp = {"sp.json": session_doc(statement("s3:GetObject", "arn:aws:s3:::a"))}
    before = policy(role("prod", extra='session_policy = "sp.json"'))
    after = before.replace(SRE, f'["bob@example.com", "{HOSTILE_EMAIL}"]')
    repo.commit({"p.toml": before} | sp)
    repo.write({"p.toml": after, "sp.json": session_doc(statement("s3:GetObject", HOSTILE_ARN))})
    code, out, err = repo.diff("--format", "markdown")
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| prod")]
    assert len(rows) == 2, out
    for row in rows:
        assert row.replace("\\|", "").count("|") == 7  # six cells, whatever the text holds
        assert "<b>" not in row and "\x1b" not in row and "\x07" not in row
    assert "\\<b\\>" in out and "x\\|y\\*\\`\\_z\\`" in out
    assert "**This change widens access.**" in out


def test_text_strips_terminal_escapes_from_session_policy_text(repo):
    evil = "arn:aws:s3:::a\x1b[2J\x1b]0;pwned\x07"
    doc = _session_change(
        repo,
        session_doc(statement("s3:GetObject", "arn:aws:s3:::a")),
        session_doc(statement("s3:GetObject", evil)),
    )
    assert only(doc, "session_policy.allow")["widens"] is True
    code, out, _ = repo.diff()
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert "session_policy.allow  widens" in out


def test_installed_cli_in_ci_shape(repo):
    """The installed command, as a pull-request check runs it: no AWS, no token, no config."""
    base = repo.commit({"p.toml": policy(role("prod", on_call='escalation_policies = ["PEP1"]'))})
    repo.commit(
        {
            "p.toml": policy(
                role("prod", on_call='escalation_policies = ["PEP1"]\nschedules = ["PS2"]')
            )
        }
    )
    env = clean_env(**repo.env())
    done = subprocess.run(
        [jitctl_exe(), "policy", "diff", base, "HEAD", "--json", "--fail-on-widen"],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo.root,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc) >= {"widens", "changes"} and doc["widens"] is True
    assert set(doc["changes"][0]) >= {"role", "what", "before", "after", "widens", "people"}
    md = subprocess.run(
        [jitctl_exe(), "policy", "diff", base, "HEAD", "--format", "markdown"],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo.root,
        timeout=60,
    )
    assert md.returncode == 0 and "| prod | on\\_call |" in md.stdout, md.stderr


# --- keys other parts of jitctl add to a role -----------------------------------------------


def test_a_key_another_part_adds_is_compared_by_its_row(tmp_path):
    """max_total, approve_from and kind are rows of ASPECTS already: once Role carries them
    they are compared (here, a Role that carries them, as another branch's loader would)."""
    import dataclasses
    from datetime import timedelta

    from jitctl.policy.diff import diff_policies
    from jitctl.policy.load import load_policy
    from jitctl.policy.roles import Role

    @dataclasses.dataclass(frozen=True)
    class Later(Role):
        max_total: timedelta | None = None
        kind: str = "assume_role"

    (tmp_path / "p.toml").write_text(policy(role("prod")))
    loaded = load_policy(tmp_path / "p.toml")
    later = {f.name for f in dataclasses.fields(Later)} - {"max_total", "kind"}  # Role may have them
    fields = {name: getattr(loaded.roles["prod"], name) for name in later}

    def version(**more) -> object:
        return dataclasses.replace(loaded, roles={"prod": Later(**fields, **more)})

    raised = diff_policies(
        version(max_total=timedelta(hours=4)), version(max_total=timedelta(hours=8))
    )
    assert [(c.what, c.before, c.after, c.widens) for c in raised.changes] == [
        ("max_total", "4h", "8h", True)
    ]
    switched = diff_policies(version(), version(kind="identity_center"))
    assert [(c.what, c.widens) for c in switched.changes] == [("kind", True)]
    assert diff_policies(version(), version()).changes == ()
