"""`jitctl doctor`: check everything before the first 4am page (`whoami` and `roles`, which
report rather than check, are jitctl.doctor.whoami).

Each check reports pass, fail (with the fix and the contract's exit code) or skip (does not
apply). Later checks that depend on an earlier failure are skipped, not failed again.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from jitctl.doctor.report import PASS, SKIP, WARN, Doctor

if TYPE_CHECKING:
    from jitctl.context import Environment


def run_doctor(env: Environment) -> Doctor:
    d = Doctor(env)
    if env.config.broker.client:
        return _broker_doctor(d, env)
    d.run("config", lambda: _config(env))
    d.run("policy", lambda: _policy_summary(env), needs=("config",))
    d.run("aws caller", lambda: _caller_arn(env), needs=("config",))
    d.run("person", lambda: env.caller.person, needs=("policy", "aws caller"))
    d.run("session length", lambda: _session_length(env), needs=("policy", "aws caller"))
    token: dict[str, str] = {}
    d.run("pagerduty token", lambda: _token(env, token), needs=("config",))
    d.run("keyring", lambda: _keyring(token), needs=())
    d.run("pagerduty user", lambda: _pd_user(env), needs=("pagerduty token", "person"))
    for role in sorted(env.policy.roles) if _ok(d, "policy") else []:
        d.run(f"fast track: {role}", partial(_fast_track, env, role), needs=("pagerduty user",))
    d.run("store", lambda: _store(env), needs=("config",))
    d.run("break-glass review", lambda: _reviews(env), needs=("store", "person"))
    d.run("audit log", lambda: _audit(env), needs=("config",))
    if _ok(d, "policy"):
        from jitctl.doctor.slack import slack_checks

        for name, check in slack_checks(env):
            d.run(name, check, needs=("config",))
    if _ok(d, "policy") and any(env.policy.role(n).identity_center for n in env.policy.roles):
        d.run("identity center", lambda: _identity_center(env), needs=("aws caller",))
        d.run("assignments left", lambda: _assignments_left(env), needs=("store", "aws caller"))
    if _ok(d, "config") and env.config.audit.central:
        from jitctl.doctor.audit import central_checks

        for name, check in central_checks(env):
            d.run(name, check, needs=("aws caller",))
    return d


def _identity_center(env: Environment) -> str | tuple[str, str, str]:
    """Each identity_center role's permission set exists; warn when its session outlasts the
    role's max_duration (AWS does not end a signed-in session with the assignment)."""
    from jitctl.identity_center.reconcile import session_warnings

    warnings = session_warnings(env, [env.policy.role(n) for n in env.policy.roles])
    if warnings:
        fix = "shorten the permission set's session duration to the role's max_duration"
        return WARN, "; ".join(warnings), fix
    return "every permission set's session fits its role's max_duration"


def _assignments_left(env: Environment) -> str | tuple[str, str, str]:
    """Assignments jitctl made whose grants are over and that AWS still holds."""
    from jitctl.identity_center.reconcile import leftovers

    left = leftovers(env, env.clock.now())
    if not left:
        return "none: every assignment jitctl made belongs to a live grant"
    listed = ", ".join(f"{x['request_id']} ({x['requester']}, {x['account']})" for x in left)
    return WARN, f"{len(left)} left behind: {listed}", "run `jitctl sweep` (it removes them)"


def _broker_doctor(d: Doctor, env: Environment) -> Doctor:
    """A broker's client checks the broker: reachable, the configured one, who it says you are."""
    settings = env.config.broker
    d.run("config", lambda: f"{env.config.path or 'environment'}; broker {settings.url}")
    d.run("broker", lambda: _broker_info(env), needs=("config",))
    d.run("person", lambda: _broker_person(env), needs=("broker",))
    d.run("session length", lambda: _broker_session_length(env), needs=("person",))
    d.run("break-glass review", lambda: _reviews(env), needs=("person",))
    return d


def _broker_info(env: Environment) -> str:
    info = env.service.info()  # type: ignore[attr-defined]  # BrokerService, in broker mode
    return f"{env.config.broker.url}: server id {info['server_id']}, jitctl {info['version']}"


def _broker_person(env: Environment) -> str:
    caller = env.service.whoami()
    return f"{caller.person} ({caller.arn}), as the broker sees you"


def _session_length(env: Environment) -> str | tuple[str, str, str]:
    """Your credentials assume the roles (direct mode): a role session (an SSO login) can
    issue 1h at most (role chaining), whatever a role's max_duration says."""
    from jitctl.lifecycle.chaining import CHAIN_HINT, is_role_session, warning

    arn = env.identity()[0]
    roles = [env.policy.role(name) for name in env.policy.roles]
    problem = warning(roles, f"your AWS identity ({arn})") if is_role_session(arn) else None
    if problem:
        return WARN, problem, CHAIN_HINT
    return "every role's max_duration can be issued"


def _broker_session_length(env: Environment) -> str | tuple[str, str, str]:
    """The broker assumes the roles: what it can issue, from `jitctl roles`' max_grant_seconds."""
    from jitctl.lifecycle.chaining import CHAIN_HINT
    from jitctl.timeutil import format_duration

    short = [
        f"{r['role']} ({format_duration(timedelta(seconds=r['max_duration_seconds']))})"
        for r in env.service.roles()
        if r.get("max_grant_seconds", r["max_duration_seconds"]) < r["max_duration_seconds"]
    ]
    if not short:
        return "the broker can issue every role's max_duration"
    return (
        WARN,
        "the broker holds role credentials, so AWS caps what it issues at 1h (role chaining); "
        f"max_duration over 1h is cut to 1h: {', '.join(short)}",
        CHAIN_HINT,
    )


