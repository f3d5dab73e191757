"""Write issued credentials to the AWS shared credentials file as a named profile.

The file belongs to the user and holds their other profiles, so it is edited line by line
instead of round-tripped through configparser (which drops comments and reformats): every
byte outside the target section survives. Where a section starts is decided exactly the way
``configparser.RawConfigParser`` (botocore's reader) decides it, so jitctl and the AWS SDKs
always agree on which lines make up a profile.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from jitctl.errors import UsageError
from jitctl.filelock import atomic_write, exclusive_lock, remove_stale_temps, require_regular
from jitctl.models import Credentials
from jitctl.timeutil import rfc3339

EXPIRES_KEY = "x_security_token_expires"  # what aws-vault and granted write; botocore ignores it
# Every profile jitctl delivers carries the request it was issued for: a profile without it,
# holding anything, is someone else's (a user's long-term keys, another tool's session).
MARKER = "x_jitctl_request_id"
_STANDARD_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", EXPIRES_KEY)
_EXTRA_KEY = re.compile(r"[a-z][a-z0-9_]*")
_LOCK_TIMEOUT = 30.0  # seconds; a stuck writer should produce an error, not a hang
_COMMENT_PREFIXES = ("#", ";")  # RawConfigParser's defaults; inline comments are off
_SECTCRE = configparser.RawConfigParser.SECTCRE
_OPTCRE = configparser.RawConfigParser.OPTCRE
_NONSPACE = re.compile(r"\S")
# "DEFAULT" is configparser's defaults section: keys there leak into every profile.
_RESERVED_PROFILES = frozenset({configparser.DEFAULTSECT})
_PROFILE_PUNCTUATION = "- _ . @ + = , : /"
_READABLE_PROFILE = re.compile(r"[A-Za-z0-9_.@+=,:/-]{1,128}")
_NO_EXTRA: Mapping[str, str] = MappingProxyType({})  # immutable default


def shared_credentials_path(env: Mapping[str, str]) -> Path:
    """``$AWS_SHARED_CREDENTIALS_FILE``, else ``~/.aws/credentials`` (as botocore finds it)."""
    return _aws_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials")


def _aws_file(env: Mapping[str, str], variable: str, name: str) -> Path:
    """The file ``variable`` names, else ``~/.aws/NAME``: botocore's rule for both files."""
    configured = env.get(variable)
    if configured:
        return Path(os.path.expanduser(configured))
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".aws" / name


def validate_profile_name(profile: str) -> str:
    """Refuse names that would break the file or mean something else to botocore."""
    if not isinstance(profile, str) or not profile:
        raise ValueError("profile name must not be empty")
    if profile != profile.strip():
        raise ValueError(f"profile name {profile!r} must not start or end with whitespace")
    if "[" in profile or "]" in profile:
        raise ValueError(f"profile name {profile!r} must not contain '[' or ']'")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in profile):
        raise ValueError(f"profile name {profile!r} must not contain control characters")
    if profile in _RESERVED_PROFILES:
        raise ValueError(f"profile name {profile!r} is reserved: it would apply to every profile")
    if not _READABLE_PROFILE.fullmatch(profile):
        # botocore splits `[profile NAME]` with shlex and drops sections that do not split in
        # two (a space, a quote), and the JS SDK with them: the region there would be lost
        raise ValueError(
            f"profile name {profile!r} cannot be read back by AWS clients from "
            f"[profile {profile}]: use only letters, digits and {_PROFILE_PUNCTUATION}"
        )
    return profile


def write_profile(
    path: Path,
    profile: str,
    creds: Credentials,
    *,
    extra: Mapping[str, str] = _NO_EXTRA,
    only_ours: bool = False,
) -> None:
    """Write (or replace in place) ``[profile]`` with ``creds`` and ``extra`` keys. File mode 0600.
    ``only_ours``: a profile holding keys without ``MARKER`` is never replaced (UsageError)."""
    validate_profile_name(profile)
    values = {
        "aws_access_key_id": creds.access_key_id,
        "aws_secret_access_key": creds.secret_access_key,
        "aws_session_token": creds.session_token,
    }
    if creds.expiration is not None:
        values[EXPIRES_KEY] = rfc3339(creds.expiration)
    for key, value in extra.items():
        if not _EXTRA_KEY.fullmatch(key) or key in _STANDARD_KEYS:
            raise ValueError(
                f"extra key {key!r} must be lower-case [a-z0-9_] and not a standard key"
            )
        values[key] = value
    for key, value in values.items():
        _check_value(key, value)

    target = _real(path)
    with exclusive_lock(target, timeout=_LOCK_TIMEOUT):
        remove_stale_temps(target)  # full credentials left by writers killed mid-write
        text = _read_text(target)
        lines = _split_lines(text)
        if only_ours:
            _refuse_foreign(lines, profile, path)
        newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
        section = [f"[{profile}]{newline}"] + [f"{k} = {v}{newline}" for k, v in values.items()]
        atomic_write(target, _encode("".join(_replace(lines, profile, section, newline))))


