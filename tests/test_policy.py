"""jitctl.policy.load: loading, strict checking and approver matching."""

from __future__ import annotations

import json
import re
import textwrap
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from jitctl.errors import ExitCode, PolicyError, UsageError
from jitctl.policy.load import Policy, check_policy, load_policy
from jitctl.timeutil import parse_duration

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"

ARN = "arn:aws:iam::123456789012:role/app"
BOB_ARN = "arn:aws:iam::123456789012:user/bob-laptop"
CI_ARN = "arn:aws:iam::123456789012:user/ci-bot"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def policy_file(tmp_path: Path, role_body: str = "", *, extra: str = "", name="p.toml") -> Path:
    """A valid one-role policy, with ``role_body`` appended to the role table."""
    text = f"""
version = 1
{extra}
[groups]
sre = ["Bob@Example.com", "dave@example.com"]

[roles.app]
arn = "{ARN}"
{role_body}
"""
    if "[roles.app.approval]" not in role_body and "[roles.app.on_call]" not in role_body:
        text += '\n[roles.app.approval]\napprovers = ["group:sre"]\n'
    return write(tmp_path / name, text)


def error_of(path: Path) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.exit_code == ExitCode.USAGE
    return str(info.value)


# --- the shipped example set ---------------------------------------------------------------


def test_shipped_policies_load_with_the_values_in_the_file():
    raw = tomllib.loads((POLICIES / "prod.toml").read_text(encoding="utf-8"))
    policy = load_policy(POLICIES)

    assert set(policy.roles) == {"prod-readonly", "prod-admin"} == set(raw["roles"])
    assert policy.sources == (POLICIES / "prod.toml",)
    assert policy.groups["sre"] == tuple(m.lower() for m in raw["groups"]["sre"])

    ro, raw_ro = policy.role("prod-readonly"), raw["roles"]["prod-readonly"]
    assert ro.arn == "arn:aws:iam::123456789012:role/prod-readonly" == raw_ro["arn"]
    assert ro.max_duration == timedelta(hours=2) == parse_duration(raw_ro["max_duration"])
    assert ro.source == POLICIES / "prod.toml"
    assert ro.on_call is not None and ro.on_call.escalation_policies == ("PEP1234",)
    assert ro.on_call.max_escalation_level == 1 == raw_ro["on_call"]["max_escalation_level"]
    assert ro.approval is not None and ro.approval.approvers == ("group:sre",)
    assert ro.approval.request_ttl == timedelta(minutes=30)
    assert ro.session_policy_path == POLICIES / raw_ro["session_policy"]
    on_disk = json.loads(ro.session_policy_path.read_text(encoding="utf-8"))
    assert ro.session_policy == json.dumps(on_disk, separators=(",", ":"))
    assert len(ro.session_policy) <= 2048
    assert policy.approvers_display(ro) == sorted(m.lower() for m in raw["groups"]["sre"])

    admin, raw_admin = policy.role("prod-admin"), raw["roles"]["prod-admin"]
    assert admin.on_call is None and "on_call" not in raw_admin
    assert admin.approval is not None and admin.approval.min_approvals == 2
    assert admin.max_duration == timedelta(hours=1)
    assert admin.session_policy is None


def test_shipped_session_policy_denies_secret_reads():
    doc = json.loads((POLICIES / "session-policies" / "readonly.json").read_text())
    denied = {a for s in doc["Statement"] if s["Effect"] == "Deny" for a in s["Action"]}
    assert {"secretsmanager:GetSecretValue", "kms:Decrypt", "ssm:GetParameter"} <= denied
    allowed = [a for s in doc["Statement"] if s["Effect"] == "Allow" for a in s["Action"]]
    writes = re.compile(r":(Put|Delete|Create|Update|Terminate|Run|Start(?!Query)|Stop(?!Query))")
    assert not [a for a in allowed if writes.search(a)]


def test_trust_policy_template_requires_a_source_identity():
    doc = json.loads((POLICIES / "trust-policy-template.json").read_text())
    (stmt,) = doc["Statement"]
    assert set(stmt["Action"]) == {"sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"}
    assert "ACCOUNT_ID" in stmt["Principal"]["AWS"]
    conditions = {k for op in stmt["Condition"].values() for k in op}
    assert "sts:SourceIdentity" in conditions


# --- a good policy and its defaults -----------------------------------------------------------


