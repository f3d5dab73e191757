"""Benchmark-style: `jitctl wait` killed with SIGKILL at random points never leaves two live
sets of credentials for one approval (CONTRACT "One approval, one grant").

Each approval gets up to ROUNDS runs of `jitctl wait ID`, each killed after a random delay,
then one run left to finish (the recovery). moto's STS records every session it creates with
the session tags jitctl sent (moto keeps no tags, so its AssumeRole response is wrapped in
this process, where its server runs); a session is live unless it expired or the role's
`jitctl-revocations` policy denies it, as IAM evaluates a StringEquals condition on
``aws:PrincipalTag/jitctl:issue`` (moto evaluates none). Doubled = an approval with two or
more live sessions.

The runs are real processes: forked from a multiprocessing forkserver that has jitctl and
boto3 imported (so a run costs its work, not 0.3 s of imports), each running the CLI's own
entry point with Alice's environment, killed with SIGKILL by the test. Inside them the claim
lease is 0 (a recovery takes over a killed claim at once instead of waiting out two minutes:
safety must not rest on the lease) and the IAM read-back pause is 0.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jitctl import models
from jitctl.context import Environment
from tests.harness import existing_role
from tests.test_claims import denies
from tests.world import stored_request

pytestmark = pytest.mark.slow

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
ROLES = {"prod-readonly": [BOB], "prod-admin": [BOB, CAROL]}  # two roles: two policies
APPROVALS = 72  # at most; worked on until KILLS_WANTED kills have landed
KILLS_WANTED = 110
# The killed runs of one approval, before its recovery run: True = killed a random moment
# after it claims an issue, False = a random moment after it starts. A request allows one
# re-issue after an interrupted one, so a third kill after a claim finds none to make.
KILLS = (False, True, True, False, False)
WORKERS = 3  # approvals worked on at once
PRELOAD = ["tests.kill_preload"]  # jitctl imported, botocore's models parsed, before forking


def _run_wait(environ: dict[str, str], request_id: str) -> None:
    """A forkserver child: `jitctl wait ID`, as the console script runs it."""
    from jitctl.revocation import iam
    from jitctl.store import claims

    claims.CLAIM_LEASE = timedelta(0)
    iam.SETTLE_SECONDS = 0.0
    os.environ.clear()
    os.environ.update(environ)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the run's JSON and messages: not the test's output
    os.dup2(devnull, 2)
    from jitctl.cli.main import run

    code = run(["wait", request_id, "--json"])
    os._exit(code)


class Sessions:
    """What moto's STS issued: (access key, tags, expiration) per AssumeRole it answered."""

    def __init__(self) -> None:
        self.issued: list[tuple[str, dict[str, str], datetime]] = []
        self._lock = threading.Lock()

    def record(self, response: Any, result: Any) -> None:
        qs = response.querystring
        tags = {}
        for n in range(1, 51):
            key = qs.get(f"Tags.member.{n}.Key")
            if key:
                tags[key[0]] = qs.get(f"Tags.member.{n}.Value", [""])[0]
        role = result.result["Credentials"]
        with self._lock:
            self.issued.append((role.access_key_id, tags, role.expiration.replace(tzinfo=UTC)))


@pytest.fixture
def sessions(monkeypatch) -> Sessions:
    from moto.sts.responses import TokenResponse

    seen = Sessions()
    original = TokenResponse.assume_role

    def assume_role(self):
        result = original(self)
        seen.record(self, result)
        return result

    monkeypatch.setattr(TokenResponse, "assume_role", assume_role)
    return seen


def seed(env: Environment, role: str, approvers: list[str], now: datetime) -> str:
    """An approved peer request of Alice's, straight into the store (as `approve` leaves it)."""
    return stored_request(
        env,
        ALICE,
        at=now,
        role=role,
        reason="INC-20 kill test",
        approval=models.PEER,
        approvers=list(approvers),
        min_approvals=len(approvers),
        decided_by=approvers[-1],
    )


def claimed(store_env: Environment, rid: str) -> int:
    req = store_env.store.get(rid)
    return req.issue_attempt if req is not None else 0


def until_claimed(proc, store_env: Environment, rid: str, before: int) -> None:
    """Wait while ``proc`` runs and has not claimed an issue: the store is read again only
    when its write-ahead log changed (a stat is cheap; the machine is busy enough)."""
    wal = Path(f"{store_env.store.path}-wal")
    last = None
    while proc.is_alive():
        try:
            mark = (wal.stat().st_size, wal.stat().st_mtime_ns)
        except FileNotFoundError:
            mark = None
        if mark != last:
            last = mark
            if claimed(store_env, rid) != before:
                return
        time.sleep(0.005)


def killed_run(
    ctx, environ: dict[str, str], rid: str, delay: float, after_claim: Any | None
) -> tuple[bool, float]:
    """One run of `jitctl wait ID`, SIGKILLed ``delay`` seconds after it starts, or (with
    ``after_claim``: the store) ``delay`` seconds after it has claimed an issue: (True if it
    was still running when the kill came, how long it ran from that start or claim)."""
    before = claimed(after_claim, rid) if after_claim is not None else 0
    proc = ctx.Process(target=_run_wait, args=(environ, rid))
    proc.start()
    if after_claim is not None:  # read the store, as any reader may, until its claim shows
        until_claimed(proc, after_claim, rid, before)
    started = time.monotonic()
    proc.join(delay)
    landed = proc.is_alive()
    if landed:
        proc.kill()  # SIGKILL
    took = time.monotonic() - started
    proc.join(30)
    return landed, took