def check_ours(path: Path, profile: str) -> None:
    """Exit 2 if ``[profile]`` holds keys jitctl did not write. No lock: this is the early
    answer, before anything is requested; ``write_profile(only_ours=True)`` asks again under it."""
    _refuse_foreign(_split_lines(_read_text(_real(path))), profile, path)


def _refuse_foreign(lines: list[str], profile: str, path: Path) -> None:
    keys = _keys(lines, profile)
    if keys and MARKER not in keys:
        raise UsageError(
            f"profile [{profile}] in {path} holds keys jitctl did not write "
            f"({', '.join(sorted(keys))}); jitctl never overwrites it",
            "choose another --profile (by default jitctl writes jit-ROLE)",
        )


def _keys(lines: list[str], profile: str) -> set[str]:
    """Option names in the profile's sections, lower-cased as botocore reads them."""
    names: set[str] = set()
    for span in _spans(lines, profile):
        for line in lines[span.start + 1 : span.end]:
            match = None if _is_comment(line) else _OPTCRE.match(line.strip())
            if match and match.group("option"):
                names.add(match.group("option").strip().lower())
    return names


def aws_config_path(env: Mapping[str, str]) -> Path:
    """``$AWS_CONFIG_FILE``, else ``~/.aws/config`` (as botocore finds it)."""
    return _aws_file(env, "AWS_CONFIG_FILE", "config")


def write_config_region(path: Path, profile: str, region: str) -> bool:
    """Set ``region`` in the AWS config file's ``[profile NAME]`` section, keeping the
    section's other keys and comments and every other byte; True if the file changed.
    Raises ValueError if the file cannot be parsed (botocore would refuse it too)."""
    validate_profile_name(profile)
    _check_value("region", region)
    # botocore's config file names a profile "profile NAME", except for "default".
    section = profile if profile == "default" else f"profile {profile}"
    target = _real(path)
    with exclusive_lock(target, timeout=_LOCK_TIMEOUT):
        remove_stale_temps(target)
        text = _read_text(target)
        values = _section_values(text, section, str(path))
        if values.get("region") == region:
            return False
        values["region"] = region
        lines = _split_lines(text)
        newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
        body = [f"{k} = {v}".replace("\n", newline + "    ") + newline for k, v in values.items()]
        atomic_write(
            target,
            _encode("".join(_replace(lines, section, [f"[{section}]{newline}", *body], newline))),
        )
        return True


def _section_values(text: str, section: str, name: str) -> dict[str, str]:
    """The section's own keys as botocore reads them (nested values keep their lines)."""
    parser = configparser.RawConfigParser(default_section="\0")  # [DEFAULT] is no special case
    try:
        parser.read_string(text, source=name)
    except configparser.Error as e:
        raise ValueError(f"cannot parse {name}: {e}") from None
    return dict(parser.items(section)) if parser.has_section(section) else {}


def remove_profile(path: Path, profile: str) -> bool:
    """Remove ``[profile]``; True if it was there. Everything else is left byte for byte."""
    validate_profile_name(profile)
    target = _real(path)
    with exclusive_lock(target, timeout=_LOCK_TIMEOUT):
        remove_stale_temps(target)
        text = _read_text(target)
        lines = _split_lines(text)
        if not _spans(lines, profile):
            return False
        atomic_write(target, _encode("".join(_replace(lines, profile, None, "\n"))))
        return True


def read_profile(path: Path, profile: str) -> dict[str, str] | None:
    """The profile's keys as botocore would read them, or None if absent (or no file).

    No lock: writers replace the file atomically, so a reader sees one whole version.
    Raises ValueError if the file cannot be parsed (botocore would refuse it too).
    """
    validate_profile_name(profile)
    parser = _parse(path, str(path))
    if not parser.has_section(profile):
        return None
    return dict(parser.items(profile))