def test_minimal_role_gets_defaults(tmp_path):
    policy = load_policy(policy_file(tmp_path))
    role = policy.role("app")
    assert role.max_duration == timedelta(hours=1)
    assert role.approval is not None
    assert role.approval.min_approvals == 1
    assert role.approval.request_ttl == timedelta(minutes=30)
    assert role.on_call is None and role.session_policy is None and role.description is None
    assert policy.groups["sre"] == ("bob@example.com", "dave@example.com")


def test_directory_loads_sorted_toml_files_and_groups_may_live_elsewhere(tmp_path):
    write(tmp_path / "b-roles.toml", f'version = 1\n[roles.app]\narn = "{ARN}"\n'
          '[roles.app.approval]\napprovers = ["group:ops"]\n')  # fmt: skip
    write(tmp_path / "a-groups.toml", 'version = 1\n[groups]\nops = ["x@example.com"]\n')
    write(tmp_path / "notes.txt", "not a policy")
    policy = load_policy(tmp_path)
    assert policy.sources == (tmp_path / "a-groups.toml", tmp_path / "b-roles.toml")
    assert policy.role("app").source == tmp_path / "b-roles.toml"


def test_directory_without_toml_files_is_an_error(tmp_path):
    write(tmp_path / "readme.md", "nothing here")
    assert str(tmp_path) in error_of(tmp_path)


def test_missing_path_is_an_error(tmp_path):
    assert "does not exist" in error_of(tmp_path / "nope.toml")


# --- unknown keys, with suggestions -----------------------------------------------------------


def test_unknown_top_level_key(tmp_path):
    path = policy_file(tmp_path, extra='rolez = "x"')
    msg = error_of(path)
    assert msg.startswith(str(path))
    assert "unknown key 'rolez'; did you mean 'roles'?" in msg


def test_unknown_role_key_names_file_line_role_and_key(tmp_path):
    path = policy_file(tmp_path, 'max_duraton = "2h"')
    line = path.read_text().splitlines().index('max_duraton = "2h"') + 1  # the key, not [roles.app]
    assert error_of(path) == (
        f"{path}:{line}: role 'app': unknown key 'max_duraton'; did you mean 'max_duration'?"
    )


def test_unknown_on_call_key(tmp_path):
    path = policy_file(tmp_path, '[roles.app.on_call]\nschedule = ["P1"]\n')
    msg = error_of(path)
    assert "role 'app': on_call: unknown key 'schedule'; did you mean 'schedules'?" in msg


def test_unknown_approval_key(tmp_path):
    path = policy_file(tmp_path, '[roles.app.approval]\napprovers = ["a@b.io"]\nmin_approval = 1\n')
    msg = error_of(path)
    assert "role 'app': approval: unknown key 'min_approval'; did you mean 'min_approvals'?" in msg


# --- top level --------------------------------------------------------------------------------


def test_invalid_toml_names_file_and_line(tmp_path):
    path = write(tmp_path / "p.toml", 'version = 1\n[roles.app]\narn = "unterminated\n')
    msg = error_of(path)
    assert msg.startswith(f"{path}:3: not valid TOML")
    assert "line 3" in msg


@pytest.mark.parametrize("version", ["2", '"1"', "true", "1.0"])
def test_version_must_be_1(tmp_path, version):
    path = write(tmp_path / "p.toml", f"version = {version}\n")
    assert "version must be 1" in error_of(path)


def test_version_is_required(tmp_path):
    path = write(tmp_path / "p.toml", '[groups]\nsre = ["a@b.io"]\n')
    assert "version is required" in error_of(path)


# --- role keys --------------------------------------------------------------------------------


def test_bad_duration(tmp_path):
    msg = error_of(policy_file(tmp_path, 'max_duration = "2 hours"'))
    assert "role 'app': max_duration" in msg and "invalid duration '2 hours'" in msg


@pytest.mark.parametrize("value", ["13h", "12h1s", "14m", "10s"])
def test_duration_outside_sts_limits(tmp_path, value):
    msg = error_of(policy_file(tmp_path, f'max_duration = "{value}"'))
    assert f"max_duration must be between 15m and 12h (STS session limits), got '{value}'" in msg


@pytest.mark.parametrize("value", ["15m", "12h"])
def test_duration_limits_are_inclusive(tmp_path, value):
    role = load_policy(policy_file(tmp_path, f'max_duration = "{value}"')).role("app")
    assert role.max_duration == parse_duration(value)