def trial(
    ctx, environ: dict[str, str], rid: str, rng: random.Random, spans: list[float], store_env
) -> tuple[int, int]:
    """Runs killed at random points (KILLS: from its start, or from its claim of an issue:
    where the cut-off, AssumeRole, the `issued` record and the store's mark are), then the
    recovery run; returns (kills landed, the recovery's exit code). ``spans``: how long a
    whole run and the part after its claim took last time (the ranges the kills are drawn
    from), updated from the recovery run when it claims."""
    kills = 0
    for after_claim in KILLS:
        span = int(after_claim)
        store = store_env if after_claim else None
        landed, took = killed_run(ctx, environ, rid, rng.uniform(0, spans[span]), store)
        kills += landed
        if not landed:  # the run ended before the kill: draw the next one within its length
            spans[span] = min(spans[span], took)
    before = claimed(store_env, rid)
    started = time.monotonic()
    proc = ctx.Process(target=_run_wait, args=(environ, rid))
    proc.start()
    until_claimed(proc, store_env, rid, before)
    seen = time.monotonic() if claimed(store_env, rid) != before else None
    proc.join(60)
    assert not proc.is_alive(), "a recovery run hung"
    if seen is not None:
        ended = time.monotonic()
        spans[:] = [1.1 * (ended - started), 1.2 * (ended - seen)]
    return kills, proc.exitcode if proc.exitcode is not None else -1


def live_per_approval(
    sessions: Sessions, policies: dict[str, Any], now: datetime, wanted: set[str]
) -> dict[str, list[str]]:
    statements = [s for doc in policies.values() for s in doc.get("Statement", [])]
    key = "aws:PrincipalTag/jitctl:issue"
    live: dict[str, list[str]] = {}
    for _, tags, expiration in sessions.issued:
        tag = tags.get("jitctl:issue", "")
        if tags.get("jitctl:request-id") not in wanted:
            continue
        cut = any(denies(s, {key: tag}) for s in statements)
        if not cut and expiration > now:
            live.setdefault(tags["jitctl:request-id"], []).append(tag)
    return live


def test_kill_9_at_random_points_never_leaves_two_live_sets(team, sessions):
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    for email in (ALICE, BOB, CAROL):
        team.pd_user(email)
    environ = team.env(ALICE)
    now = datetime.now(UTC)
    store_env = Environment(environ=environ)
    rids = {
        seed(store_env, role, approvers, now): role
        for n in range(APPROVALS)
        for role, approvers in [list(ROLES.items())[n % len(ROLES)]]
    }
    rng = random.Random(os.environ.get("JITCTL_KILL_SEED", "20"))  # noqa: SIM112
    started = time.monotonic()
    with existing_role(team.moto, "prod-readonly") as iam, existing_role(team.moto, "prod-admin"):
        results: dict[str, tuple[int, int]] = {}
        seeds = {rid: rng.random() for rid in rids}
        queue, lock = list(rids), threading.Lock()

        def worker() -> None:
            spans = [2.0, 0.15]  # seconds; then measured by the recovery runs
            while True:
                with lock:  # approvals until enough kills landed (or none are left)
                    if not queue or sum(k for k, _ in results.values()) >= KILLS_WANTED:
                        return
                    rid = queue.pop(0)
                outcome = trial(ctx, environ, rid, random.Random(seeds[rid]), spans, store_env)
                with lock:
                    results[rid] = outcome

        threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        policies = {}
        for role in ROLES:
            try:
                got = iam.get_role_policy(RoleName=role, PolicyName="jitctl-revocations")
                policies[role] = got["PolicyDocument"]
            except iam.exceptions.NoSuchEntityException:
                policies[role] = {}
    elapsed = time.monotonic() - started
    live = live_per_approval(sessions, policies, datetime.now(UTC), set(results))
    doubled = {rid: tags for rid, tags in live.items() if len(tags) > 1}
    kills = sum(k for k, _ in results.values())
    stored = {rid: store_env.store.get(rid) for rid in results}
    outcomes = Counter(code for _, code in results.values())
    claims = sum(req.issue_attempt for req in stored.values())
    mine = [s for s in sessions.issued if s[1].get("jitctl:request-id") in results]
    print(
        f"\nkill test: {len(results)} approvals, {kills} kills landed, {claims} issue claims, "
        f"{len(mine)} sessions issued, recovery exits {dict(outcomes)}, "
        f"{sum(1 for t in live.values() if len(t) == 1)} "
        f"with one live set, doubled {len(doubled)}, {elapsed:.1f} s"
    )
    assert kills >= 100
    assert doubled == {}
    # where the store says a set was issued, the live one is that issue's, and nothing else
    for rid, req in stored.items():
        if req.status == models.ISSUED and req.issued_attempt:
            assert live.get(rid) == [f"{rid}.{req.issued_attempt}"], (rid, live.get(rid))
