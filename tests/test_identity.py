import pytest

from jitctl.errors import ExitCode, IdentityError
from jitctl.identity.rule import (
    SSO_ROLE_PATH,
    IdentityRules,
    Principal,
    RoleRecord,
    is_email,
    parse_principal,
    person_for,
    resolve_caller,
)

SSO_SESSION = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_abc/carol@example.com"
DEPLOY_SESSION = "arn:aws:sts::123456789012:assumed-role/deploy/bob@example.com"
DEPLOY_ROLE = "arn:aws:iam::123456789012:role/deploy"
SSO_ID, DEPLOY_ID = "AROASSOSSOSSOSSO00001", "AROADEPLOYDEPLOY00002"


class Iam:
    """IAM's records of roles by name, as iam:GetRole would answer; counts the questions."""

    def __init__(self, *records: RoleRecord) -> None:
        self.records = {r.arn.rsplit("/", 1)[1]: r for r in records}
        self.asked = 0

    def lookup(self, principal: Principal, role_id: str) -> RoleRecord | None:
        self.asked += 1
        return self.records.get(principal.role_name or "")


def _role(name: str, role_id: str, path: str = "/", account: str = "123456789012") -> RoleRecord:
    return RoleRecord(f"arn:aws:iam::{account}:role{path}{name}", role_id, path)


GENUINE_SSO = _role("AWSReservedSSO_Admin_abc", SSO_ID, SSO_ROLE_PATH)
DEPLOY = _role("deploy", DEPLOY_ID)


def _resolve(arn: str, rules=None, iam: Iam | None = None, user_id: str | None = None):
    iam = iam or Iam(GENUINE_SSO, DEPLOY)
    session = arn.rsplit("/", 1)[1]
    role = iam.records.get(arn.rsplit("/", 2)[-2])
    user_id = user_id or f"{role.role_id if role else 'AROANONE'}:{session}"
    return resolve_caller(
        arn, "123456789012", rules or IdentityRules(), user_id=user_id, roles=iam.lookup
    )


@pytest.mark.parametrize(
    ("arn", "person"),
    [
        ("arn:aws:iam::123456789012:user/Alice@Example.com", "alice@example.com"),
        ("arn:aws:iam::123456789012:user/eng/bob@example.com", "bob@example.com"),
        ("arn:aws:iam::123456789012:user/eng/team-a/bob@example.com", "bob@example.com"),
        (SSO_SESSION, "carol@example.com"),
        ("arn:aws-us-gov:iam::123456789012:user/dave@example.com", "dave@example.com"),
        ("arn:aws-cn:iam::123456789012:user/erin@example.co.uk", "erin@example.co.uk"),
        ("arn:aws:iam::123456789012:user/first.last+jit@example.com", "first.last+jit@example.com"),
    ],
)
def test_email_principals_map_to_a_person(arn, person):
    assert person_for(arn, IdentityRules()) == person


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::123456789012:user/ci-bot",
        "arn:aws:sts::123456789012:assumed-role/deploy/i-0abc",
        # a session name is whatever the caller passed to AssumeRole: it names nobody
        DEPLOY_SESSION,
        "arn:aws:sts::123456789012:assumed-role/AWSReservedSSOAdmin/bob@example.com",
        "arn:aws:iam::123456789012:role/alice@example.com",  # a role, not a session
        "arn:aws:sts::123456789012:federated-user/bob@example.com",  # caller-chosen too
        "arn:aws:iam::123456789012:root",
        "arn:aws:iam::123456789012:user/a@b..c",  # not an email
        "arn:aws:iam::123456789012:user/.a@b.c",
        "arn:aws:iam::123456789012:user/a@b",
        "arn:aws:iam::123456789012:user/a@-b.c",
        "arn:aws:iam::12345:user/alice@example.com",  # 5-digit account
        "arn:aws:iam::1234567890123:user/alice@example.com",  # 13 digits
        "arn:aws-evil:iam::123456789012:user/alice@example.com",  # no such partition
        "arn:aws:sts::123456789012:user/alice@example.com",  # users live in iam, not sts
        "arn:aws:iam::123456789012:assumed-role/AWSReservedSSO_A/alice@example.com",
        "arn:aws:iam::123456789012:user/alice@example.com/",
        "arn:aws:iam::123456789012:user/alice@example.com\n",
        "not-an-arn",
        "",
    ],
)
def test_unmappable_principals(arn):
    assert person_for(arn, IdentityRules()) is None


