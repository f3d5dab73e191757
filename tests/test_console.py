"""`jitctl console ROLE`: the grant's credentials exchanged at a local imitation of AWS's
federation endpoint (tests/federation_sim.py) for a sign-in token, and the login URL built from
it. The URL is a bearer secret: only on stdout (or to the browser), never in the audit."""

from __future__ import annotations

import json
import stat
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from jitctl.cli.console_cmd import has_display
from jitctl.credentials.console import SignIn, console_home, login_url, session_duration
from jitctl.models import Credentials
from tests.federation_sim import FederationSim
from tests.harness import Team

ALICE, BOB = "alice@example.com", "bob@example.com"
NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


@pytest.fixture
def federation(moto_server) -> Iterator[FederationSim]:
    with FederationSim(moto_server) as sim:
        yield sim


@pytest.fixture
def team(team: Team, pd_sim) -> Team:
    team.on_call(ALICE, 3)
    return team


def console_env(team: Team, federation: FederationSim, user: str = ALICE, **extra: str):
    env = team.env(user, JITCTL_CONSOLE_FEDERATION_URL=federation.url, **extra)
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        env.pop(var, None)
    env.update(extra)
    return env


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def test_on_call_console_prints_a_login_url_the_endpoint_accepts(team, federation):
    out = team.run(
        ALICE,
        "console",
        "prod-readonly",
        "--reason",
        "INC-3",
        "--print",
        env=console_env(team, federation),
    )
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    assert "\n" not in url
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == federation.url
    query = query_of(url)
    assert sorted(query) == ["Action", "Destination", "Issuer", "SigninToken"]
    assert query["Action"] == ["login"] and query["Issuer"] == ["jitctl"]
    assert query["Destination"] == ["https://console.aws.amazon.com/"]
    (exchange,) = federation.exchanges
    assert query["SigninToken"] == [exchange.token]
    # the session the endpoint received was the grant's: a session of the role itself
    assert ":assumed-role/prod-readonly/" in exchange.arn
    # bounded like the credentials: at most what the grant has left (the policy's 2h max)
    assert exchange.session_duration is not None and 900 <= exchange.session_duration <= 7200
    # the URL works once opened (the endpoint sends the browser to the console)
    opener = urllib.request.build_opener(_NoRedirect())
    with pytest.raises(urllib.error.HTTPError) as sent:
        opener.open(url, timeout=10)
    assert sent.value.code == 302
    assert sent.value.headers["location"] == "https://console.aws.amazon.com/"
    # a bearer secret: not on stderr, not in the audit log
    assert exchange.token not in out.stderr
    audit = team.audit_log(ALICE).read_text()
    assert exchange.token not in audit and "SigninToken" not in audit
    assert "issued" in [r["event"] for r in team.audit_records(ALICE)]


def test_the_duration_bounds_the_console_session(team, federation):
    out = team.run(
        ALICE,
        "console",
        "prod-readonly",
        "--reason",
        "INC-3",
        "--duration",
        "20m",
        "--print",
        env=console_env(team, federation),
    )
    assert out.returncode == 0, out.stderr
    (exchange,) = federation.exchanges
    assert 900 <= exchange.session_duration <= 1200


def test_without_a_display_the_url_is_printed(team, federation):
    out = team.run(
        ALICE, "console", "prod-readonly", "--reason", "INC-3", env=console_env(team, federation)
    )
    assert out.returncode == 0, out.stderr
    assert query_of(out.stdout.strip())["Action"] == ["login"]
    assert "URL printed on stdout" in out.stderr