def test_duration_of_the_wrong_type(tmp_path):
    msg = error_of(policy_file(tmp_path, "max_duration = 3600"))
    assert "max_duration must be a duration string" in msg and "got an integer" in msg


def test_missing_arn(tmp_path):
    path = write(
        tmp_path / "p.toml",
        'version = 1\n[roles.app]\nmax_duration = "1h"\n[roles.app.approval]\napprovers = ["a@b.io"]\n',
    )
    assert "role 'app': arn is required" in error_of(path)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::123456789012:user/app",
        "arn:aws:iam::12345:role/app",
        "arn:aws:sts::123456789012:role/app",
        "arn:aws:iam::123456789012:role/",
        "prod-readonly",
    ],
)
def test_bad_arn(tmp_path, arn):
    path = write(
        tmp_path / "p.toml",
        f'version = 1\n[roles.app]\narn = "{arn}"\n[roles.app.approval]\napprovers = ["a@b.io"]\n',
    )
    assert f"role 'app': arn '{arn}' is not an IAM role ARN" in error_of(path)


def test_role_arn_with_path_and_partition_is_accepted(tmp_path):
    arn = "arn:aws-us-gov:iam::123456789012:role/team/app-reader"
    path = write(
        tmp_path / "p.toml",
        f'version = 1\n[roles.app]\narn = "{arn}"\n[roles.app.approval]\napprovers = ["a@b.io"]\n',
    )
    assert load_policy(path).role("app").arn == arn


@pytest.mark.parametrize("name", ["-app", "has space", "a" * 65, "ünï"])
def test_bad_role_name(tmp_path, name):
    path = write(
        tmp_path / "p.toml",
        f'version = 1\n[roles."{name}"]\narn = "{ARN}"\n'
        f'[roles."{name}".approval]\napprovers = ["a@b.io"]\n',
    )
    assert f"role name {name!r} is invalid" in error_of(path)


def test_duplicate_role_across_files_names_both_files(tmp_path):
    first = policy_file(tmp_path, name="a.toml")
    second = policy_file(tmp_path, name="b.toml")
    msg = error_of(tmp_path)
    assert str(first) in msg and str(second) in msg
    assert "role 'app'" in msg and "already defined" in msg


def test_duplicate_group_with_other_members_is_an_error(tmp_path):
    policy_file(tmp_path, name="a.toml")
    write(tmp_path / "b.toml", 'version = 1\n[groups]\nsre = ["eve@example.com"]\n')
    msg = error_of(tmp_path)
    assert "group 'sre'" in msg and "a.toml" in msg and "b.toml" in msg


def test_same_group_in_two_files_is_fine(tmp_path):
    policy_file(tmp_path, name="a.toml")
    write(
        tmp_path / "b.toml",
        'version = 1\n[groups]\nsre = ["dave@example.com", "bob@example.com"]\n',
    )
    assert load_policy(tmp_path).groups["sre"] == ("bob@example.com", "dave@example.com")


def test_conflicting_identity_across_files_is_an_error(tmp_path):
    policy_file(tmp_path, name="a.toml", extra=f'[identities]\n"{CI_ARN}" = "ci@example.com"\n')
    write(tmp_path / "b.toml", f'version = 1\n[identities]\n"{CI_ARN}" = "other@example.com"\n')
    msg = error_of(tmp_path)
    assert CI_ARN in msg and "a.toml" in msg and "b.toml" in msg


def test_identities_are_lower_cased_and_checked(tmp_path):
    extra = f'[identities]\n"{CI_ARN}" = "CI-Bot@Example.com"\n'
    assert load_policy(policy_file(tmp_path, extra=extra)).identities == {
        CI_ARN: "ci-bot@example.com"
    }
    msg = error_of(policy_file(tmp_path, extra=f'[identities]\n"{CI_ARN}" = "ci bot"\n'))
    assert "'ci bot' is not an email address" in msg
    msg = error_of(policy_file(tmp_path, extra='[identities]\n"ci-bot" = "ci@example.com"\n'))
    assert "'ci-bot' is not a principal ARN" in msg


def test_role_with_neither_on_call_nor_approval(tmp_path):
    path = write(tmp_path / "p.toml", f'version = 1\n[roles.app]\narn = "{ARN}"\n')
    msg = error_of(path)
    assert msg.startswith(f"{path}:2: role 'app': has neither on_call nor approval")


