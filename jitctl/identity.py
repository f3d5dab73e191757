"""Who the caller is: the person behind the AWS principal STS reports (shared/CONTRACT.md).

Never a name the caller types. Order: the policy's [identities] table, an IAM user name that
is an email, an assumed-role session name that is an email (IAM Identity Center's way).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from jitctl.errors import IdentityError
from jitctl.models import Caller

EMAIL = re.compile(r"^[^@\s/:]+@[^@\s/:]+\.[^@\s/:.]+$")
_ARN = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::(\d{12}):(.+)$")


def person_for(arn: str, identities: Mapping[str, str]) -> str | None:
    """The person (lower-case email) for a principal ARN, or None when no rule maps it."""
    if arn in identities:
        return identities[arn].lower()
    m = _ARN.match(arn)
    if not m:
        return None
    service, _account, resource = m.groups()
    if service == "iam" and resource.startswith("user/"):
        name = resource.rsplit("/", 1)[-1]  # user names may carry a path: user/eng/alice@x.com
        return name.lower() if EMAIL.match(name) else None
    if service == "sts" and resource.startswith("assumed-role/"):
        parts = resource.split("/")
        if len(parts) >= 3 and EMAIL.match(parts[-1]):
            return parts[-1].lower()
    return None


def resolve_caller(arn: str, account: str, identities: Mapping[str, str]) -> Caller:
    person = person_for(arn, identities)
    if person is None:
        raise IdentityError(
            f"cannot tell which person {arn} is",
            f'map it in the policy: [identities] "{arn}" = "you@example.com"',
        )
    return Caller(arn=arn, account=account, person=person)
