"""Checking the gate: does every policy role trust the broker's role, and nobody else?

The broker is a gate only if no one can go around it. For each role in the policy this reads
the role's trust policy (``iam:GetRole``) and reports

* **holes**: principals other than the broker's role that an ``Allow`` lets assume the role
  (``sts:AssumeRole``, ``…WithSAML``, ``…WithWebIdentity``): ``*``, account roots and bare
  account ids, other roles, users, sessions, services, federated providers, and ``NotPrincipal``
  (everyone but the listed). A condition on such a statement is reported, not trusted: the one
  condition we can prove closes the hole is ``aws:PrincipalArn`` required to equal the broker's
  role ARN exactly (a missing key fails such a test, so federated callers are kept out too);
* **missing**: the actions the broker needs that the trust policy does not allow it
  (``sts:AssumeRole``, ``sts:SetSourceIdentity``, ``sts:TagSession``), or denies it outright.

IAM matches actions case-insensitively with ``*`` and ``?`` wildcards; ``Principal``,
``Action`` and their values may each be a string or a list. Core module: no typer or rich.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from jitctl.errors import UsageError
from jitctl.policy.load import Policy

ASSUME_ACTIONS = ("sts:AssumeRole", "sts:AssumeRoleWithSAML", "sts:AssumeRoleWithWebIdentity")
BROKER_ACTIONS = ("sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/(?:[\w+=,.@/-]+/)?[\w+=,.@-]+$")
# Condition operators that, with a wildcard-free value, mean "equals" (no IfExists: a missing
# key must fail the test, not pass it).
_EQUALS_OPERATORS = {"stringequals", "arnequals", "stringlike", "arnlike"}


@dataclass(frozen=True)
class Hole:
    """One principal besides the broker that the trust policy lets assume the role."""

    principal: str  # "*", "AWS:arn:aws:iam::123456789012:root", "Service:ec2.amazonaws.com", ...
    statement: str  # its Sid, or "#N" (1-based) when it has none
    conditional: bool  # the statement has conditions we cannot prove close the hole

    def describe(self) -> str:
        return f"trusts {self.principal}" + (" (with conditions)" if self.conditional else "")


@dataclass(frozen=True)
class RoleFinding:
    """What the gate looks like on one policy role."""

    role: str  # the policy's name for it
    arn: str
    holes: tuple[Hole, ...] = ()
    missing: tuple[str, ...] = ()  # broker actions the trust policy does not allow
    error: str | None = None  # the trust policy could not be read: nothing is proven

    @property
    def gated(self) -> bool:
        return not self.holes and not self.missing and self.error is None

    def problems(self) -> list[str]:
        """One phrase per problem, for the human line."""
        found = [f"hole: {hole.describe()}" for hole in self.holes]
        found += [f"lacks {action} for the broker" for action in self.missing]
        return found + ([f"cannot check: {self.error}"] if self.error else [])

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "arn": self.arn,
            "gated": self.gated,
            "holes": [
                {"principal": h.principal, "statement": h.statement, "conditional": h.conditional}
                for h in self.holes
            ],
            "missing": list(self.missing),
            "error": self.error,
        }


def check_broker_arn(arn: str) -> str:
    """The broker's role ARN as given, or a UsageError saying what a role ARN looks like."""
    if not ROLE_ARN.match(arn):
        raise UsageError(
            f"--broker-role {arn!r} is not an IAM role ARN",
            "pass the broker's role, e.g. arn:aws:iam::123456789012:role/jitctl-broker "
            "(the stack's BrokerRoleArn output)",
        )
    return arn


def check_gate(policy: Policy, iam_client: Any, broker_role_arn: str) -> list[RoleFinding]:
    """A finding for every policy role, in the policy's order."""
    broker = check_broker_arn(broker_role_arn)
    return [
        RoleFinding(name, "", error=NO_TRUST_POLICY)
        if role.identity_center
        else _check_role(name, role.arn, iam_client, broker)
        for name, role in policy.roles.items()
    ]


# An identity_center role is no IAM role of ours: no trust policy proves who may grant it.
NO_TRUST_POLICY = (
    "an identity_center role has no trust policy to prove: whoever may call "
    "sso:CreateAccountAssignment can grant it; check that only the broker's role may "
    "(deploy/broker.yaml gives it to the broker alone)"
)


def _check_role(name: str, arn: str, iam_client: Any, broker: str) -> RoleFinding:
    try:
        document = read_trust_policy(iam_client, arn)
    except Unreadable as exc:
        return RoleFinding(name, arn, error=str(exc))
    return analyse(name, arn, document, broker)


def analyse(name: str, arn: str, document: dict[str, Any], broker: str) -> RoleFinding:
    """The finding for one trust policy document (already parsed)."""
    statements = list(_statements(document))
    holes = tuple(hole for sid, st in statements for hole in _holes(sid, st, broker))
    missing = tuple(a for a in BROKER_ACTIONS if not _broker_allowed(a, statements, broker))
    return RoleFinding(name, arn, holes=holes, missing=missing)


# --------------------------------------------------------------------- reading IAM


class Unreadable(Exception):
    """This role's trust policy cannot be read (no such role, access denied)."""


