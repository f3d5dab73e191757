"""Who the caller is: the person behind the AWS principal STS reports (shared/CONTRACT.md).

Never a name the caller types. In order: the policy's [identities] table; an IAM user whose
name is an email; an assumed-role session name that is an email, but only for roles whose
session names AWS sets (IAM Identity Center's) or that the policy lists in
``[identities] session_name_roles``. Any other session name is whatever the caller passed to
``sts:AssumeRole``, so it names nobody: with her own keys alice could call herself bob.

A role's name proves nothing either: whoever may create roles can name one
``AWSReservedSSO_evil``. So a session name counts only once IAM's record of the role
(iam:GetRole, ``RoleLookup``) says so: its unique id is the one in the caller's ``UserId``
(``AROA...:session``; a deleted and re-created role has another, so it inherits nothing) and,
for Identity Center, its path is ``/aws-reserved/sso.amazonaws.com/``, which IAM lets nobody
but AWS create roles under.

This module is the one place that turns an ARN into a person; the policy code uses it too
(``person_for``: what an ARN the admin wrote names, with no caller to check).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from jitctl.errors import IdentityError
from jitctl.models import Caller

# Deliberately narrower than RFC 5322: dot-atoms only, so "a@b..c", ".a@b.c" and "a@b" are not
# people. IAM user and session names allow only [\w+=,.@-], so nothing real is lost.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+", re.ASCII)

PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
SSO_ROLE_PREFIX = "AWSReservedSSO_"  # IAM Identity Center names its roles so...
SSO_ROLE_PATH = "/aws-reserved/sso.amazonaws.com/"  # ...and keeps them here (IAM's record)
_NAME = r"[\w+=,.@-]{1,128}"
_PRINCIPAL = re.compile(
    rf"arn:(?P<partition>{'|'.join(PARTITIONS)}):(?P<service>iam|sts)::(?P<account>\d{{12}}):"
    rf"(?:(?P<user>user/(?:{_NAME}/)*(?P<user_name>{_NAME}))"
    rf"|(?P<session>assumed-role/(?P<role>{_NAME})/(?P<session_name>{_NAME})))",
    re.ASCII,
)


def is_email(text: str) -> bool:
    return EMAIL.fullmatch(text) is not None


@dataclass(frozen=True)
class Principal:
    """The parts of a user or assumed-role ARN that the identity rule looks at."""

    partition: str
    account: str
    user_name: str | None = None  # an IAM user (its path dropped)
    role_name: str | None = None  # an assumed role...
    session_name: str | None = None  # ...and the session name its caller chose (mostly)

    @property
    def role_arn(self) -> str | None:
        """The role an assumed-role session belongs to, as session_name_roles names it."""
        if self.role_name is None:
            return None
        return f"arn:{self.partition}:iam::{self.account}:role/{self.role_name}"


def parse_role_arn(arn: str) -> tuple[str, str, str] | None:
    """(partition, account, role name) of a role ARN, its path dropped; None if it is not one."""
    match = re.fullmatch(r"arn:([\w-]+):iam::(\d{12}):role/(?:[^/]+/)*([\w+=,.@-]+)", arn)
    return (match[1], match[2], match[3]) if match else None


def parse_principal(arn: str) -> Principal | None:
    """A user or assumed-role ARN, strictly (partition, 12-digit account, names); else None."""
    m = _PRINCIPAL.fullmatch(arn)
    if m is None:
        return None
    service = m["service"]
    if m["user"] and service == "iam":
        return Principal(m["partition"], m["account"], user_name=m["user_name"])
    if m["session"] and service == "sts":
        return Principal(
            m["partition"], m["account"], role_name=m["role"], session_name=m["session_name"]
        )
    return None  # iam:assumed-role/... or sts:user/... do not exist


LISTED, SSO = "listed", "sso"  # who vouches for a role's session names


@dataclass(frozen=True)
class RoleRecord:
    """What IAM records of a role (iam:GetRole): its ARN with its path, unique id and path."""

    arn: str
    role_id: str  # AROA..., never reused: a role made again under the same name gets another
    path: str


# IAM's record of the role a session belongs to, given the role's unique id the session names
# (so a cache can key on it); None when IAM has no such role. Raises IdentityError (exit 2)
# when it may not ask, AwsUnavailable (exit 5) when IAM cannot be reached.
RoleLookup = Callable[[Principal, str], "RoleRecord | None"]


@dataclass(frozen=True)
class IdentityRules:
    """The policy's [identities] settings: ARN -> person, and roles whose session names count."""

    mapping: Mapping[str, str] = field(default_factory=dict)  # principal ARN -> email
    session_name_roles: tuple[str, ...] = ()  # role ARNs or fnmatch globs over them
    # role ARN -> policy role name: the roles jitctl itself hands out sessions of
    issued_roles: Mapping[str, str] = field(default_factory=dict)

    def issued_role(self, principal: Principal) -> str | None:
        """The policy role this session is of, when it is one jitctl hands out (a session ARN
        drops the role's path: compared by account and name)."""
        for arn, name in self.issued_roles.items():
            found = parse_role_arn(arn)
            if found == (principal.partition, principal.account, principal.role_name):
                return name
        return None

    @classmethod
    def of(cls, value: IdentityRules | Mapping[str, str]) -> IdentityRules:
        """Accept a bare [identities] mapping too: then no session name is trusted but SSO's."""
        return value if isinstance(value, IdentityRules) else cls(mapping=dict(value))

    def session_name_source(self, principal: Principal) -> str | None:
        """Who would vouch for this session's name, once IAM confirms the role: LISTED (the
        policy lists the role), SSO (named like Identity Center's), or None (the caller)."""
        role_arn = principal.role_arn
        if role_arn is None or principal.role_name is None:
            return None  # not an assumed-role session
        # case-sensitive: a pattern that differs only in case trusts nothing (fails closed)
        if any(fnmatchcase(role_arn, pattern) for pattern in self.session_name_roles):
            return LISTED
        return SSO if principal.role_name.startswith(SSO_ROLE_PREFIX) else None

    def trusts_session_names(self, principal: Principal) -> bool:
        return self.session_name_source(principal) is not None


