"""Validation of user-supplied git input: repository URLs, refs, branch names."""

from __future__ import annotations

import string
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.deploy.refs import (
    looks_like_sha,
    validate_branch_name,
    validate_ref,
    validate_repo_url,
)
from shipyard.errors import InvalidInput

# -- repository URLs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://git.example.com/shop/shop.git",
        "http://git.example.com:8080/shop.git",
        "https://oauth2@gitlab.example.com/group/sub/shop.git",
        "ssh://git@git.example.com:2222/shop/shop.git",
        "ssh://git.example.com/~alice/shop.git",
        "git+ssh://git@git.example.com/shop.git",
        "git://git.example.com/shop.git",
        "git@github.com:acme/shop.git",
        "github.com:acme/shop.git",
        "deploy@10.0.0.5:/srv/git/shop.git",
        "git@[2001:db8::1]:shop.git",
        "ssh://git@[2001:db8::1]:22/shop.git",
    ],
)
def test_remote_urls_in_every_supported_form_are_accepted(url: str) -> None:
    assert validate_repo_url(url) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "non-empty"),
        ("--upload-pack=touch%20/tmp/pwned", "'-'"),
        ("-oProxyCommand=evil", "'-'"),
        ("ext::sh -c touch% /tmp/pwned", "spaces"),
        ("ext::sh", "remote-helper"),
        ("fd::17", "remote-helper"),
        ("transport::https://example.com/x.git", "remote-helper"),
        ("ssh://-oProxyCommand=evil/x.git", "host"),
        ("ssh://-oProxyCommand=evil@host/x.git", "user"),
        ("https://user:secret@example.com/x.git", "password"),
        ("https://example.com/x.git\n", "control"),
        ("https://exa mple.com/x.git", "spaces"),
        ("https://example.com/\u202ex.git", "control"),
        ("ftp://example.com/x.git", "unsupported scheme"),
        ("https://example.com", "repository path"),
        ("https:///x.git", "no host"),
        ("https://example.com:99999/x.git", "port"),
        ("https://example.com:abc/x.git", "port"),
        ("git@-evil:x.git", "host"),
        ("git@host:-x.git", "'-'"),
        ("git@host:", "path"),
        ("relative/path.git", "relative"),
        ("/srv/git/shop.git", "local path"),
        ("file:///srv/git/shop.git", "file://"),
    ],
)
def test_unsafe_or_malformed_urls_are_refused_naming_the_repo_field(url: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_repo_url(url)
    assert caught.value.field == "repo"
    assert reason in caught.value.message
    assert caught.value.message.startswith("repo ")


def test_local_repositories_are_accepted_only_when_allowed() -> None:
    assert validate_repo_url("/srv/git/shop.git", allow_local=True) == "/srv/git/shop.git"
    assert validate_repo_url("file:///srv/git/shop.git", allow_local=True)
    with pytest.raises(InvalidInput, match="file:///absolute/path"):
        validate_repo_url("file://otherhost/srv/git/shop.git", allow_local=True)
    with pytest.raises(InvalidInput, match="remote-helper"):
        validate_repo_url("ext::sh", allow_local=True)


def test_the_field_name_can_be_chosen_by_the_caller() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_repo_url("-x", field="mirror_url")
    assert caught.value.field == "mirror_url"


_weird_chars = st.sampled_from([" ", "\t", "\n", "\r", "\x00", "\x1b", "\x7f", "\u00a0", "\u2028"])


@given(prefix=st.text(max_size=20), bad=_weird_chars, suffix=st.text(max_size=20))
def test_no_url_containing_whitespace_or_control_characters_is_accepted(
    prefix: str, bad: str, suffix: str
) -> None:
    with pytest.raises(InvalidInput):
        validate_repo_url(f"https://example.com/{prefix}{bad}{suffix}.git", allow_local=True)


@given(st.text(max_size=40))
def test_no_url_starting_with_a_dash_is_accepted(rest: str) -> None:
    with pytest.raises(InvalidInput):
        validate_repo_url("-" + rest, allow_local=True)


_label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)
_path_part = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=12)