def read_trust_policy(iam_client: Any, role_arn: str) -> dict[str, Any]:
    """The role's trust policy. Refusals about this role raise Unreadable (the caller reports
    the role as unchecked); AWS being unreachable or the caller's login failing raise the
    usual jitctl errors (exit 5 or 2): nothing is reported as gated either way."""
    from botocore.exceptions import ClientError

    from jitctl.aws import translate_error
    from jitctl.revocation.policy import iam_role_name

    try:
        role = iam_client.get_role(RoleName=iam_role_name(role_arn))["Role"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchEntity":
            raise Unreadable("no such role in this account") from None
        if code in ("AccessDenied", "AccessDeniedException"):
            raise Unreadable("access denied (the checker needs iam:GetRole)") from None
        raise translate_error(exc, f"cannot read the trust policy of {role_arn}") from exc
    except Exception as exc:
        raise translate_error(exc, f"cannot read the trust policy of {role_arn}") from exc
    if role.get("Arn") != role_arn:
        # Same name, other account or path: the policy's role is not the one we read.
        raise Unreadable(f"IAM's role by that name is {role.get('Arn')}, not this ARN")
    return _document(role.get("AssumeRolePolicyDocument"))


def _document(raw: Any) -> dict[str, Any]:
    """boto3 parses the URL-encoded JSON; a raw string (other clients) is decoded here."""
    if isinstance(raw, str):
        try:
            raw = json.loads(unquote(raw))
        except ValueError:
            raise Unreadable("its trust policy is not JSON") from None
    if not isinstance(raw, dict):
        raise Unreadable("it has no trust policy document")
    return raw


# --------------------------------------------------------------------- the policy language


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _statements(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for n, st in enumerate(_listed(document.get("Statement")), start=1):
        if isinstance(st, dict):
            yield str(st.get("Sid") or f"#{n}"), st


def _matches(pattern: str, action: str) -> bool:
    # fnmatch's [seq] is not IAM syntax: escape "[" so it is literal.
    return fnmatch.fnmatchcase(action.lower(), str(pattern).lower().replace("[", "[[]"))


def _covers(statement: dict[str, Any], action: str) -> bool:
    """Whether the statement's Action (or NotAction) takes in ``action``."""
    if "NotAction" in statement:
        return not any(_matches(p, action) for p in _listed(statement["NotAction"]))
    return any(_matches(p, action) for p in _listed(statement.get("Action")))


def _principals(value: Any) -> Iterator[str]:
    """ "*", or "TYPE:VALUE" for each principal of a Principal/NotPrincipal element."""
    if value == "*":
        yield "*"
        return
    if isinstance(value, dict):
        for kind, entries in value.items():
            for entry in _listed(entries):
                yield "*" if kind == "AWS" and entry == "*" else f"{kind}:{entry}"
        return
    for entry in _listed(value):  # not valid IAM, but never silently skipped
        yield f"?:{entry}"


def _is_broker(principal: str, broker: str) -> bool:
    return principal == f"AWS:{broker}"


def _includes_broker(principal: str, broker: str) -> bool:
    """Whether a principal element takes in the broker's role (itself, its account, or *)."""
    account = ROLE_ARN.match(broker).group(1)  # type: ignore[union-attr]  # check_broker_arn ran
    partition = broker.split(":")[1]
    return principal in ("*", f"AWS:{broker}", f"AWS:{account}") or principal == (
        f"AWS:arn:{partition}:iam::{account}:root"
    )


def _holes(sid: str, statement: dict[str, Any], broker: str) -> list[Hole]:
    if statement.get("Effect") != "Allow" or not any(_covers(statement, a) for a in ASSUME_ACTIONS):
        return []
    conditions = statement.get("Condition") or {}
    if _limited_to(conditions, broker):
        return []
    conditional = bool(conditions)
    if "NotPrincipal" in statement:
        listed = ", ".join(_principals(statement["NotPrincipal"]))
        return [Hole(f"everyone except {listed} (NotPrincipal)", sid, conditional)]
    return [
        Hole(p, sid, conditional)
        for p in _principals(statement.get("Principal"))
        if not _is_broker(p, broker)
    ]


def _limited_to(conditions: Any, broker: str) -> bool:
    """Whether the conditions provably admit the broker's role alone: aws:PrincipalArn must
    equal its ARN (conditions are ANDed, so one such test is enough whatever else is there)."""
    if not isinstance(conditions, dict):
        return False
    for operator, tests in conditions.items():
        if str(operator).lower() not in _EQUALS_OPERATORS or not isinstance(tests, dict):
            continue
        for key, values in tests.items():
            wanted = [str(v) for v in _listed(values)]
            if str(key).lower() == "aws:principalarn" and _all_broker(wanted, broker):
                return True
    return False


def _all_broker(values: Iterable[str], broker: str) -> bool:
    values = list(values)
    return bool(values) and all(v == broker and not set(v) & set("*?$") for v in values)


def _broker_allowed(action: str, statements: list[tuple[str, dict[str, Any]]], broker: str) -> bool:
    """Allowed to the broker by some statement, and not denied it outright (a Deny with
    conditions, e.g. "deny unless SourceIdentity is set", is the broker's to satisfy)."""
    allowed = denied = False
    for _sid, st in statements:
        if not _covers(st, action) or "NotPrincipal" in st:
            continue
        if not any(_includes_broker(p, broker) for p in _principals(st.get("Principal"))):
            continue
        if st.get("Effect") == "Allow":
            allowed = True
        elif st.get("Effect") == "Deny" and not st.get("Condition"):
            denied = True
    return allowed and not denied