def test_on_a_desktop_the_browser_gets_the_url_and_stdout_stays_empty(team, federation, tmp_path):
    seen = tmp_path / "browser-got"
    browser = tmp_path / "browser"
    browser.write_text(
        f"#!{sys.executable}\nimport sys\nopen({str(seen)!r}, 'w').write(sys.argv[1])\n"
    )
    browser.chmod(stat.S_IRWXU)
    env = console_env(team, federation, DISPLAY=":0", BROWSER=str(browser))
    out = team.run(ALICE, "console", "prod-readonly", "--reason", "INC-3", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and "opened in your browser" in out.stderr
    got = seen.read_text()
    assert query_of(got)["SigninToken"] == [federation.exchanges[0].token]


def test_a_peer_approved_console_signs_in_after_approval(team, federation):
    """Bob is not on call: the request waits for Carol, then the URL comes."""
    waiting = team.popen(
        BOB,
        "console",
        "prod-readonly",
        "--reason",
        "INC-4",
        "--print",
        env=console_env(team, federation, user=BOB),
    )
    rid = _pending_id(team)
    approved = team.run("carol@example.com", "approve", rid, "--reason", "ok")
    assert approved.returncode == 0, approved.stderr
    stdout, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, stderr
    assert query_of(stdout.strip())["Action"] == ["login"]
    assert len(federation.exchanges) == 1


def _pending_id(team: Team) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = json.loads(team.run(BOB, "list", "--pending", "--json").stdout or "[]")
        if rows:
            return rows[0]["request_id"]
        time.sleep(0.3)
    raise AssertionError("no pending request appeared")


def test_a_refused_session_is_exit_3_in_one_line_without_secrets(team, federation):
    federation.refuse = True
    out = team.run(
        ALICE,
        "console",
        "prod-readonly",
        "--reason",
        "INC-3",
        "--print",
        env=console_env(team, federation),
    )
    assert out.returncode == 3
    line = out.stderr.strip().splitlines()[-1]
    assert "refused" in line and "Traceback" not in out.stderr
    assert "sessionKey" not in out.stderr and "Session=" not in out.stderr
    assert out.stdout == ""


def test_an_unreachable_endpoint_is_exit_5(team, federation):
    env = console_env(team, federation)
    env["JITCTL_CONSOLE_FEDERATION_URL"] = "http://127.0.0.1:9/federation"  # discard port
    out = team.run(ALICE, "console", "prod-readonly", "--reason", "INC-3", "--print", env=env)
    assert out.returncode == 5, out.stderr
    assert "cannot reach the federation endpoint" in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""


def test_an_endpoint_that_answers_garbage_is_exit_5(team, federation):
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))

    def garbage() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            conn.sendall(b"not http at all\r\n\r\n")

    threading.Thread(target=garbage, daemon=True).start()
    env = console_env(team, federation)
    env["JITCTL_CONSOLE_FEDERATION_URL"] = f"http://127.0.0.1:{server.getsockname()[1]}/federation"
    try:
        out = team.run(ALICE, "console", "prod-readonly", "--reason", "INC-3", "--print", env=env)
    finally:
        server.close()
    assert out.returncode == 5, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) >= 1
    assert out.stdout == ""


@pytest.mark.parametrize(
    "setting",
    [
        'federation_url = "http://signin.example.com/federation"',  # credentials in clear
        'federation_url = "https://signin.aws.amazon.com/federation?x=1"',
        'federation_urll = "https://signin.aws.amazon.com/federation"',  # unknown key
    ],
)
def test_bad_console_config_is_exit_2_before_anything_is_requested(team, federation, setting):
    with team.config.open("a") as fh:
        fh.write(f"[console]\n{setting}\n")
    env = console_env(team, federation)
    env.pop("JITCTL_CONSOLE_FEDERATION_URL")
    out = team.run(ALICE, "console", "prod-readonly", "--reason", "INC-3", "--print", env=env)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "console" in out.stderr
    assert "requested" not in [r["event"] for r in team.audit_records(ALICE)]


def test_session_duration_is_what_the_credentials_have_left_within_aws_limits():
    def creds(left: timedelta) -> Credentials:
        return Credentials("ASIAX", "secret", "token", NOW + left)

    assert session_duration(creds(timedelta(hours=1)), NOW) == 3600
    assert session_duration(creds(timedelta(hours=13)), NOW) == 43200
    assert session_duration(creds(timedelta(minutes=15)), NOW) == 900
    assert session_duration(creds(timedelta(minutes=14)), NOW) is None  # AWS's default then


def test_login_url_parts_and_partitions():
    url = login_url("https://signin.aws.amazon.com/federation", "tok/en+")
    assert urlsplit(url).netloc == "signin.aws.amazon.com"
    assert query_of(url)["SigninToken"] == ["tok/en+"]
    gov = "https://signin.amazonaws-us-gov.com/federation"
    assert console_home(gov) == "https://console.amazonaws-us-gov.com/"
    assert console_home("http://127.0.0.1:1/federation") == "https://console.aws.amazon.com/"
    assert "tok" not in repr(SignIn(url, None, NOW, None))  # a bearer secret: no repr of it


def test_has_display():
    assert has_display({"DISPLAY": ":0"}, "linux") and not has_display({}, "linux")
    assert has_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert has_display({}, "darwin") and not has_display({"SSH_CONNECTION": "x"}, "darwin")
    assert has_display({"BROWSER": "lynx"}, "linux")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_a_failed_sign_in_leaves_no_extra_grant_the_next_console_reuses_it(team, federation):
    """Issue 21 item 12: each failed `console --print` used to leave a new 1-hour grant; the
    next console (and exec, request) reuses the live one, and --fresh asks anew."""
    federation.refuse = True
    env = console_env(team, federation)
    args = ("console", "prod-readonly", "--reason", "INC-12", "--print")
    assert team.run(ALICE, *args, env=env).returncode == 3
    federation.refuse = False
    again = team.run(ALICE, *args, env=env)
    assert again.returncode == 0, again.stderr
    [rid] = [r["request_id"] for r in json.loads(team.run(ALICE, "list", "--json").stdout)]
    assert f"reusing grant {rid}" in again.stderr
    assert [r["event"] for r in team.audit_records(ALICE)].count("reused") == 1
    assert team.run(ALICE, *args, "--fresh", env=env).returncode == 0
    assert len(json.loads(team.run(ALICE, "list", "--json").stdout)) == 2
