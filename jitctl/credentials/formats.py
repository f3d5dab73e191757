"""Hand issued credentials to shells, child processes and the AWS SDKs' credential_process.

Pure functions: no I/O, no AWS. The outputs carry secrets, so callers print them only where
the user asked for them (stdout of `jitctl env`, `credential-process`) and never log them.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping

from jitctl.models import Credentials
from jitctl.timeutil import rfc3339

# The four variables every SDK reads for temporary credentials (botocore's EnvProvider).
CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
)

# The region the credentials are for, under both names: AWS_REGION (the AWS CLI v2, the SDKs)
# and AWS_DEFAULT_REGION (botocore, the AWS CLI v1). Without them every client falls back to
# the region of whatever profile it finds ([default]'s), not the role's.
REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")

# Inherited variables that could make a program use credentials other than ours, or describe
# another identity. Removed from `jitctl exec` children and unset by `jitctl env`, so both
# give the same result. Who reads what first, which is why each must go:
#
# AWS_PROFILE / AWS_DEFAULT_PROFILE: botocore, the AWS CLI (v1 and v2) and the Go and Java SDKs
# take environment keys before a profile named in the environment, but the JS SDK v3 does the
# opposite: with AWS_PROFILE set it never reads environment keys, so a child in Node would act
# as that profile. Scripts also run `aws --profile "$AWS_PROFILE"`.
# AWS_CREDENTIAL_FILE: s3cmd reads the keys in this file before any other source (under exec it
# signed with the parent's keys); AWS_CREDENTIAL_PROFILES_FILE: the Java SDK v1's credentials
# file. AWS_SESSION_EXPIRATION: aws-vault's stale expiry for other keys.
# AWS_SECURITY_TOKEN: the boto2-era name for the session token; old tools prefer it.
# AWS_ACCESS_KEY / AWS_SECRET_KEY: alternate names; the Java SDK v1 reads AWS_SECRET_KEY
# *before* AWS_SECRET_ACCESS_KEY, so a stale one would pair with our key id and fail.
# AWS_ACCOUNT_ID: botocore treats it as part of the environment credentials (account-based
# endpoints); a stale one from another account would route requests wrongly.
# Web identity and container providers come later in botocore's chain than environment keys,
# but other SDKs order them differently; they are someone else's credentials either way.
# Kept on purpose: AWS_ENDPOINT_URL*, AWS_CA_BUNDLE, AWS_CONFIG_FILE and
# AWS_SHARED_CREDENTIALS_FILE (settings, not credentials; with AWS_PROFILE gone every SDK takes
# environment keys before the files). The region variables are set to the role's.
CONFLICTING_VARS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CREDENTIAL_FILE",
    "AWS_CREDENTIAL_PROFILES_FILE",
    "AWS_SESSION_EXPIRATION",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "AWS_ACCOUNT_ID",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)

SHELLS = ("sh", "bash", "zsh", "fish", "powershell", "pwsh")

# PowerShell treats the typographic single quotes like ' inside a single-quoted string, so
# each must be doubled too (what PowerShell's own EscapeSingleQuotedStringContent does).
_PWSH_QUOTES = ("'", "\u2018", "\u2019", "\u201a", "\u201b")


def region_values(region: str | None) -> dict[str, str]:
    """Both region variables set to ``region`` (none when there is no region to give)."""
    return dict.fromkeys(REGION_VARS, region) if region else {}


def credential_values(creds: Credentials) -> dict[str, str]:
    """The credential variables and their values (no expiration variable if it is unknown)."""
    values = {
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
        "AWS_SESSION_TOKEN": creds.session_token,
    }
    if creds.expiration is not None:
        values["AWS_CREDENTIAL_EXPIRATION"] = rfc3339(creds.expiration)
    for name, value in values.items():
        # NUL cannot be in an environment variable; say which variable, never the value.
        if not isinstance(value, str) or not value or "\0" in value:
            raise ValueError(f"{name} must be a non-empty string without NUL characters")
    return values


def env_lines(creds: Credentials, shell: str = "sh", region: str | None = None) -> str:
    """Statements that put ``creds`` (and their ``region``) into the current shell, for
    ``eval`` / ``source``.

    Every statement ends with ";" so that unquoted ``eval $(jitctl env ...)``, which joins the
    lines into one, works as well as ``eval "$(...)"``; fish's ``eval (...)`` joins them too.
    """
    values = credential_values(creds) | region_values(region)
    # Unset what we do not set: a stale expiration or profile must not outlive this eval.
    stale = [*CONFLICTING_VARS, *(name for name in CREDENTIAL_VARS if name not in values)]
    if shell in ("sh", "bash", "zsh"):
        lines = [f"unset {' '.join(stale)};"]
        lines += [f"export {name}={shlex.quote(value)};" for name, value in values.items()]
    elif shell == "fish":
        # -g: erase only this session's global. A bare `set -e` would erase a universal
        # variable, i.e. change every other fish session of the user, permanently.
        lines = [f"set -e -g {name};" for name in stale]
        lines += [f"set -gx {name} {fish_quote(value)};" for name, value in values.items()]
    elif shell in ("powershell", "pwsh"):
        paths = ", ".join(f"Env:{name}" for name in stale)
        lines = [f"Remove-Item -ErrorAction SilentlyContinue -Path {paths};"]
        lines += [f"$Env:{name} = {powershell_quote(value)};" for name, value in values.items()]
    else:
        raise ValueError(f"unknown shell {shell!r}: use one of {', '.join(SHELLS)}")
    return "\n".join(lines) + "\n"


def fish_quote(value: str) -> str:
    """A fish single-quoted word: inside '...' only \\\\ and \\' are escapes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def powershell_quote(value: str) -> str:
    """A PowerShell single-quoted (verbatim) string: quotes are escaped by doubling."""
    for quote in _PWSH_QUOTES:
        value = value.replace(quote, quote * 2)
    return "'" + value + "'"


def credential_process_json(creds: Credentials) -> str:
    """The document an AWS SDK expects on stdout from a ``credential_process`` command.

    ``Expiration`` makes the SDK run the process again before the credentials run out;
    without it the SDK would cache them forever, so it is always present when known.
    """
    doc: dict[str, object] = {
        "Version": 1,
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "SessionToken": creds.session_token,
    }
    if creds.expiration is not None:
        doc["Expiration"] = rfc3339(creds.expiration)
    return json.dumps(doc)


# jitctl's own settings (JITCTL_PAGERDUTY_TOKEN above all, but also the config, policy and
# audit paths) are jitctl's business, not the child's: a child that could read the token could
# act as the on-call fast track's PagerDuty identity. Every variable with this prefix is removed.
JITCTL_PREFIX = "JITCTL_"


def _for_child(name: str) -> bool:
    return (
        name not in CONFLICTING_VARS
        and name not in CREDENTIAL_VARS
        and not name.upper().startswith(JITCTL_PREFIX)
    )


def child_environment(
    base: Mapping[str, str], creds: Credentials, region: str | None = None
) -> dict[str, str]:
    """A copy of ``base`` for `jitctl exec`'s child: other credentials and jitctl's own
    settings out, ours (and their ``region``) in."""
    env = {name: value for name, value in base.items() if _for_child(name)}
    env.update(credential_values(creds) | region_values(region))
    return env
