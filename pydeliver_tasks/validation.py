"""Validators for every value that may reach a remote shell or a git command.

They run before any connection is opened, so bad input never costs a remote command. Each returns
the cleaned value or raises `InvalidInput` with a message that names the offending value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from invoke.exceptions import Exit
from packaging.version import InvalidVersion, Version


class InvalidInput(ValueError, Exit):
    """A value given by the user (flag or config) that we refuse before touching any host.

    Also an invoke Exit (code 2, one-line message), so a step called from a user's own task
    ends the same way as our tasks do: no traceback.
    """

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, message)
        Exit.__init__(self, f"error: {message}", code=2)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# OTP release versions are free-form strings, but anything outside this set would need quoting
# in file names, git refs and Erlang terms; semver with +build/-pre parts fits inside it.
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")
_APP_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_REF_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._/+-]{0,199}$")
_SHA_RE = re.compile(r"^[0-9a-f]{4,40}$")
_STAGE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_IPV6_RE = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def version(value: str) -> str:
    """A release version: safe characters only, no path or shell meaning."""
    if not isinstance(value, str) or not _VERSION_RE.fullmatch(value) or ".." in value:
        raise InvalidInput(
            f"invalid version {value!r}: use letters, digits and . _ + - (e.g. 1.2.3 or 1.2.3+abc)"
        )
    return value


def parsed_version(value: str) -> Version | None:
    """The PEP 440 reading of a release version, or None when it is not comparable."""
    try:
        return Version(value)
    except InvalidVersion:
        return None


def app_name(value: str) -> str:
    """An OTP application/release name: an Erlang atom that needs no quoting."""
    if not isinstance(value, str) or not _APP_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid app name {value!r}: lowercase letters, digits and _ , starting with a letter"
        )
    return value


def git_ref(value: str) -> str:
    """A tag or branch name that git accepts and the shell cannot misread."""
    bad = (
        not isinstance(value, str)
        or not _REF_RE.fullmatch(value)
        or ".." in value
        or value.endswith((".", "/", ".lock"))
        or "//" in value
        or "@{" in value
    )
    if bad:
        raise InvalidInput(f"invalid git ref {value!r}: letters, digits and . _ / + - only")
    return value


def revision(value: str) -> str:
    """A commit sha (abbreviated or full)."""
    if not isinstance(value, str) or not _SHA_RE.fullmatch(value):
        raise InvalidInput(f"invalid revision {value!r}: expected a hex commit sha (4-40 chars)")
    return value


def stage_name(value: str) -> str:
    if not isinstance(value, str) or not _STAGE_RE.fullmatch(value):
        raise InvalidInput(f"invalid stage name {value!r}: letters, digits, _ and - only")
    return value


# Linux copies each environment entry into a new program (execve) only up to MAX_ARG_STRLEN
# (32 pages) bytes, NAME=value and its NUL included; a longer one fails every node command.
ENV_ENTRY_MAX = 32 * 4096


def env_value(name: str, value: str) -> str:
    """A value the node's environment can carry: no NUL, and NAME=value within ENV_ENTRY_MAX."""
    if "\0" in value:
        raise InvalidInput("the value holds a NUL byte, which no environment can carry")
    size = len(f"{name}={value}".encode()) + 1
    if size > ENV_ENTRY_MAX:
        raise InvalidInput(
            f"the value is {size} bytes; Linux passes at most {ENV_ENTRY_MAX} bytes per "
            "environment entry to a program (MAX_ARG_STRLEN), so the node could not start: put "
            "large data in a file on the host and its path in the env")
    return value


def env_name(value: str) -> str:
    if not isinstance(value, str) or not _ENV_NAME_RE.fullmatch(value):
        raise InvalidInput(f"invalid environment variable name {value!r}")
    return value


@dataclass(frozen=True)
class HostAddress:
    """The parts of a `user@host:port` string."""

    host: str
    user: str | None = None
    port: int | None = None

    @property
    def spec(self) -> str:
        text = self.host
        if self.user:
            text = f"{self.user}@{text}"
        if self.port:
            text = f"{text}:{self.port}"
        return text


def host_address(value: str) -> HostAddress:
    """Parse `[user@]host[:port]`; host may be a name, an IPv4 address or `[ipv6]`."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"invalid host {value!r}: expected user@host:port")
    rest = value
    user: str | None = None
    if "@" in rest:
        user, rest = rest.split("@", 1)
        if not _USER_RE.fullmatch(user):
            raise InvalidInput(f"invalid host {value!r}: bad user name {user!r}")
    port: int | None = None
    if rest.startswith("["):
        end = rest.find("]")
        host, tail = rest[: end + 1], rest[end + 1 :]
        if end < 0 or not _IPV6_RE.fullmatch(host) or (tail and not tail.startswith(":")):
            raise InvalidInput(f"invalid host {value!r}: bad IPv6 form")
        port_text = tail[1:] if tail else None
    else:
        host, _, port_text = rest.partition(":")
        port_text = port_text or None
        if not _HOSTNAME_RE.fullmatch(host):
            raise InvalidInput(f"invalid host {value!r}: bad host name {host!r}")
        labels = host.split(".")
        if all(x.isdigit() for x in labels) and (len(labels) != 4 or any(int(x) > 255 for x in labels)):
            raise InvalidInput(f"invalid host {value!r}: {host!r} is not an IPv4 address")
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise InvalidInput(f"invalid host {value!r}: port must be 1-65535")
        port = int(port_text)
    return HostAddress(host=host, user=user, port=port)


MAX_LINES = 100_000


def lines_count(lines: object) -> int:
    """--lines of logs/history: a whole number 1-MAX_LINES."""
    if isinstance(lines, bool) or not isinstance(lines, int) or not 0 < lines <= MAX_LINES:
        raise InvalidInput(f"invalid --lines {lines!r}: expected a whole number 1-{MAX_LINES}")
    return lines


def subdir(value: str) -> str:
    """deliver.build.subdir: a relative path inside the repository (no `..`, no leading /)."""
    parts = value.strip("/").split("/")
    if value.startswith("/") or any(x in ("", ".", "..") for x in parts) or \
            not all(_REF_RE.fullmatch(x) for x in parts):
        raise InvalidInput(f"invalid subdir {value!r}: a relative path inside the repository, "
                           "e.g. services/shop (letters, digits, . _ + - per part; no ..)")
    return "/".join(parts)
