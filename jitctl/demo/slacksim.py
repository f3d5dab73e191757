"""A Slack Web API simulator over HTTPS on 127.0.0.1, and a client that signs interaction
payloads exactly as Slack documents: `jitctl demo`'s Slack, and the tests' (tests/slacksim.py).

It answers the methods jitctl calls with Slack's documented shapes: ``{"ok": true, ...}``, or
``{"ok": false, "error": ...}`` with HTTP 200, or HTTP 429 with ``Retry-After`` when told to
rate-limit; it checks the bot token (``Authorization: Bearer``), keeps the messages posted
and updated, and records every call. ``/respond/ID`` stands in for interactions'
``response_url``. TLS comes from the PagerDuty simulator's throwaway CA (jitctl.demo.tls).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from jitctl.demo.tls import CertFiles

TOKEN = "xoxb-slacksim-bot-token"
SIGNING_SECRET = "slacksim-signing-secret"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int
    answer: dict[str, Any]


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    updates: int = 0

    @property
    def where(self) -> str:
        return f"direct message to {self.channel[1:]}" if self.channel[:1] == "D" else self.channel

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return [e for b in self.blocks if b.get("type") == "actions" for e in b["elements"]]

    @property
    def shown(self) -> str:
        """Every text the message shows, blocks included."""
        parts = [self.text] + [str(b.get("text", {}).get("text", "")) for b in self.blocks]
        return "\n".join(parts)


class SlackSim:
    def __init__(self, certs: CertFiles) -> None:
        self.certs = certs
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.users: dict[str, dict[str, Any]] = {}
        self.messages: list[Message] = []
        self.calls: list[Call] = []
        self.responses: list[dict[str, Any]] = []  # what response_url received
        self.down: set[str] = set()  # methods answering HTTP 503 ("*": all)
        self.limited: set[str] = set()  # methods answering 429 + Retry-After
        self._ts = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self.on_message: Callable[[Message], None] | None = None  # told of each post/update
        # Run once, before Slack answers the method's next call (a test's race: something
        # happens while chat.postMessage is under way); outside the lock, so it may call Slack.
        self.before: dict[str, Callable[[dict[str, Any]], None]] = {}

    # -- seeding ---------------------------------------------------------------------
    def add_user(self, user_id: str, email: str | None, **flags: Any) -> str:
        user = {
            "id": user_id,
            "name": user_id.lower(),
            "deleted": False,
            "is_bot": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_email_confirmed": True,
            "profile": {"real_name": user_id, **({"email": email} if email else {})},
        }
        user.update(flags)
        self.users[user_id] = user
        return user_id

    # -- serving ---------------------------------------------------------------------
    def __enter__(self) -> SlackSim:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certs.cert, self.certs.key)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.sim = self  # type: ignore[attr-defined]
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    # -- reading ---------------------------------------------------------------------
    def calls_to(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method]

    def message_for(self, request_id: str, timeout: float = 20) -> list[Message]:
        """The messages whose buttons or text name ``request_id`` (waits until one exists)."""
        self.wait_for(lambda: self.naming(request_id), timeout)
        return self.naming(request_id)

    def naming(self, request_id: str) -> list[Message]:
        """The messages naming ``request_id`` now (no lock: a predicate of ``wait_for``)."""
        return [m for m in list(self.messages) if request_id in m.shown]

    def wait_for(self, predicate: Any, timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                if not self.changed.wait(max(0.0, deadline - time.monotonic())):
                    return bool(predicate())
            return True

    # -- the API ---------------------------------------------------------------------
    def answer(self, method: str, args: dict[str, Any], auth: str) -> tuple[int, dict[str, Any], dict[str, Any]]:
        with self.lock:
            hook = self.before.pop(method, None)
        if hook is not None:
            hook(args)
        with self.changed:
            if method in self.down or "*" in self.down:
                status, headers, body = 503, {}, {"ok": False, "error": "service_unavailable"}
            elif method in self.limited:
                status, headers, body = (
                    429,
                    {"Retry-After": "30"},
                    {"ok": False, "error": "ratelimited"},
                )
            elif auth != f"Bearer {TOKEN}" and not method.startswith("respond/"):
                status, headers, body = 200, {}, {"ok": False, "error": "invalid_auth"}
            else:
                status, headers, body = 200, {}, self._method(method, args)
            self.calls.append(Call(method, args, status, body))
            self.changed.notify_all()
            shown = self._shown(method, args) if status == 200 and body.get("ok") else None
        if shown is not None and self.on_message is not None:
            self.on_message(shown)  # `jitctl demo --serve` prints it
        return status, headers, body

    def _shown(self, method: str, args: dict[str, Any]) -> Message | None:
        if method == "chat.postMessage":
            return self.messages[-1]
        if method == "chat.update":
            return next((m for m in self.messages if m.ts == args.get("ts")), None)
        if method == "chat.postEphemeral":
            return Message(f"only visible to {args.get('user')}", "", str(args.get("text", "")))
        return None

    def _method(self, method: str, a: dict[str, Any]) -> dict[str, Any]:
        if method.startswith("respond/"):
            self.responses.append(a)
            return {"ok": True}
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        answer: dict[str, Any] = handler(a)
        return answer

    def _auth_test(self, a: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://sim.slack.com/",
            "team": "sim",
            "user": "jitctl",
            "team_id": "T0SIM",
            "user_id": "U0JITCTL",
            "bot_id": "B0JITCTL",
        }

    def _users_info(self, a: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(a.get("user")))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def _users_lookupByEmail(self, a: dict[str, Any]) -> dict[str, Any]:
        for user in self.users.values():
            if user["profile"].get("email") == a.get("email"):
                return {"ok": True, "user": user}
        return {"ok": False, "error": "users_not_found"}

    def _conversations_open(self, a: dict[str, Any]) -> dict[str, Any]:
        users = str(a.get("users") or "")
        if users not in self.users:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": "D" + users}}

    def _chat_postMessage(self, a: dict[str, Any]) -> dict[str, Any]:
        ts = f"{1700000000 + next(self._ts)}.000100"
        msg = Message(str(a["channel"]), ts, str(a.get("text", "")), _blocks(a))
        self.messages.append(msg)
        return {"ok": True, "channel": msg.channel, "ts": ts, "message": {"text": msg.text}}

    def _chat_update(self, a: dict[str, Any]) -> dict[str, Any]:
        for msg in self.messages:
            if (msg.channel, msg.ts) == (a.get("channel"), a.get("ts")):
                msg.text, msg.blocks = str(a.get("text", "")), _blocks(a)
                msg.updates += 1
                return {"ok": True, "channel": msg.channel, "ts": msg.ts}
        return {"ok": False, "error": "message_not_found"}

    def _chat_postEphemeral(self, a: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "message_ts": "1.0"}

    def _views_open(self, a: dict[str, Any]) -> dict[str, Any]:
        view = a.get("view")
        view = json.loads(view) if isinstance(view, str) else view
        return {"ok": True, "view": {"id": "V0SIM", **(view or {})}}


def _blocks(a: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = a.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else list(blocks)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        split = urlsplit(self.path)
        args: dict[str, Any] = {k: v[0] for k, v in parse_qs(split.query).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "json" in (self.headers.get("Content-Type") or ""):
            args.update(json.loads(raw or b"{}"))
        else:
            args.update({k: v[0] for k, v in parse_qs(raw.decode()).items()})
        path = split.path
        method = path.removeprefix("/api/") if path.startswith("/api/") else path.lstrip("/")
        sim: SlackSim = self.server.sim  # type: ignore[attr-defined]
        status, headers, body = sim.answer(method, args, self.headers.get("Authorization", ""))
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST


# -- Slack's side of an interaction: a signed POST to the broker ------------------------------
def signed(body: bytes, *, secret: str = SIGNING_SECRET, at: float | None = None) -> dict[str, str]:
    """Slack's headers for ``body``: X-Slack-Signature = v0= + HMAC-SHA256 of v0:TS:BODY."""
    stamp = str(int(time.time() if at is None else at))
    mac = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={mac}",
    }