def profiles_for_request(path: Path, request_id: str) -> list[str]:
    """Profiles in the file written for ``request_id`` (delivery tags them with
    ``x_jitctl_request_id``), read like ``read_profile``. ValueError if it cannot be parsed."""
    parser = _parse(path, "it")  # revoke's note already names the file
    return [
        name
        for name in parser.sections()
        if parser.get(name, "x_jitctl_request_id", fallback=None) == request_id
    ]


def _parse(path: Path, name: str) -> configparser.RawConfigParser:
    """The file as botocore reads it (no file: no sections); ValueError names it ``name``."""
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(_read_text(_real(path)), source=str(path))
    except configparser.Error as e:
        raise ValueError(f"cannot parse {name}: {e}") from None
    return parser


# --- line-level editing -----------------------------------------------------------------


@dataclass(frozen=True)
class _Span:
    """A section's lines ``[start, end)``; ``end`` excludes the trailing blank/comment run,
    which usually introduces the next section and so is not ours to remove."""

    start: int
    end: int


def _check_value(key: str, value: object) -> None:
    # A newline would inject lines; edge whitespace would be stripped by the reader.
    if not isinstance(value, str) or not value:
        raise ValueError(f"value for {key} must be a non-empty string")
    if value != value.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"value for {key} must not contain control characters or edge spaces")


def _real(path: Path) -> Path:
    # Follow a symlinked credentials file (dotfile managers) so the link survives the rename.
    return Path(os.path.realpath(path))


def _read_text(path: Path) -> str:
    require_regular(path, "the file")  # a FIFO would block the read for ever
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    # surrogateescape: bytes that are not UTF-8 in other profiles are written back unchanged.
    return data.decode("utf-8", errors="surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def _split_lines(text: str) -> list[str]:
    """Split after each "\\n", keeping the ends, so "".join() gives back ``text`` exactly."""
    return re.findall(r"[^\n]*\n|[^\n]+", text)


def _is_comment(line: str) -> bool:
    return line.strip().startswith(_COMMENT_PREFIXES)


def _headers(lines: list[str]) -> list[tuple[int, str]]:
    """(index, section name) of every line RawConfigParser reads as a section header.

    Mirrors ``RawConfigParser._read``: a line indented deeper than the option above it is a
    continuation of that option's value, even if it looks like ``[name]``.
    """
    found: list[tuple[int, str]] = []
    in_section = False
    option: str | None = None
    indent_level = 0
    for index, line in enumerate(lines):
        value = line.strip()
        if not value or _is_comment(line):
            continue  # empty_lines_in_values=True: blank lines do not reset the indent
        match = _NONSPACE.search(line)
        indent = match.start() if match else 0
        if in_section and option and indent > indent_level:
            continue
        indent_level = indent
        header = _SECTCRE.match(value)
        if header:
            found.append((index, header.group("header")))
            in_section, option = True, None
        elif in_section:
            opt = _OPTCRE.match(value)
            if opt and opt.group("option"):
                option = opt.group("option")
    return found


def _spans(lines: list[str], profile: str) -> list[_Span]:
    headers = _headers(lines)
    spans: list[_Span] = []
    for position, (index, name) in enumerate(headers):
        if name != profile:
            continue
        end = headers[position + 1][0] if position + 1 < len(headers) else len(lines)
        while end > index + 1 and (not lines[end - 1].strip() or _is_comment(lines[end - 1])):
            end -= 1
        spans.append(_Span(index, end))
    return spans


def _replace(lines: list[str], profile: str, section: list[str] | None, newline: str) -> list[str]:
    """Put ``section`` in place of the profile's first occurrence (None removes it).

    Later duplicates are dropped too: botocore refuses a file with a repeated section.
    Comment lines inside the old section are kept, just below the header.
    """
    spans = _spans(lines, profile)
    if not spans:
        if section is None:
            return lines
        out = list(lines)
        if out and not out[-1].endswith("\n"):
            out[-1] += newline
        if out and out[-1].strip():
            out.append(newline)  # separate from the previous section by a blank line
        return out + section

    out = []
    cursor = 0
    for number, span in enumerate(spans):
        out.extend(lines[cursor : span.start])
        body = lines[span.start + 1 : span.end]
        if number == 0 and section is not None:
            kept = [
                line if line.endswith("\n") else line + newline
                for line in body
                if _is_comment(line)
            ]
            out.append(section[0])
            out.extend(kept)
            out.extend(section[1:])
        cursor = span.end
    out.extend(lines[cursor:])
    return out