def _ok(d: Doctor, name: str) -> bool:
    return any(c.name == name and c.status == PASS for c in d.checks)


def _config(env: Environment) -> str | tuple[str, str, str]:
    """The file read; none is a warning (defaults apply), never a pass that says "not set"."""
    if env.config.path is not None:
        return str(env.config.path)
    from jitctl.config.settings import default_config_path

    return (
        WARN,
        f"no config file at {default_config_path()}: defaults and the environment apply",
        "create it (docs/policy.md) or set JITCTL_CONFIG",
    )


def _policy_summary(env: Environment) -> str:
    policy = env.policy  # raises "no policy configured" (with the fix) when none is set
    where = env.config.policy_path
    return (
        f"{_count(len(policy.roles), 'role')} from {_count(len(policy.sources), 'file')} ({where})"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _caller_arn(env: Environment) -> str:
    from jitctl.aws import get_caller_identity

    arn, _ = get_caller_identity(env.aws)
    return arn


def _token(env: Environment, out: dict[str, str]) -> str:
    token, source = env.pagerduty_token()
    out["token"], out["source"] = token, source
    return "from $JITCTL_PAGERDUTY_TOKEN" if source == "env" else "from the OS keyring"


def _keyring(token: dict[str, str]) -> str | tuple[str, str]:
    """The backend, and whether it works: the same read the token lookup makes."""
    if token.get("source") not in (None, "keyring"):
        where = {"env": "the environment", "secretsmanager": "Secrets Manager"}
        return SKIP, f"the token comes from {where.get(token['source'], token['source'])}"
    import keyring

    from jitctl.oncall.client import KEYRING_SERVICE, KEYRING_USER

    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if token.get("source") is None:
        try:
            keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
        except Exception as exc:  # NoKeyringError (the "fail" stand-in), D-Bus trouble...
            from jitctl.errors import ConfigError

            raise ConfigError(
                f"no usable keyring backend ({name}: {type(exc).__name__})",
                "install one (e.g. `pip install keyrings.alt`) or export "
                "JITCTL_PAGERDUTY_TOKEN=...",
            ) from None
    return name


def _pd_user(env: Environment) -> str:
    from jitctl.errors import PagerDutyUnavailable
    from jitctl.oncall.client import LookupFailed

    try:
        user = env.pagerduty.user(env.caller.person)
    except LookupFailed as exc:
        raise PagerDutyUnavailable(
            exc.reason, "check the token, the URL and the user's email in PagerDuty"
        ) from None
    return f"{user['id']} ({user.get('name', '')}) at {env.config.pagerduty.url}"


def _fast_track(env: Environment, role_name: str) -> str | tuple[str, str]:
    """Whether either of the role's fast tracks (on call, an open incident) applies now."""
    role = env.policy.role(role_name)
    if role.on_call is None and role.incident is None:
        return SKIP, "no fast track (neither on call nor incident); approval only"
    whys = []
    if role.on_call is not None:
        from jitctl.lifecycle.flow import check_fast_track

        result = check_fast_track(env, role, env.caller.person)
        if result.on_call:
            return result.reason
        whys.append(result.reason)
    if role.incident is not None:
        from jitctl.oncall.incident_track import check_submit

        track = check_submit(env, role, None)
        if track.fast:
            return f"incident fast track: {track.reason}"
        whys.append(f"incident fast track: {track.reason}")
    return f"not now: {'; '.join(whys)}"


def _store(env: Environment) -> str:
    settings = env.config.store
    store = env.store
    store.list(pending_only=True, limit=1)
    if settings.backend == "dynamodb":
        return f"dynamodb table {settings.table} reachable"
    return f"sqlite {getattr(store, 'path', '')}"


def _reviews(env: Environment) -> str | tuple[str, str, str]:
    """Break-glass grants still awaiting an approver's review: a warning, not a failure."""
    waiting = env.service.list(
        pending_only=False, mine=False, role=None, limit=100, unreviewed=True
    )
    if not waiting:
        return "no break-glass grant awaits review"
    ids = ", ".join(r.request_id for r in waiting[:5]) + (", ..." if len(waiting) > 5 else "")
    return (
        WARN,
        f"{len(waiting)} break-glass grant(s) await review: {ids}",
        "an approver runs `jitctl list --unreviewed`, then `jitctl review ID --reason ...`",
    )


def _audit(env: Environment) -> str:
    from jitctl.audit.log import verify
    from jitctl.errors import AuditError, AuditTampered

    path = env.config.audit_path
    result = verify(path)
    if not result.ok:
        raise AuditTampered(
            f"{path}:{result.first_bad_line}: {result.problem}", "investigate before anything else"
        )
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent  # created on first write: the nearest existing one decides
    if not os.access(directory, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise AuditError(f"{path} is not writable", "fix its permissions or set [audit] path")
    return f"{path}: {result.records} records, chain intact"


# -- whoami and roles -------------------------------------------------------------------