def test_description_must_be_a_string(tmp_path):
    assert load_policy(policy_file(tmp_path, 'description = "x"')).role("app").description == "x"
    assert "description must be a non-empty string, got an integer" in error_of(
        policy_file(tmp_path, "description = 3")
    )


# --- session policies -------------------------------------------------------------------------


def test_session_policy_is_minified_and_relative_to_its_file(tmp_path):
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:List*", "Resource": "*"}]}  # fmt: skip
    write(tmp_path / "sub" / "sp" / "ro.json", json.dumps(doc, indent=4))
    path = policy_file(tmp_path / "sub", 'session_policy = "sp/ro.json"')
    role = load_policy(path).role("app")
    assert role.session_policy == json.dumps(doc, separators=(",", ":"))
    assert role.session_policy_path == tmp_path / "sub" / "sp" / "ro.json"


def test_session_policy_missing(tmp_path):
    msg = error_of(policy_file(tmp_path, 'session_policy = "nope.json"'))
    assert "role 'app': session_policy" in msg and "nope.json" in msg and "does not exist" in msg


def test_session_policy_invalid_json(tmp_path):
    write(tmp_path / "bad.json", '{"Statement": [}')
    path = policy_file(tmp_path, 'session_policy = "bad.json"')
    msg = error_of(path)
    assert str(path) in msg and "role 'app'" in msg and "bad.json is not valid JSON" in msg


def test_session_policy_without_statement(tmp_path):
    write(tmp_path / "empty.json", '{"Version": "2012-10-17"}')
    assert '"Statement"' in error_of(policy_file(tmp_path, 'session_policy = "empty.json"'))


def test_session_policy_over_2048_characters(tmp_path):
    actions = [f"service{i}:DescribeSomethingRatherLong" for i in range(80)]
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}  # fmt: skip
    size = len(json.dumps(doc, separators=(",", ":")))
    assert size > 2048
    write(tmp_path / "big.json", json.dumps(doc))
    msg = error_of(policy_file(tmp_path, 'session_policy = "big.json"'))
    assert f"is {size} characters minified" in msg and "2048" in msg and "role 'app'" in msg


def test_session_policy_of_exactly_2048_characters_is_accepted(tmp_path):
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:List*", "Resource": "*", "Sid": ""}]}  # fmt: skip
    pad = 2048 - len(json.dumps(doc, separators=(",", ":")))
    doc["Statement"][0]["Sid"] = "x" * pad
    write(tmp_path / "edge.json", json.dumps(doc))
    role = load_policy(policy_file(tmp_path, 'session_policy = "edge.json"')).role("app")
    assert role.session_policy is not None and len(role.session_policy) == 2048


# --- on_call ----------------------------------------------------------------------------------


def test_on_call_only_role(tmp_path):
    body = '[roles.app.on_call]\nschedules = ["PS1"]\nservices = ["PSV1", "PSV2"]\n'
    on_call = load_policy(policy_file(tmp_path, body)).role("app").on_call
    assert on_call is not None
    assert (on_call.escalation_policies, on_call.schedules, on_call.services) == (
        (),
        ("PS1",),
        ("PSV1", "PSV2"),
    )
    assert on_call.max_escalation_level is None


def test_on_call_needs_an_id(tmp_path):
    msg = error_of(policy_file(tmp_path, "[roles.app.on_call]\nschedules = []\n"))
    assert "on_call: needs at least one PagerDuty id" in msg


def test_on_call_string_instead_of_list(tmp_path):
    msg = error_of(policy_file(tmp_path, '[roles.app.on_call]\nschedules = "PS1"\n'))
    assert "on_call: schedules must be a list of strings, got a string" in msg


def test_bool_where_int_expected(tmp_path):
    body = '[roles.app.on_call]\nschedules = ["PS1"]\nmax_escalation_level = true\n'
    msg = error_of(policy_file(tmp_path, body))
    assert "max_escalation_level must be an integer, got a boolean" in msg
    body = '[roles.app.approval]\napprovers = ["group:sre"]\nmin_approvals = true\n'
    assert "min_approvals must be an integer, got a boolean" in error_of(
        policy_file(tmp_path, body)
    )