def person_for(arn: str, rules: IdentityRules | Mapping[str, str]) -> str | None:
    """The person (lower-case email) an ARN names, or None when no rule maps it. For an
    assumed-role session this is only a claim until ``resolve_caller`` has IAM confirm the
    role; the policy code uses it as is for ARNs the admin wrote."""
    rules = IdentityRules.of(rules)
    if arn in rules.mapping:
        return rules.mapping[arn].lower()
    principal = parse_principal(arn)
    if principal is None:
        return None
    name = principal.user_name
    if name is None and rules.trusts_session_names(principal):
        name = principal.session_name
    return name.lower() if name is not None and is_email(name) else None


def resolve_caller(
    arn: str,
    account: str,
    rules: IdentityRules | Mapping[str, str],
    *,
    user_id: str,
    roles: RoleLookup,
) -> Caller:
    """The caller as a person; an IdentityError (exit 2) saying how to map them otherwise.

    ``user_id`` is STS's UserId for the same credentials as ``arn``; ``roles`` asks IAM about
    the role when the person comes from a session name."""
    rules = IdentityRules.of(rules)
    person = person_for(arn, rules)
    if person is None:
        raise IdentityError(*_unmapped(arn, rules))
    principal = parse_principal(arn)
    if arn not in rules.mapping and principal is not None and principal.role_name is not None:
        problem = _role_problem(principal, rules, user_id, roles)
        if problem:
            raise IdentityError(f"cannot tell which person {arn} is: {problem}", _map_hint(arn))
    return Caller(arn=arn, account=account, person=person)


def _role_problem(
    principal: Principal, rules: IdentityRules, user_id: str, roles: RoleLookup
) -> str | None:
    """Why IAM's record of the session's role does not vouch for its name (None: it does)."""
    role_id, _, session = user_id.partition(":")
    name = principal.role_name
    if session != principal.session_name or not role_id.startswith("AROA"):
        return f"STS's UserId {user_id!r} is not a session of role {name}"
    record = roles(principal, role_id)
    if record is None:
        return f"IAM has no role {name} in account {principal.account}"
    expected = f"arn:{principal.partition}:iam::{principal.account}:role{record.path}{name}"
    if record.arn != expected:
        return f"IAM answered for {record.arn}, not role {name} of account {principal.account}"
    if record.role_id != role_id:
        return (
            f"the session belongs to an earlier role named {name} (its id {role_id}; "
            f"IAM's role of that name now is {record.role_id}), which nobody vouches for"
        )
    source = rules.session_name_source(principal)
    if source == SSO and not record.path.startswith(SSO_ROLE_PATH):
        return (
            f"role {name} is named like an IAM Identity Center role, but IAM keeps it at "
            f"path {record.path}, not {SSO_ROLE_PATH}, so whoever assumes it chooses the "
            "session name"
        )
    return None


def _map_hint(arn: str) -> str:
    return f'map the exact ARN in the policy: [identities] "{arn}" = "you@example.com"'


def _unmapped(arn: str, rules: IdentityRules) -> tuple[str, str]:
    """What is wrong and how to map the caller (IdentityError's message and hint)."""
    mapping = f'[identities] "{arn}" = "you@example.com"'
    principal = parse_principal(arn)
    if principal is not None and (role := rules.issued_role(principal)) is not None:
        # mapping a jit session to a person would let whoever holds one act as them: never advise it
        return (
            f"{arn} is a session of {role}, which jitctl issued: jitctl needs your own AWS "
            "credentials, not a grant's",
            "switch back to your own credentials (unset AWS_PROFILE, or the AWS_ACCESS_KEY_ID... "
            "a `--format env` eval set) and run jitctl again",
        )
    if principal is None or principal.role_arn is None or rules.trusts_session_names(principal):
        return f"cannot tell which person {arn} is", f"map it in the policy: {mapping}"
    return (
        f"cannot tell which person {arn} is: the session name of role {principal.role_name} "
        "is chosen by whoever assumes the role, so it names nobody",
        f"map the exact ARN in the policy: {mapping}, or, if only AWS or a trusted system sets "
        f'that role\'s session names, list it: [identities] session_name_roles = ["{principal.role_arn}"]',
    )