def form(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def click(
    user: str, action_id: str, request_id: str, sim: SlackSim | None, nonce: str = ""
) -> dict[str, Any]:
    """A block_actions payload for a button of the request's message (without ``sim``, no
    response_url: the broker replies with chat.postEphemeral)."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0SIM"},
        "trigger_id": f"trigger-{user}-{request_id}{nonce}",
        "channel": {"id": "C0JIT"},
        "actions": [
            {
                "action_id": action_id,
                "block_id": "b",
                "value": request_id,
                "type": "button",
                "action_ts": f"{time.time():.6f}{nonce}",
            }
        ],
    }
    if sim is not None:
        payload["response_url"] = f"{sim.url}/respond/{user}"
    return payload


def deny_submission(user: str, request_id: str, reason: str) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "user": {"id": user, "username": user.lower(), "team_id": "T0SIM"},
        "view": {
            "callback_id": "jitctl_deny",
            "private_metadata": request_id,
            "state": {
                "values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}
            },
        },
    }


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST to the broker (plain http on loopback) and return (status, JSON)."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def main(argv: list[str]) -> int:
    """``python -m jitctl.demo.slacksim approve|deny BROKER_URL REQUEST_ID SLACK_USER``: click
    a button of the request's message as SLACK_USER, signed as Slack signs (`demo --serve`)."""
    if len(argv) != 4 or argv[0] not in ("approve", "deny"):
        print(main.__doc__, file=sys.stderr)
        return 2
    action, broker, request_id, user = argv
    payload = click(user, f"jitctl_{action}", request_id, None)
    body = form(payload)
    status, answer = post(f"{broker.rstrip('/')}/v1/slack/interactions", body, signed(body))
    print(f"HTTP {status} {json.dumps(answer)}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