def test_escalation_level_must_be_positive(tmp_path):
    body = '[roles.app.on_call]\nschedules = ["PS1"]\nmax_escalation_level = 0\n'
    assert "max_escalation_level must be at least 1" in error_of(policy_file(tmp_path, body))


def test_on_call_error_points_at_its_own_key(tmp_path):
    path = policy_file(tmp_path, '[roles.app.on_call]\nschedules = "PS1"\n')
    line = path.read_text().splitlines().index('schedules = "PS1"') + 1
    assert error_of(path).startswith(f"{path}:{line}: role 'app': on_call: schedules")


def test_on_call_must_be_a_table(tmp_path):
    assert "on_call must be a table, got a list" in error_of(
        policy_file(tmp_path, 'on_call = ["PS1"]\n[roles.app.approval]\napprovers = ["a@b.io"]')
    )


# --- approval ---------------------------------------------------------------------------------


def test_group_that_does_not_exist(tmp_path):
    body = '[roles.app.approval]\napprovers = ["group:sres"]\n'
    msg = error_of(policy_file(tmp_path, body))
    assert "approval: approvers: group 'sres' does not exist; did you mean 'group:sre'?" in msg


@pytest.mark.parametrize(
    "entry", ["bob", "bob@localhost", "has space@example.com", "arn:aws:s3:::bucket"]
)
def test_bad_approver_entry(tmp_path, entry):
    body = f'[roles.app.approval]\napprovers = ["{entry}"]\n'
    assert f"approvers: '{entry}' is not" in error_of(policy_file(tmp_path, body))


def test_approvers_must_not_be_empty(tmp_path):
    body = "[roles.app.approval]\napprovers = []\n"
    assert "approvers must name at least one approver" in error_of(policy_file(tmp_path, body))


def test_min_approvals_beyond_reachable_people(tmp_path):
    body = '[roles.app.approval]\napprovers = ["group:sre", "BOB@example.com"]\nmin_approvals = 3\n'
    msg = error_of(policy_file(tmp_path, body))
    assert "min_approvals is 3 but the approvers are only 2 distinct people" in msg


def test_min_approvals_counts_an_arn_as_the_person_it_maps_to(tmp_path):
    extra = f'[identities]\n"{BOB_ARN}" = "bob@example.com"\n'
    body = f'[roles.app.approval]\napprovers = ["group:sre", "{BOB_ARN}"]\nmin_approvals = 3\n'
    assert "only 2 distinct people" in error_of(policy_file(tmp_path, body, extra=extra))
    body = body.replace("min_approvals = 3", "min_approvals = 2")
    assert load_policy(policy_file(tmp_path, body, extra=extra)).role("app").approval


def test_request_ttl(tmp_path):
    body = '[roles.app.approval]\napprovers = ["a@b.io"]\nrequest_ttl = "1h30m"\n'
    approval = load_policy(policy_file(tmp_path, body)).role("app").approval
    assert approval is not None and approval.request_ttl == timedelta(hours=1, minutes=30)
    body = '[roles.app.approval]\napprovers = ["a@b.io"]\nrequest_ttl = "soon"\n'
    assert "approval: request_ttl: invalid duration 'soon'" in error_of(policy_file(tmp_path, body))


# --- Policy methods ---------------------------------------------------------------------------


@pytest.fixture
def matching_policy(tmp_path) -> Policy:
    extra = f'[identities]\n"{CI_ARN}" = "ci-bot@example.com"\n'
    body = f'[roles.app.approval]\napprovers = ["group:sre", "Carol@Example.com", "{CI_ARN}"]\n'
    return load_policy(policy_file(tmp_path, body, extra=extra))


def test_approver_matches_via_group(matching_policy):
    role = matching_policy.role("app")
    assert matching_policy.approver_matches(role, "dave@example.com", "arn:aws:sts::1:x")
    assert matching_policy.approver_matches(role, "bob@example.com", BOB_ARN)


def test_approver_matches_email_case_insensitively(matching_policy):
    role = matching_policy.role("app")
    assert matching_policy.approver_matches(role, "carol@example.com", "arn:aws:iam::1:user/c")
    assert matching_policy.approver_matches(role, "CAROL@example.COM", "arn:aws:iam::1:user/c")


def test_approver_matches_via_arn(matching_policy):
    role = matching_policy.role("app")
    assert matching_policy.approver_matches(role, "", CI_ARN)
    assert not matching_policy.approver_matches(role, "", "arn:aws:iam::123456789012:user/ci-bot-2")


