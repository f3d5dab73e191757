"""Text from other people (reasons, names, PagerDuty fields) is data, never markup or escapes.

`clean` strips control characters and terminal escape sequences; rich markup escaping is the
CLI's job (rich.markup.escape), because core modules never import rich.
"""

from __future__ import annotations

import re
import unicodedata

MAX_REASON = 1000

# CSI / OSC / other ESC sequences, then any remaining C0/C1 control character.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|\x9b[0-?]*[ -/]*[@-~]"
)


def clean(text: str) -> str:
    """Remove escape sequences and control characters (newlines become spaces)."""
    text = _ESCAPES.sub("", text)
    out = []
    for ch in text:
        if ch in "\n\r\t":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\u200d":
            continue  # C0/C1 controls, bidi overrides (Cf) that can disguise text
        else:
            out.append(ch)
    return "".join(out)