def test_identities_table_wins():
    arn = "arn:aws:iam::123456789012:user/mallory@example.com"
    assert person_for(arn, IdentityRules({arn: "Alice@Example.com"})) == "alice@example.com"
    assert person_for(DEPLOY_SESSION, {DEPLOY_SESSION: "dave@example.com"}) == "dave@example.com"


@pytest.mark.parametrize(
    "pattern",
    [
        DEPLOY_ROLE,
        "arn:aws:iam::123456789012:role/dep*",
        "arn:aws:iam::123456789012:role/[cd]eploy",
    ],
)
def test_session_name_roles_trust_a_listed_role(pattern):
    rules = IdentityRules(session_name_roles=(pattern,))
    assert person_for(DEPLOY_SESSION, rules) == "bob@example.com"


@pytest.mark.parametrize(
    "pattern",
    [
        "arn:aws:iam::123456789012:role/deploy-prod",
        "arn:aws:iam::210987654321:role/deploy",  # another account
        "arn:aws-cn:iam::123456789012:role/deploy",  # another partition
        "arn:aws:iam::123456789012:role/Deploy",  # role names match case-sensitively here
    ],
)
def test_session_name_roles_do_not_trust_other_roles(pattern):
    assert person_for(DEPLOY_SESSION, IdentityRules(session_name_roles=(pattern,))) is None


def test_a_listed_role_still_needs_an_email_session_name():
    rules = IdentityRules(session_name_roles=(DEPLOY_ROLE,))
    assert person_for("arn:aws:sts::123456789012:assumed-role/deploy/a@b..c", rules) is None
    assert person_for("arn:aws:sts::123456789012:assumed-role/deploy/i-0abc", rules) is None


def test_a_bare_mapping_trusts_only_identity_center_sessions():
    assert person_for(SSO_SESSION, {}) == "carol@example.com"
    assert person_for(DEPLOY_SESSION, {}) is None


def test_parse_principal_drops_the_user_path_and_names_the_role():
    user = parse_principal("arn:aws:iam::123456789012:user/eng/bob@example.com")
    assert user is not None and user.user_name == "bob@example.com" and user.role_arn is None
    session = parse_principal(DEPLOY_SESSION)
    assert session is not None and session.role_arn == DEPLOY_ROLE
    assert session.session_name == "bob@example.com"


@pytest.mark.parametrize(
    ("text", "ok"),
    [("a@b.c", True), ("a.b@c.d.e", True), ("a@b..c", False), ("a..b@c.d", False)],
)
def test_is_email(text, ok):
    assert is_email(text) is ok


def test_unmapped_caller_is_a_usage_error_that_says_how_to_map():
    arn = "arn:aws:iam::123456789012:user/ci-bot"
    with pytest.raises(IdentityError) as info:
        _resolve(arn)
    assert info.value.exit_code == ExitCode.USAGE
    assert "[identities]" in str(info.value) and arn in str(info.value)


def test_a_spoofable_session_is_refused_with_both_ways_to_map_it():
    with pytest.raises(IdentityError) as info:
        _resolve(DEPLOY_SESSION)
    message = str(info.value)
    assert info.value.exit_code == ExitCode.USAGE
    assert f'[identities] "{DEPLOY_SESSION}"' in message
    assert f'session_name_roles = ["{DEPLOY_ROLE}"]' in message
    assert "\n" not in message


def test_resolve_caller_maps_a_listed_role():
    rules = IdentityRules(session_name_roles=(DEPLOY_ROLE,))
    caller = _resolve(DEPLOY_SESSION, rules)
    assert (caller.person, caller.arn, caller.account) == (
        "bob@example.com",
        DEPLOY_SESSION,
        "123456789012",
    )


def test_a_trusted_session_without_an_email_is_told_to_map_the_arn_only():
    arn = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_abc/carol"
    with pytest.raises(IdentityError) as info:
        _resolve(arn)
    assert f'[identities] "{arn}"' in str(info.value)
    assert "session_name_roles" not in str(info.value)


# --- IAM's record of the role decides, not its name (issue 20, item 1) ----------------------


def test_a_genuine_identity_center_session_names_its_person():
    iam = Iam(GENUINE_SSO)
    assert _resolve(SSO_SESSION, iam=iam).person == "carol@example.com"
    assert iam.asked == 1


@pytest.mark.parametrize("path", ["/", "/aws-reserved/", "/evil/aws-reserved/sso.amazonaws.com/"])
def test_a_role_merely_named_like_identity_centers_names_nobody(path):
    iam = Iam(_role("AWSReservedSSO_Admin_abc", SSO_ID, path))
    with pytest.raises(IdentityError) as info:
        _resolve(SSO_SESSION, iam=iam)
    assert info.value.exit_code == ExitCode.USAGE
    assert f"path {path}, not {SSO_ROLE_PATH}" in str(info.value)
    assert f'[identities] "{SSO_SESSION}"' in str(info.value)


