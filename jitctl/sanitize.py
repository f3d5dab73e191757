"""Text from other people (reasons, names, PagerDuty fields) is data, never markup or escapes.

`clean` strips control characters and terminal escape sequences; rich markup escaping is the
CLI's job (rich.markup.escape), because core modules never import rich. Text that is not valid
Unicode (Python decodes undecodable argv bytes, or bytes read with surrogateescape, to lone
surrogates) is refused where a person types it and shown escaped where someone else stored it.
"""

from __future__ import annotations

import re
import unicodedata

from jitctl.errors import UsageError

MAX_REASON = 1000

# CSI / OSC / other ESC sequences, then any remaining C0/C1 control character.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|\x9b[0-?]*[ -/]*[@-~]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(text: str) -> str:
    """Remove escape sequences and control characters (newlines become spaces); lone
    surrogates become visible escapes: \\xff for an undecodable byte, else \\udxxx."""
    text = _ESCAPES.sub("", text)
    out = []
    for ch in text:
        if ch in "\n\r\t":
            out.append(" ")
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")  # surrogateescape's form of one byte
        elif "\ud800" <= ch <= "\udfff":
            out.append(f"\\u{ord(ch):04x}")
        elif unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\u200d":
            continue  # C0/C1 controls, bidi overrides (Cf) that can disguise text
        else:
            out.append(ch)
    return "".join(out)


def is_valid_text(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (no lone surrogates)."""
    return _SURROGATE.search(text) is None


def require_text(text: str, what: str) -> str:
    """``text`` itself, or a UsageError (exit 2) naming ``what`` when it is not valid UTF-8."""
    if not is_valid_text(text):
        raise UsageError(
            f"{what} is not valid UTF-8: {clean(text)[:80]}",
            "retype it, or set your terminal's encoding (LANG/LC_ALL) to UTF-8",
        )
    return text


def check_argv(argv: list[str]) -> None:
    """Refuse a command line with undecodable bytes before anything reads it."""
    for i, arg in enumerate(argv):
        before = argv[i - 1] if i else ""
        what = f"the value of {before}" if before.startswith("--") else f"argument {i + 1}"
        require_text(arg, what)


def slack_text(text: str) -> str:
    """People's text for Slack (mrkdwn in Block Kit and webhooks): the one rule. Cleaned as
    above, then ``&``, ``<`` and ``>`` escaped as Slack documents, which defuses
    ``<!channel>``/``<!here>``, ``<@U…>`` mentions and ``<url|label>`` links."""
    return clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
