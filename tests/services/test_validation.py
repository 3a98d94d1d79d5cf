"""What valid names, hosts, ports, users, paths, variables, git URLs and refs look like.

Every value here later reaches a remote host or a git command line as an argument; these
checks make sure none of them can read as an option, carry a second command, or point
somewhere unexpected."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shipyard.deploy import refs
from shipyard.errors import InvalidInput
from shipyard.services import validation

# The documented shapes (see the docstrings in shipyard.services.validation).
NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
UNIX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def refused(field: str, check: Callable[..., object], /, *args: object,
            **kwargs: object) -> None:
    """Assert that ``check(*args, **kwargs)`` raises InvalidInput naming ``field``."""
    with pytest.raises(InvalidInput) as caught:
        check(*args, **kwargs)
    assert caught.value.field == field
    assert caught.value.code == "invalid"


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "web-1", "shop.v2", "a_b", "0", "x" * 64])
def test_name_accepts_slugs(value: str) -> None:
    assert validation.name(value) == value


@pytest.mark.parametrize("value", ["", "-web", "web-", ".web", "Web", "web 1", "web/1",
                                   "web;rm", "x" * 65, "wéb", "web\n", "\nweb", "web\x00"])
def test_name_refuses_anything_else(value: str) -> None:
    refused("server", validation.name, value, "server")


@given(st.text(max_size=70))
@example("web\n")
def test_any_name_accepted_matches_the_documented_shape(value: str) -> None:
    try:
        validation.name(value)
    except InvalidInput:
        assert not NAME.fullmatch(value)
    else:
        assert NAME.fullmatch(value)


@given(st.from_regex(NAME, fullmatch=True))
def test_every_name_of_the_documented_shape_is_accepted(value: str) -> None:
    assert validation.name(value) == value


# -- hosts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "normal"), [
    ("10.0.0.11", "10.0.0.11"),
    ("::1", "::1"),
    ("2001:DB8:0:0::1", "2001:db8::1"),
    ("web-1.example.com", "web-1.example.com"),
    ("Web-1.Example.COM", "web-1.example.com"),
    ("localhost", "localhost"),
])
def test_host_accepts_addresses_and_dns_names(value: str, normal: str) -> None:
    assert validation.host(value) == normal


@pytest.mark.parametrize("value", [
    "-oProxyCommand=x", "a b", "host;rm", "host\n", "host`id`", "$(id)", "user@host",
    "host:22", "http://host", "a..b", "-host", "host-", "", "x" * 254, "a_b.example.com",
    "[::1]",
])
def test_host_refuses_options_commands_and_junk(value: str) -> None:
    refused("host", validation.host, value)


@given(st.text(max_size=80))
def test_an_accepted_host_never_reads_as_an_option_or_carries_shell_text(value: str) -> None:
    try:
        host = validation.host(value)
    except InvalidInput:
        return
    assert not host.startswith("-")
    assert not re.search(r"[\s;|&$`'\"\\<>(){}@/]", host)


# -- ports and unix users --------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 22, 65535])
def test_port_accepts_1_to_65535(value: int) -> None:
    assert validation.port(value) == value


@pytest.mark.parametrize("value", [0, -1, 65536, "22", 22.0, True, None])
def test_port_refuses_out_of_range_and_non_integers(value: object) -> None:
    refused("port", validation.port, value)


@pytest.mark.parametrize("value", ["root", "www", "_apt", "deploy-user", "a" * 32])
def test_unix_user_accepts_login_names(value: str) -> None:
    assert validation.unix_user(value) == value


@pytest.mark.parametrize("value", ["Root", "-oProxyCommand=x", "a b", "root;id", "1abc",
                                   "a" * 33, "root\n", "", "ro$t", "root@host"])
def test_unix_user_refuses_anything_else(value: str) -> None:
    refused("user", validation.unix_user, value)


@given(st.text(max_size=40))
@example("root\n")
def test_any_unix_user_accepted_matches_the_documented_shape(value: str) -> None:
    try:
        validation.unix_user(value)
    except InvalidInput:
        assert not UNIX_USER.fullmatch(value)
    else:
        assert UNIX_USER.fullmatch(value)


# -- remote paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "normal"), [
    ("/srv/www", "/srv/www"),
    ("/srv/www/", "/srv/www"),
    ("//a/./b/", "/a/b"),
    ("///a//b", "/a/b"),
    ("/srv/..hidden", "/srv/..hidden"),
])
def test_remote_path_is_absolute_and_normalised(value: str, normal: str) -> None:
    assert validation.remote_path(value, "webroot") == normal


@pytest.mark.parametrize("value", ["srv/www", "", "./srv", "/srv/../etc", "/..", "/", "//",
                                   "/./", "/srv/www\n", "/srv/\x00www", "~/www",
                                   "/" + "a" * 1001])
def test_remote_path_refuses_relative_dotdot_root_and_control_characters(value: str) -> None:
    refused("webroot", validation.remote_path, value, "webroot")


@given(st.text(alphabet=st.sampled_from("/.a-_ \n\x00b"), max_size=30)
       | st.text(max_size=30))
@example("//a/./b/")
def test_an_accepted_remote_path_is_absolute_normal_and_free_of_dotdot(value: str) -> None:
    try:
        path = validation.remote_path(value, "webroot")
    except InvalidInput:
        return
    assert path.startswith("/") and not path.startswith("//")
    assert path != "/"
    assert posixpath.normpath(path) == path
    assert ".." not in path.split("/")


@pytest.mark.parametrize(("webroot", "releases"), [
    ("/srv/www/shop", "/srv/releases/shop"),
    ("/srv/www", "/srv/www2"),
    ("/srv/www2", "/srv/www"),
])
def test_webroot_and_releases_may_be_siblings(webroot: str, releases: str) -> None:
    assert validation.webroot_and_releases(webroot, releases) == (webroot, releases)


@pytest.mark.parametrize(("webroot", "releases", "field"), [
    ("/srv/rel/current", "/srv/rel", "webroot"),
    ("/srv/rel/./current/", "//srv/rel/", "webroot"),
    ("/srv/www", "/srv/www/releases", "releases"),
    ("/srv/www", "/srv/www/", "webroot"),
])
def test_webroot_and_releases_must_not_nest(webroot: str, releases: str, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validation.webroot_and_releases(webroot, releases)
    assert caught.value.field == field


# -- variables -----------------------------------------------------------------------------


def test_variables_accept_environment_names_and_string_values() -> None:
    assert validation.variables({"NODE_ENV": "production", "_x1": "a b; c"}) == \
        {"NODE_ENV": "production", "_x1": "a b; c"}


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", "", "A=B", "A\n", "ÄB", "x" * 129])
def test_variables_refuse_bad_names_naming_the_key(key: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validation.variables({key: "v"})
    assert caught.value.field == f"variables.{key}"


def test_variables_refuse_nul_in_a_value() -> None:
    with pytest.raises(InvalidInput) as caught:
        validation.variables({"A": "x\x00y"})
    assert caught.value.field == "variables.A"


@given(st.text(max_size=20))
@example("A\n")
def test_any_variable_name_accepted_matches_the_documented_shape(key: str) -> None:
    try:
        validation.variables({key: "v"})
    except InvalidInput:
        assert not VARIABLE.fullmatch(key)
    else:
        assert VARIABLE.fullmatch(key)


@pytest.mark.parametrize("value", ["dist/*.map", "node_modules", ".git"])
def test_patterns_accept_relative_globs(value: str) -> None:
    assert validation.patterns([value], "excludes") == [value]


@pytest.mark.parametrize("value", ["/etc", "../up", "a/../../b", "", "a\nb"])
def test_patterns_refuse_absolute_and_dotdot(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validation.patterns([value], "excludes")
    assert caught.value.field == "excludes"


# -- git URLs and refs ------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://git.example.com/shop/shop.git",
    "ssh://git@git.example.com:2222/shop.git",
    "git@github.com:org/repo.git",
    "git://git.example.com/repo.git",
    "https://[2001:db8::1]/repo.git",
])
def test_repo_url_accepts_remote_git_urls(url: str) -> None:
    assert refs.validate_repo_url(url) == url


@pytest.mark.parametrize("url", [
    "ext::sh -c touch% /tmp/pwned",
    "ext::sh",
    "fd::17",
    "-u evil",
    "--upload-pack=touch /tmp/pwned",
    "host:-oProxyCommand=x",
    "https://user:password@git.example.com/repo.git",
    "https://git.example.com/repo.git\n",
    "ftp://git.example.com/repo.git",
    "relative/path",
    "https://-oProxyCommand=x/repo.git",
    "https://git.example.com",
])
def test_repo_url_refuses_helpers_options_and_embedded_secrets(url: str) -> None:
    refused("repo", refs.validate_repo_url, url)


@pytest.mark.parametrize("url", ["file:///srv/git/shop.git", "/srv/git/shop.git"])
def test_local_repos_only_when_allowed(url: str) -> None:
    refused("repo", refs.validate_repo_url, url)
    assert refs.validate_repo_url(url, allow_local=True) == url


@pytest.mark.parametrize("ref", ["main", "release/1.x", "v1.2.3", "feature_x",
                                 "a" * 40, "deadbeef"])
def test_ref_accepts_branches_tags_and_commits(ref: str) -> None:
    assert refs.validate_ref(ref) == ref


@pytest.mark.parametrize("ref", ["--upload-pack=x", "-u", "a..b", "main@{1}", "@{-1}", "@",
                                 "HEAD~1", "a^", "a b", "a:b", "a\nb", "a.lock", ".hidden",
                                 "a/", "/a", "a//b", "a*", "", "x" * 256, "main\u202e"])
def test_ref_refuses_options_revision_syntax_and_junk(ref: str) -> None:
    refused("ref", refs.validate_ref, ref)


@given(st.text(max_size=30))
def test_an_accepted_ref_never_reads_as_an_option_or_revision_expression(ref: str) -> None:
    try:
        refs.validate_ref(ref)
    except InvalidInput:
        return
    assert not ref.startswith("-")
    assert ".." not in ref and "@{" not in ref
    assert not any(ch.isspace() for ch in ref)


@pytest.mark.parametrize("name", ["HEAD", "refs/heads/main", "-main"])
def test_a_default_branch_is_a_short_branch_name(name: str) -> None:
    refused("default_branch", refs.validate_branch_name, name, field="default_branch")
