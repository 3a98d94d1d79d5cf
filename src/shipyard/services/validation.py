"""What valid names, hosts, ports, paths and variables look like: checked once, here.

Each function returns the normalised value or raises ``InvalidInput`` naming the field.
These values later reach remote hosts as *arguments*, never as shell text; validation is
a second wall, not the first.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re

from shipyard.errors import InvalidInput

# \Z, not $: "$" also matches before a trailing newline, and "web\n" is no name.
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?\Z")
_USERNAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9._-]{0,62}[a-zA-Z0-9])?\Z")
_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_UNIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")


def name(value: str, field: str = "name") -> str:
    """A slug: lowercase letters, digits, '.', '_' and '-', 1-64 chars."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInput(
            f"{field} must be 1-64 lowercase letters, digits, '.', '_' or '-', starting "
            f"and ending with a letter or digit (got {value!r})", field=field)
    return value


def username(value: str, field: str = "username") -> str:
    if not isinstance(value, str) or not _USERNAME.match(value):
        raise InvalidInput(f"{field} must be 1-64 letters, digits, '.', '_' or '-' "
                           f"(got {value!r})", field=field)
    return value


def email(value: str | None, field: str = "email") -> str | None:
    if value in (None, ""):
        return None
    if not _EMAIL.match(value) or len(value) > 254:
        raise InvalidInput(f"{field} is not an email address", field=field)
    return value


def text(value: str, field: str, max_length: int = 200, *, allow_empty: bool = True) -> str:
    value = value.strip()
    if not value and not allow_empty:
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(value) > max_length:
        raise InvalidInput(f"{field} must be at most {max_length} characters", field=field)
    if _CONTROL.search(value.replace("\n", "").replace("\t", "")):
        raise InvalidInput(f"{field} must not contain control characters", field=field)
    return value


def host(value: str, field: str = "host") -> str:
    """An IPv4/IPv6 address or a DNS name (no scheme, no port, no user)."""
    if not isinstance(value, str) or not value or len(value) > 253:
        raise InvalidInput(f"{field} must be a hostname or IP address", field=field)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if value.startswith("-") or not all(_HOSTNAME_LABEL.match(label) for label in labels):
        raise InvalidInput(f"{field} must be a hostname or IP address (got {value!r})",
                           field=field)
    return value.lower()


def port(value: int, field: str = "port") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInput(f"{field} must be a number from 1 to 65535", field=field)
    return value


def unix_user(value: str, field: str = "user") -> str:
    if not isinstance(value, str) or not _UNIX_USER.match(value):
        raise InvalidInput(f"{field} must be a login name (lowercase letters, digits, "
                           f"'_' or '-', starting with a letter or '_')", field=field)
    return value


def remote_path(value: str, field: str) -> str:
    """An absolute, normalised POSIX path with no '..', no control characters, not '/'."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise InvalidInput(f"{field} must be an absolute path", field=field)
    if _CONTROL.search(value) or len(value) > 1000:
        raise InvalidInput(f"{field} contains control characters or is too long",
                           field=field)
    if ".." in value.split("/"):
        raise InvalidInput(f"{field} must not contain '..'", field=field)
    normal = posixpath.normpath(value)
    if normal.startswith("//"):
        normal = normal[1:]
    if normal == "/":
        raise InvalidInput(f"{field} must not be the root directory", field=field)
    return normal


def webroot_and_releases(webroot: str, releases: str) -> tuple[str, str]:
    """Both paths valid, and neither inside the other (the webroot is a symlink that
    gets replaced; the releases dir holds real directories)."""
    webroot = remote_path(webroot, "webroot")
    releases = remote_path(releases, "releases")
    if webroot == releases:
        raise InvalidInput("webroot and releases must differ", field="webroot")
    if webroot.startswith(releases + "/"):
        raise InvalidInput("webroot must not be inside releases", field="webroot")
    if releases.startswith(webroot + "/"):
        raise InvalidInput("releases must not be inside webroot (the webroot is a "
                           "symlink)", field="releases")
    return webroot, releases


def labels(values: list[str], field: str = "labels") -> list[str]:
    return sorted({name(v, field) for v in values})


def variables(values: dict[str, str], field: str = "variables") -> dict[str, str]:
    """Environment variable names and string values for hooks."""
    out: dict[str, str] = {}
    for key, val in values.items():
        if not _VARIABLE.match(key):
            raise InvalidInput(f"{field}: {key!r} is not a valid variable name "
                               "(letters, digits and '_', not starting with a digit)",
                               field=f"{field}.{key}")
        if not isinstance(val, str):
            val = str(val)
        if "\x00" in val or len(val) > 10_000:
            raise InvalidInput(f"{field}: value of {key} is too long or has a NUL byte",
                               field=f"{field}.{key}")
        out[key] = val
    return out


def patterns(values: list[str], field: str) -> list[str]:
    """Relative glob patterns for excludes/includes: never absolute, never '..'."""
    out = []
    for value in values:
        if not value or value.startswith("/") or ".." in value.split("/") \
                or _CONTROL.search(value) or len(value) > 500:
            raise InvalidInput(f"{field}: {value!r} must be a relative pattern without '..'",
                               field=field)
        out.append(value)
    return out


def hook(value: str | None, field: str) -> str | None:
    """A hook is a shell script run as ``sh -c SCRIPT``; it may hold anything but NUL."""
    if value is None or not value.strip():
        return None
    if "\x00" in value or len(value) > 100_000:
        raise InvalidInput(f"{field} is too long or contains a NUL byte", field=field)
    return value