@given(
    scheme=st.sampled_from(["https", "http", "ssh", "git"]),
    host=st.lists(_label, min_size=1, max_size=4).map(".".join),
    port=st.none() | st.integers(1, 65535),
    path=st.lists(_path_part, min_size=1, max_size=4).map("/".join),
)
def test_well_formed_remote_urls_are_accepted(
    scheme: str, host: str, port: int | None, path: str
) -> None:
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}/{path}"
    assert validate_repo_url(url) == url


# -- refs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "main",
        "trunk",
        "release/1.x",
        "feature/JIRA-42_fix",
        "v1.2.3",
        "refs/heads/main",
        "refs/tags/v1.0",
        "HEAD",
        "deadbee",
        "0123456789abcdef0123456789abcdef01234567",
        "中文分支",
        "a@b",
    ],
)
def test_branch_tag_and_commit_names_are_accepted(ref: str) -> None:
    assert validate_ref(ref) == ref


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("", "non-empty"),
        ("--upload-pack=evil", "'-'"),
        ("-h", "'-'"),
        ("a..b", "'..'"),
        ("main@{1}", "'@{'"),
        ("@", "'@'"),
        ("main.lock", ".lock"),
        ("feature/x.lock/y", ".lock"),
        (".hidden", "'.'"),
        ("feature/.hidden", "'.'"),
        ("main.", "end with '.'"),
        ("/main", "'/'"),
        ("main/", "'/'"),
        ("a//b", "'//'"),
        ("has space", "spaces"),
        ("tab\there", "spaces"),
        ("new\nline", "spaces"),
        ("bell\x07", "control"),
        ("main~1", "'~'"),
        ("main^", "'^'"),
        ("a:b", "':'"),
        ("a?b", "'?'"),
        ("a*b", "'*'"),
        ("a[b", "'['"),
        ("a\\b", "'\\\\'"),
        ("x" * 256, "longer"),
    ],
)
def test_malformed_or_option_like_refs_are_refused_naming_the_ref_field(
    ref: str, reason: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_ref(ref)
    assert caught.value.field == "ref"
    assert reason in caught.value.message


def _git_accepts(ref: str) -> bool:
    # check-ref-format has no "--": option-like names are excluded by the caller.
    result = subprocess.run(
        ["git", "check-ref-format", "--allow-onelevel", ref], capture_output=True, check=False
    )
    return result.returncode == 0


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab/.-@{}~^:?*[\\ lock\t", min_size=1, max_size=12))
def test_refs_are_judged_exactly_as_git_check_ref_format_judges_them(ref: str) -> None:
    try:
        validate_ref(ref)
        accepted = True
    except InvalidInput:
        accepted = False
    if ref.startswith("-"):
        assert not accepted  # stricter than git: a ref must never read as an option
    else:
        assert accepted == _git_accepts(ref)


@given(st.text(alphabet="0123456789abcdef", min_size=7, max_size=64))
def test_hex_commit_ids_of_7_to_64_digits_are_refs(sha: str) -> None:
    assert looks_like_sha(sha)
    assert validate_ref(sha) == sha


@pytest.mark.parametrize("text", ["abc123", "g123456", "", "0" * 65, "deadbee\n"])
def test_other_text_does_not_look_like_a_commit_id(text: str) -> None:
    assert not looks_like_sha(text)


# -- branch names ---------------------------------------------------------------------


def test_branch_names_are_short_names_and_never_head_or_full_refs() -> None:
    assert validate_branch_name("main") == "main"
    assert validate_branch_name("release/2024.1") == "release/2024.1"
    with pytest.raises(InvalidInput, match="not HEAD"):
        validate_branch_name("HEAD")
    with pytest.raises(InvalidInput, match="refs/heads/"):
        validate_branch_name("refs/heads/main")
    with pytest.raises(InvalidInput) as caught:
        validate_branch_name("-main", field="default_branch")
    assert caught.value.field == "default_branch"
