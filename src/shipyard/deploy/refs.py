"""Validation of user-supplied git input: repository URLs, refs and branch names.

Everything a user types that later reaches a ``git`` command line passes through here first,
so that no value can become a command-line option (``--upload-pack=...``), pick a dangerous
transport (``ext::sh -c ...``) or smuggle control characters into logs. The functions are pure
and return the value unchanged when it is valid; they raise :class:`InvalidInput` naming the
field otherwise. The git adapter (:mod:`shipyard.deploy.git`) still passes ``--end-of-options``
and restricts protocols: validation is the first fence, not the only one.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from shipyard.errors import InvalidInput

__all__ = [
    "REMOTE_SCHEMES",
    "looks_like_sha",
    "validate_branch_name",
    "validate_ref",
    "validate_repo_url",
]

#: URL schemes accepted for remote repositories (``git+ssh``/``ssh+git`` are git's ssh aliases).
REMOTE_SCHEMES = frozenset({"https", "http", "ssh", "git", "git+ssh", "ssh+git"})

MAX_URL_LENGTH = 2048
# Each ref component is a file name in the repository; 255 keeps us inside every file system.
MAX_REF_LENGTH = 255

_SHA_RE = re.compile(r"[0-9a-fA-F]{7,64}")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# git hands "<transport>::<address>" to a remote helper named git-remote-<transport>.
_HELPER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*::")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_USER_RE = re.compile(r"[A-Za-z0-9_.~+][A-Za-z0-9_.~+-]*")
_SCP_RE = re.compile(r"(?:(?P<user>[^@/:\[]+)@)?(?P<host>\[[^\]/]*\]|[^/:\[\]]+):(?P<path>.*)")
# Characters git check-ref-format refuses anywhere in a ref (besides controls and space).
_REF_FORBIDDEN = "~^:?*[\\"


def looks_like_sha(text: str) -> bool:
    """Whether ``text`` could be a commit id: 7 to 64 hex digits (SHA-1 or SHA-256, or a prefix)."""
    return _SHA_RE.fullmatch(text) is not None


def validate_repo_url(url: str, *, allow_local: bool = False, field: str = "repo") -> str:
    """Return ``url`` if it is a safe git repository address, else raise :class:`InvalidInput`.

    Accepted: ``https://``, ``http://``, ``ssh://`` (and git's ``git+ssh://`` alias), ``git://``
    and scp-like ``[user@]host:path``. ``file://`` URLs and absolute paths only with
    ``allow_local`` (a build host reading its own disk is an operator's choice, not a user's).
    Refused: anything starting with ``-``, whitespace or control characters, remote-helper
    transports (``ext::``, ``fd::``), relative paths, passwords embedded in the URL (secrets
    belong in a credential) and hosts or users that are not plain names.
    """
    if not isinstance(url, str) or not url:
        raise InvalidInput(f"{field} must be a non-empty git URL", field=field)
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"{field} is longer than {MAX_URL_LENGTH} characters", field=field)
    if _has_control_or_space(url):
        raise InvalidInput(f"{field} must not contain spaces or control characters", field=field)
    if url.startswith("-"):
        raise InvalidInput(f"{field} must not start with '-'", field=field)
    if _HELPER_RE.match(url):
        raise InvalidInput(
            f"{field} uses a remote-helper transport ('{url.split('::', 1)[0]}::'), "
            "which is not allowed",
            field=field,
        )
    scheme = _SCHEME_RE.match(url)
    if scheme:
        name = scheme.group(1).lower()
        if name == "file":
            _check_file_url(url, allow_local=allow_local, field=field)
        elif name in REMOTE_SCHEMES:
            _check_remote_url(url, field=field)
        else:
            raise InvalidInput(
                f"{field} uses unsupported scheme '{name}://'; use https://, ssh:// or git://",
                field=field,
            )
        return url
    if url.startswith("/"):
        if not allow_local:
            raise InvalidInput(f"{field} must be a remote URL, not a local path", field=field)
        return url
    scp = _SCP_RE.fullmatch(url)
    if scp:
        _check_scp_url(scp, field=field)
        return url
    raise InvalidInput(
        f"{field} must be an https://, ssh:// or git:// URL or user@host:path "
        "(relative paths are not allowed)",
        field=field,
    )


def validate_ref(ref: str, *, field: str = "ref") -> str:
    """Return ``ref`` if it is a well-formed branch, tag or commit id, else raise InvalidInput.

    The rules are those of ``git check-ref-format --allow-onelevel`` (so ``main``,
    ``release/1.x``, ``v1.2.3`` and ``refs/heads/main`` pass) plus: no leading ``-`` (a ref must
    never read as an option), no Unicode control, format or space characters, and at most
    255 characters. Hex commit ids of 7 to 64 digits pass as well. Whether the ref exists is
    a question for the repository (:meth:`shipyard.deploy.git.Mirror.resolve`), not for this
    function.
    """
    if not isinstance(ref, str) or not ref:
        raise InvalidInput(f"{field} must be a non-empty branch, tag or commit", field=field)
    if len(ref) > MAX_REF_LENGTH:
        raise InvalidInput(f"{field} is longer than {MAX_REF_LENGTH} characters", field=field)
    if _has_control_or_space(ref):
        raise InvalidInput(f"{field} must not contain spaces or control characters", field=field)
    if ref.startswith("-"):
        raise InvalidInput(f"{field} must not start with '-'", field=field)
    if looks_like_sha(ref):
        return ref
    bad = next((ch for ch in ref if ch in _REF_FORBIDDEN), None)
    if bad is not None:
        raise InvalidInput(f"{field} must not contain {bad!r}", field=field)
    if ref == "@":
        raise InvalidInput(f"{field} must not be '@'", field=field)
    for sequence in ("..", "@{", "//"):
        if sequence in ref:
            raise InvalidInput(f"{field} must not contain {sequence!r}", field=field)
    if ref.startswith("/") or ref.endswith("/"):
        raise InvalidInput(f"{field} must not start or end with '/'", field=field)
    if ref.endswith("."):
        raise InvalidInput(f"{field} must not end with '.'", field=field)
    for component in ref.split("/"):
        if component.startswith("."):
            raise InvalidInput(f"{field} parts must not start with '.'", field=field)
        if component.endswith(".lock"):
            raise InvalidInput(f"{field} parts must not end with '.lock'", field=field)
    return ref


def validate_branch_name(name: str, *, field: str = "branch") -> str:
    """Return ``name`` if it is a valid short branch name, else raise :class:`InvalidInput`.

    A branch name follows :func:`validate_ref` and additionally is given without its
    ``refs/heads/`` prefix and is not ``HEAD`` (which names whatever is checked out, not a
    branch).
    """
    validate_ref(name, field=field)
    if name == "HEAD":
        raise InvalidInput(f"{field} must name a branch, not HEAD", field=field)
    if name.startswith("refs/"):
        raise InvalidInput(
            f"{field} must be a short branch name like 'main', without 'refs/heads/'",
            field=field,
        )
    return name


def _has_control_or_space(text: str) -> bool:
    # Categories C* (control, format such as bidi overrides, unassigned, private use,
    # surrogates) and Z* (every kind of space and line separator).
    return any(unicodedata.category(ch)[0] in "CZ" for ch in text)


def _check_host(host: str, *, field: str) -> None:
    if not (_HOSTNAME_RE.fullmatch(host) or _IPV6_RE.fullmatch(host)):
        raise InvalidInput(f"{field} has an invalid host name {host!r}", field=field)


def _check_user(user: str, *, field: str) -> None:
    if not _USER_RE.fullmatch(user):
        raise InvalidInput(f"{field} has an invalid user name {user!r}", field=field)


def _check_remote_url(url: str, *, field: str) -> None:
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            raise InvalidInput(
                f"{field} must not embed a password; store it as a credential instead",
                field=field,
            )
        _check_user(userinfo, field=field)
    else:
        hostport = netloc
    host = hostport
    if hostport.startswith("["):
        host, _, rest = hostport.partition("]")
        host += "]"
        port = rest[1:] if rest.startswith(":") else None
        if rest and port is None:
            raise InvalidInput(f"{field} has an invalid host {hostport!r}", field=field)
    else:
        host, _, port_text = hostport.partition(":")
        port = port_text if ":" in hostport else None
    if not host:
        raise InvalidInput(f"{field} has no host", field=field)
    _check_host(host, field=field)
    if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise InvalidInput(f"{field} has an invalid port {port!r}", field=field)
    if parts.path in ("", "/"):
        raise InvalidInput(f"{field} has no repository path", field=field)


def _check_file_url(url: str, *, allow_local: bool, field: str) -> None:
    if not allow_local:
        raise InvalidInput(f"{field} must be a remote URL; file:// is not allowed", field=field)
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise InvalidInput(f"{field} must be file:///absolute/path", field=field)


def _check_scp_url(match: re.Match[str], *, field: str) -> None:
    user, host, path = match.group("user"), match.group("host"), match.group("path")
    if user is not None:
        _check_user(user, field=field)
    _check_host(host, field=field)
    if not path:
        raise InvalidInput(f"{field} has no repository path after ':'", field=field)
    if path.startswith("-"):
        raise InvalidInput(f"{field} path must not start with '-'", field=field)