def test_approver_does_not_match_a_stranger(matching_policy):
    role = matching_policy.role("app")
    assert not matching_policy.approver_matches(
        role, "mallory@example.com", "arn:aws:iam::123456789012:user/mallory"
    )
    assert not matching_policy.approver_matches(role, "sre", "group:sre")


def test_approvers_display_expands_groups(matching_policy):
    assert matching_policy.approvers_display(matching_policy.role("app")) == [
        CI_ARN,
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
    ]


def test_unknown_role_suggests_the_closest(matching_policy):
    with pytest.raises(UsageError, match=r"^unknown role 'ap'; did you mean 'app'\?$"):
        matching_policy.role("ap")
    with pytest.raises(UsageError, match=r"^unknown role 'zzzzzz'; known roles: app$"):
        matching_policy.role("zzzzzz")


# --- [identities] session_name_roles and bounds -----------------------------------------------

DEPLOY_ROLE = "arn:aws:iam::123456789012:role/deploy"
DEPLOY_BOB = "arn:aws:sts::123456789012:assumed-role/deploy/bob@example.com"


def test_session_name_roles_are_read_beside_the_mapping(tmp_path):
    extra = (
        f'[identities]\n"{CI_ARN}" = "ci@example.com"\n'
        f'session_name_roles = ["{DEPLOY_ROLE}", "arn:aws:iam::123456789012:role/ci-*"]\n'
    )
    policy = load_policy(policy_file(tmp_path, extra=extra))
    assert policy.identities == {CI_ARN: "ci@example.com"}
    assert policy.session_name_roles == (DEPLOY_ROLE, "arn:aws:iam::123456789012:role/ci-*")
    assert policy.identity.session_name_roles == policy.session_name_roles


def test_session_name_roles_merge_across_files(tmp_path):
    extra = f'[identities]\nsession_name_roles = ["{DEPLOY_ROLE}"]\n'
    policy_file(tmp_path, name="a.toml", extra=extra)
    write(
        tmp_path / "b.toml",
        'version = 1\n[identities]\nsession_name_roles = ["arn:aws:iam::123456789012:role/x"]\n',
    )
    assert load_policy(tmp_path).session_name_roles == (
        DEPLOY_ROLE,
        "arn:aws:iam::123456789012:role/x",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f'"{DEPLOY_ROLE}"', "must be a list of strings, got a string"),
        ("[1]", "identities.session_name_roles[0] must be a non-empty string, got an integer"),
        ('["deploy"]', "'deploy' is not a role ARN like arn:aws:iam::123456789012:role/NAME"),
        ('["arn:aws:iam::123456789012:user/x"]', "is not a role ARN"),
        ('["arn:aws:iam::123456789012:role/path/deploy"]', "no role path"),
        ('["arn:aws:iam::123456789012:role/*"]', "would trust the session names of every role"),
        ('["arn:aws:iam::*:role/deploy"]', "a literal account"),
        ('["arn:aws:iam::12345:role/deploy"]', "is not a role ARN"),
        ('["arn:*:iam::123456789012:role/deploy"]', "is not a role ARN"),
    ],
)
def test_session_name_roles_are_checked(tmp_path, value, expected):
    extra = f"[identities]\nsession_name_roles = {value}\n"
    assert expected in error_of(policy_file(tmp_path, extra=extra))


def test_approver_arn_of_an_untrusted_session_is_not_a_person(tmp_path):
    body = f'[roles.app.approval]\napprovers = ["{DEPLOY_BOB}"]\n'
    policy = load_policy(policy_file(tmp_path, body))
    role = policy.role("app")
    # the ARN itself matches; the person its session name claims does not
    assert policy.approver_matches(role, "", DEPLOY_BOB)
    assert not policy.approver_matches(role, "bob@example.com", "arn:aws:iam::123456789012:user/b")
    extra = f'[identities]\nsession_name_roles = ["{DEPLOY_ROLE}"]\n'
    policy = load_policy(policy_file(tmp_path, body, extra=extra))
    assert policy.approver_matches(role, "bob@example.com", "arn:aws:iam::123456789012:user/b")


