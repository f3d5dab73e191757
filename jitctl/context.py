"""The I/O a command needs, passed in explicitly (httpie's Environment).

Everything is built lazily, so a command only pays for what it touches, and tests hand in
their own clock, environment or keyring.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from jitctl.errors import JitctlError
from jitctl.models import ThisRun
from jitctl.timeutil import Clock
from jitctl.trusted_time import TrustedClock

if TYPE_CHECKING:
    from jitctl.audit.log import AuditLog
    from jitctl.aws import AwsClients
    from jitctl.config.settings import Config
    from jitctl.credentials.cache import CredentialCache
    from jitctl.identity.iam_roles import RoleFacts
    from jitctl.lifecycle.contract import AccessService
    from jitctl.models import Caller
    from jitctl.oncall.session import PagerDutySession
    from jitctl.policy.fresh import Fingerprint
    from jitctl.policy.load import Policy
    from jitctl.store.base import RequestStore


@dataclass
class Environment:
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # Trusted by default: the local clock, corrected by AWS's Date (jitctl.trusted_time).
    # Tests hand in a plain clock to control time exactly, or a TrustedClock over one.
    clock: Clock = field(default_factory=TrustedClock)
    keyring_get: Callable[[str, str], str | None] | None = None
    aws_factory: Callable[[], AwsClients] | None = None
    on_clock_skew: Callable[[str], None] | None = None  # told once; the CLI prints it
    # Told of a problem the command carries on after (a central audit copy failed with
    # [audit] required = false); each host reports it its own way.
    on_warning: Callable[[str], None] | None = None
    # Told while AWS is still working on a change jitctl waits for (an Identity Center
    # assignment): its status and the seconds waited so far. The CLI shows it on stderr.
    on_progress: Callable[[str, float], None] | None = None
    # The streams a person or a script reads (None: the process's own, looked up when used,
    # so a test's captured streams count) and --quiet: no prompts, spinners or progress.
    stdin: TextIO | None = None
    stdout: TextIO | None = None
    stderr: TextIO | None = None
    quiet: bool = False
    # The pending request this run recorded, cancelled on Ctrl-C (jitctl.lifecycle.interrupts).
    run: ThisRun = field(default_factory=ThisRun)
    json_emitted: bool = False  # this run printed its one --json document already
    # Which AccessService answers this run: set by the host that assembles it (jitctl.wiring).
    service_factory: Callable[[Environment], AccessService] | None = None
    _identity: tuple[str, str, str] | None = None  # ARN, account, UserId
    _role_facts: RoleFacts | None = None
    _config: Config | None = None
    _policy: Policy | None = None
    _policy_seen: Fingerprint | None = None  # its files when it was loaded (refresh_policy)
    _aws: AwsClients | None = None
    _caller: Caller | None = None
    _audit: AuditLog | None = None
    _store: RequestStore | None = None
    _service: AccessService | None = None
    _pagerduty: PagerDutySession | None = None
    _secrets: dict[str, str] = field(default_factory=dict)  # shared by for_caller copies

    @property
    def inp(self) -> TextIO:
        return self.stdin or sys.stdin

    @property
    def out(self) -> TextIO:
        return self.stdout or sys.stdout

    @property
    def err(self) -> TextIO:
        return self.stderr or sys.stderr

    @property
    def interactive(self) -> bool:
        """A person at a terminal: both streams are terminals, no --quiet. (NO_COLOR only
        means no colour: prompts and pickers stay; see cli.output.colour.)"""
        terminals = self.err.isatty() and self.out.isatty()
        return terminals and not self.quiet

    @property
    def pagerduty(self) -> PagerDutySession:
        """One PagerDuty session per command (per broker call): one client, one deadline,
        each user looked up once."""
        if self._pagerduty is None:
            from jitctl.oncall.session import PagerDutySession

            self._pagerduty = PagerDutySession(self.config.pagerduty, self.pagerduty_token)
        return self._pagerduty

    def prepare_pagerduty(self) -> None:
        """Build this command's PagerDuty reader (the token, the TLS context) on a thread
        while this one goes on (asking AWS who the caller is): the two do not depend on each
        other. The reader is the one ``pagerduty`` hands out; a lookup that comes first waits
        for it, never builds another."""
        if self.config.pagerduty.token_secret:
            _ = self.aws  # made here, so the thread and this one share one AwsClients
        session = self.pagerduty
        threading.Thread(target=session.warm, name="jitctl-pagerduty", daemon=True).start()

    def close(self) -> None:
        """End what this command opened (the PagerDuty client)."""
        if self._pagerduty is not None:
            self._pagerduty.close()
            self._pagerduty = None

    @property
    def credential_cache(self) -> CredentialCache:
        """Where grants are kept for `jitctl credential-process` (keyring, else a 0600 file):
        the caller's own under this config (jitctl.credentials.owner; exit 2 with no config)."""
        from jitctl.credentials.cache import CredentialCache
        from jitctl.credentials.owner import CacheOwner, cache_dir, config_identity

        environ = dict(self.environ)
        config = config_identity(self.config, environ)  # exit 2 with no config, before AWS
        return CredentialCache(CacheOwner(config, self._principal()), cache_dir=cache_dir(environ))

    def _principal(self) -> str:
        """The caller's ARN from AWS's answer, asked once per command: in broker mode the
        broker's, from the proof it checked (the client itself asks AWS nothing); else
        sts:GetCallerIdentity's."""
        if self.config.broker.client:
            return self.service.whoami().arn
        return self.identity()[0]

    def for_caller(self, caller: Caller) -> Environment:
        """This environment acting for ``caller``, sharing config, policy, clients, store and
        audit trail: the broker makes one per authenticated call."""
        return dataclasses.replace(
            self, _caller=caller, _service=None, _pagerduty=None, run=ThisRun()
        )

    def pagerduty_token(self) -> tuple[str, str]:
        """(token, source): ``[pagerduty] token_secret`` from Secrets Manager (the broker's
        way, read once per process), else the environment or the OS keyring."""
        secret_id = self.config.pagerduty.token_secret
        if not secret_id:
            from jitctl.oncall.client import get_token

            return get_token(self.environ, self.keyring_get)
        if secret_id not in self._secrets:
            from jitctl.oncall.client import read_token_secret

            self._secrets[secret_id] = read_token_secret(self.aws, secret_id)
        return self._secrets[secret_id], "secretsmanager"

    def secret(self, secret_id: str, what: str) -> str:
        """A Secrets Manager secret's string (the broker's Slack secrets), read once per
        process; "" when it has none."""
        if secret_id not in self._secrets:
            from jitctl.aws import translate_error

            try:
                value = self.aws.client("secretsmanager").get_secret_value(SecretId=secret_id)
            except Exception as exc:
                raise translate_error(exc, f"cannot read {what} from {secret_id}") from exc
            self._secrets[secret_id] = (value.get("SecretString") or "").strip()
        return self._secrets[secret_id]

    @property
    def service(self) -> AccessService:
        """What commands ask the core through. The host that assembles the run says which
        (``service_factory``: jitctl.wiring.choose_service), so this module, which the
        layers below import, never imports the ones above it."""
        if self._service is None:
            if self.service_factory is None:
                raise RuntimeError("an Environment without a service_factory (see jitctl.wiring)")
            self._service = self.service_factory(self)
        return self._service

    def __post_init__(self) -> None:
        # The trusted clock learns its time from the answer this run needs anyway.
        if isinstance(self.clock, TrustedClock):
            if self.clock.sync is None:
                self.clock.sync = self._time_source
            if self.clock.on_skew is None:
                self.clock.on_skew = self.on_clock_skew

    @property
    def config(self) -> Config:
        if self._config is None:
            from jitctl.config.settings import load_config

            self._config = load_config(self.environ)
        return self._config

    @property
    def policy(self) -> Policy:
        return self._policy if self._policy is not None else self.refresh_policy()

    def refresh_policy(self) -> Policy:
        """The policy, loaded again when one of its files changed since (jitctl.policy.fresh).
        A process that serves many calls (the broker) calls it for each, so a reviewed change
        (an approver removed, a channel dropped) takes effect at the next call; a policy that
        no longer loads fails every call until fixed (exit 2), never the old one."""
        from jitctl.policy.fresh import fingerprint
        from jitctl.policy.load import load_policy

        path = self.config.require_policy_path()
        policy = self._policy
        seen = fingerprint(path, policy)  # before loading: a write meanwhile shows next time
        if policy is not None and seen == self._policy_seen:
            return policy
        try:
            policy = load_policy(path)
        except JitctlError:
            self._policy = None  # not the old one
            raise
        self._policy, self._policy_seen = policy, seen
        return policy

    @property
    def aws(self) -> AwsClients:
        if self._aws is None:
            from jitctl.aws import AwsClients

            self._aws = self.aws_factory() if self.aws_factory else AwsClients()
            if isinstance(self.clock, TrustedClock):
                self._aws.sts_listener = self.clock.after_call
        return self._aws

    def _time_source(self) -> object:
        """Ask once for the time: the broker in broker mode (its Date; the client asks AWS
        nothing but signs its proof), else STS with the call that names the caller."""
        from jitctl.lifecycle.contract import BrokerInfo

        service: object = self.service if self.config.broker.client else None
        if isinstance(service, BrokerInfo):
            return service.info()
        return self.identity()

    def identity(self) -> tuple[str, str]:
        """(principal ARN, account) from sts:GetCallerIdentity, asked once per command."""
        arn, account, _ = self._caller_identity()
        return arn, account

    def _caller_identity(self) -> tuple[str, str, str]:
        if self._identity is None:
            from jitctl.aws import caller_identity

            self._identity = caller_identity(self.aws)
        return self._identity

    @property
    def caller(self) -> Caller:
        """The AWS principal STS reports, mapped to a person by the policy's rules (direct
        mode: IAM is asked about the caller's role with the caller's own credentials)."""
        if self._caller is None:
            from jitctl.identity.rule import resolve_caller

            arn, account, user_id = self._caller_identity()
            roles = self.role_facts.lookup
            rules = self.policy.identity
            self._caller = resolve_caller(arn, account, rules, user_id=user_id, roles=roles)
        return self._caller

    @property
    def role_facts(self) -> RoleFacts:
        """IAM's records of the caller's role, asked with these credentials, kept on disk."""
        if self._role_facts is None:
            from jitctl.config.settings import default_cache_dir
            from jitctl.identity.iam_roles import CACHE_FILE, RoleFacts

            self._role_facts = RoleFacts(
                lambda: self.aws.client("iam"),
                lambda: self.identity()[1],
                asker="your AWS credentials",
                fix="ask for iam:GetRole on your role, or have your ARN mapped in the "
                "policy's [identities]",
                path=default_cache_dir() / CACHE_FILE,
            )
        return self._role_facts

    @property
    def audit(self) -> AuditLog:
        """The local log; with [audit] table/bucket, an AuditTrail that also writes centrally."""
        if self._audit is None:
            from jitctl.audit.log import AuditLog

            settings = self.config.audit
            if settings.central:
                from jitctl.audit.trail import AuditTrail, open_sinks

                sinks = open_sinks(
                    settings,
                    lambda service: self.aws.client(service, region=settings.region),
                )
                self._audit = AuditTrail(
                    settings.path,
                    self.clock,
                    sinks,
                    required=settings.required,
                    on_warning=self.on_warning,
                )
            else:
                self._audit = AuditLog(settings.path, self.clock)
        return self._audit

    @property
    def store(self) -> RequestStore:
        if self._store is None:
            from jitctl.config.settings import default_data_dir
            from jitctl.store import open_store

            settings = self.config.store
            self._store = open_store(
                settings,
                data_dir=default_data_dir(),
                client_factory=lambda service: self.aws.client(service, region=settings.region),
            )
            self._unconfigured_store(getattr(self._store, "path", None))
        return self._store

    def _unconfigured_store(self, path: object) -> None:
        """With no config at all, say which store this is: an approver who forgot the team's
        config would otherwise hear "no requests" from a private, empty one."""
        if self.config.path is not None or self.environ.get("JITCTL_CONFIG_TOML"):
            return
        if self.on_warning is not None:
            from jitctl.config.settings import default_config_path

            self.on_warning(
                f"no config file ({default_config_path()} does not exist, JITCTL_CONFIG is "
                f"unset): using this machine's own store {path}, not your team's; point "
                "JITCTL_CONFIG at the team's config.toml"
            )