@pytest.mark.parametrize(
    "rules", [IdentityRules(), IdentityRules(session_name_roles=(DEPLOY_ROLE,))]
)
def test_a_session_of_an_earlier_role_of_that_name_names_nobody(rules):
    arn = SSO_SESSION if not rules.session_name_roles else DEPLOY_SESSION
    session = arn.rsplit("/", 1)[1]
    with pytest.raises(IdentityError) as info:
        _resolve(arn, rules, user_id=f"AROAEARLIERROLE000009:{session}")
    assert "earlier role" in str(info.value) and "AROAEARLIERROLE000009" in str(info.value)


def test_a_listed_role_is_checked_by_its_unique_id_not_its_path():
    rules = IdentityRules(session_name_roles=(DEPLOY_ROLE,))
    assert _resolve(DEPLOY_SESSION, rules).person == "bob@example.com"
    with pytest.raises(IdentityError, match="IAM has no role deploy"):
        _resolve(DEPLOY_SESSION, rules, iam=Iam())


@pytest.mark.parametrize(
    "user_id",
    [
        f"{SSO_ID}:bob@example.com",  # another session of the role
        f"{SSO_ID}",
        "AIDAUSERUSERUSER00003",  # an IAM user's id
        f"AKIA0000:{'carol@example.com'}",
    ],
)
def test_a_user_id_that_is_not_this_session_names_nobody(user_id):
    with pytest.raises(IdentityError, match="is not a session of role"):
        _resolve(SSO_SESSION, user_id=user_id)


def test_a_record_of_another_account_names_nobody():
    other = _role("AWSReservedSSO_Admin_abc", SSO_ID, SSO_ROLE_PATH, account="210987654321")
    with pytest.raises(IdentityError, match="IAM answered for arn:aws:iam::210987654321"):
        _resolve(SSO_SESSION, iam=Iam(other))


def test_iam_is_asked_only_about_session_names():
    iam = Iam()
    mapped = "arn:aws:sts::123456789012:assumed-role/deploy/i-0abc"
    rules = IdentityRules({mapped: "dave@example.com"})
    assert _resolve(mapped, rules, iam=iam, user_id="AROAX:i-0abc").person == "dave@example.com"
    user = "arn:aws:iam::123456789012:user/alice@example.com"
    assert _resolve(user, iam=iam, user_id="AIDAALICE").person == "alice@example.com"
    with pytest.raises(IdentityError):
        _resolve(DEPLOY_SESSION, iam=iam)  # the caller chose this name: nothing to ask
    assert iam.asked == 0


# --- a session jitctl itself issued is never advised to be mapped (item 14) -----------------

ISSUED_ROLES = {"arn:aws:iam::123456789012:role/jit/prod-ro": "prod-readonly"}  # with a path


@pytest.mark.parametrize("session", ["r-1a2b3c.1", "alice@example.com"])
def test_a_session_of_a_role_jitctl_issues_is_told_to_switch_back(session):
    """Mapping a grant's session to a person would let whoever holds it act as them. The
    session's ARN drops the role's path, so the policy's role ARN is matched without it."""
    arn = f"arn:aws:sts::123456789012:assumed-role/prod-ro/{session}"
    with pytest.raises(IdentityError) as info:
        _resolve(arn, IdentityRules(issued_roles=ISSUED_ROLES))
    assert info.value.exit_code == ExitCode.USAGE
    assert info.value.message.endswith(
        "is a session of prod-readonly, which jitctl issued: "
        "jitctl needs your own AWS credentials, not a grant's"
    )
    assert "switch back to your own credentials" in str(info.value)
    assert "[identities]" not in str(info.value) and "session_name_roles" not in str(info.value)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sts::210987654321:assumed-role/prod-ro/r-1a2b3c.1",  # another account's
        "arn:aws:sts::123456789012:assumed-role/prod-rw/r-1a2b3c.1",  # another role
        "arn:aws-cn:sts::123456789012:assumed-role/prod-ro/r-1a2b3c.1",  # another partition
    ],
)
def test_a_session_of_a_role_jitctl_does_not_issue_gets_the_mapping_advice(arn):
    with pytest.raises(IdentityError) as info:
        _resolve(arn, IdentityRules(issued_roles=ISSUED_ROLES))
    assert "which jitctl issued" not in str(info.value)
    assert f'[identities] "{arn}"' in str(info.value)