@pytest.mark.parametrize(
    ("ttl", "ok"), [("7d", False), ("168h", True), ("169h", False), ("999999999h", False)]
)
def test_request_ttl_is_bounded(tmp_path, ttl, ok):
    body = f'[roles.app.approval]\napprovers = ["a@b.io"]\nrequest_ttl = "{ttl}"\n'
    if ok:
        assert load_policy(policy_file(tmp_path, body)).role("app").approval
    else:
        assert "request_ttl" in error_of(policy_file(tmp_path, body))


def test_long_request_ttl_names_the_limit(tmp_path):
    body = '[roles.app.approval]\napprovers = ["a@b.io"]\nrequest_ttl = "200h"\n'
    msg = error_of(policy_file(tmp_path, body))
    assert "request_ttl must be between 1m and 168h" in msg


def test_huge_max_duration_is_a_policy_error(tmp_path):
    msg = error_of(policy_file(tmp_path, 'max_duration = "99999999999999999999h"\n'))
    assert "max_duration: invalid duration" in msg and "the longest is" in msg


def test_emails_in_a_policy_follow_the_identity_rule(tmp_path):
    body = '[roles.app.approval]\napprovers = ["a@b..c"]\n'
    assert "'a@b..c' is not an email" in error_of(policy_file(tmp_path, body))


# --- errors point at the offending key's own line -----------------------------------------
LINED = """version = 1

[groups]
sre = ["bob@example.com", "dave@example.com"]

# the role
[roles.app]
description = "the app"
arn = "arn:aws:iam::123456789012:role/app"
max_duraton = "2h"
{more}
[roles.app.approval]
approvers = ["group:sre"]
{approval}
"""


def lined(tmp_path: Path, more: str = "", approval: str = "", head: str = "") -> Path:
    path = tmp_path / "p.toml"
    path.write_text(head + LINED.format(more=more, approval=approval))
    return path


def line_of(path: Path, text: str) -> int:
    return path.read_text().splitlines().index(text) + 1


def test_a_typo_on_line_11_is_reported_at_line_11_not_the_role_header(tmp_path):
    path = lined(tmp_path, head="\n")  # [roles.app] on line 8, the typo on line 11
    assert line_of(path, "[roles.app]") == 8 and line_of(path, 'max_duraton = "2h"') == 11
    assert error_of(path).startswith(f"{path}:11: role 'app': unknown key 'max_duraton'")


def test_a_top_level_table_typo_has_a_line(tmp_path):
    path = lined(tmp_path, approval='\n[group]\nops = ["a@example.com"]')
    path.write_text(path.read_text().replace('max_duraton = "2h"', 'max_duration = "2h"'))
    assert error_of(path) == (
        f"{path}:{line_of(path, '[group]')}: unknown key 'group'; did you mean 'groups'?"
    )


def test_a_top_level_key_typo_and_a_bad_version_have_their_lines(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('# policy\nversion = 2\nrolez = 1\n[groups]\nsre = ["b@example.com"]\n')
    messages = [str(e) for e in check_policy(path).errors]
    assert f"{path}:3: unknown key 'rolez'; did you mean 'roles'?" in messages
    assert f"{path}:2: version must be 1, got 2" in messages


def test_value_and_sub_table_errors_point_at_their_keys(tmp_path):
    path = lined(tmp_path, approval="min_approvals = 0")
    path.write_text(path.read_text().replace('max_duraton = "2h"', 'max_duration = "2h"'))
    assert error_of(path).startswith(
        f"{path}:{line_of(path, 'min_approvals = 0')}: role 'app': approval: min_approvals"
    )
    path = lined(tmp_path, more='[roles.app.on_cal]\nschedules = ["PS1"]')
    path.write_text(path.read_text().replace('max_duraton = "2h"', 'max_duration = "2h"'))
    messages = [str(e) for e in check_policy(path).errors]
    assert messages == [
        f"{path}:{line_of(path, '[roles.app.on_cal]')}: role 'app': unknown key 'on_cal'; "
        "did you mean 'on_call'?"
    ]


def test_a_missing_group_points_at_the_approvers_line(tmp_path):
    path = lined(tmp_path)
    text = path.read_text().replace('max_duraton = "2h"', 'max_duration = "2h"')
    path.write_text(text.replace('approvers = ["group:sre"]', 'approvers = ["group:sra"]'))
    line = line_of(path, 'approvers = ["group:sra"]')
    assert error_of(path).startswith(f"{path}:{line}: role 'app': approval: approvers:")
